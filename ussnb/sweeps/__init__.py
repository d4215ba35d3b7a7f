"""Ablation sweeps of Kong et al. 2023 (one YAML per paper table), run by ``ussnb sweep`` (:mod:`ussnb.sweep`)."""
