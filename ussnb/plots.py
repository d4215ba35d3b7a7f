"""Matplotlib figures used by the notebooks. Every function returns the Figure (and saves it if ``path``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    if os.environ.get("MPLBACKEND") is None and not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def save(fig, path: str | os.PathLike | None):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def log_mel(wave: np.ndarray, sr: int, n_mels: int = 64, hop: int | None = None) -> np.ndarray:
    """``(mels, frames)`` log-mel (dB) for display."""
    import librosa

    hop = hop or sr // 100
    mel = librosa.feature.melspectrogram(y=wave, sr=sr, n_fft=1024, hop_length=hop, n_mels=n_mels, fmin=50,
                                         fmax=min(14000, sr // 2))
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)


def class_counts(counts: Mapping[str, Mapping[str, int]], names: Mapping[str, str], path=None, title=""):
    """Horizontal stacked bars: clips tagged with each class, per split. ``counts[split][mid]``."""
    plt = _plt()
    mids = sorted(names, key=lambda m: names[m].lower())
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(mids) + 1.2))
    left = np.zeros(len(mids))
    for split, per in counts.items():
        vals = np.array([per.get(m, 0) for m in mids], dtype=float)
        ax.barh([names[m] for m in mids], vals, left=left, label=split)
        left += vals
    ax.invert_yaxis()
    ax.set_xlabel("clips tagged with the class")
    ax.set_title(title or "clip-level tags per class")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save(fig, path)


def weak_clip(
    wave: np.ndarray,
    sr: int,
    tags: Sequence[str],
    *,
    events: Sequence[Mapping] | None = None,
    names: Mapping[str, str] | None = None,
    frame_probs: Mapping[str, np.ndarray] | None = None,
    title: str = "",
    path=None,
):
    """The weak-label picture (paper Fig. 2): a clip's log-mel with its clip-level tags only; optionally the
    true event times (hidden from training) and frame probabilities of its tags (100 frames/s)."""
    plt = _plt()
    names = names or {}
    rows = 2 + (frame_probs is not None)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.0 * rows + 0.6), sharex=True,
                             gridspec_kw={"height_ratios": [3] + [1.2] * (rows - 1)})
    seconds = wave.shape[0] / sr
    axes[0].imshow(log_mel(wave, sr), origin="lower", aspect="auto", extent=[0, seconds, 0, 64], cmap="magma")
    axes[0].set_ylabel("mel bin")
    axes[0].set_title(title or "weak label: " + ", ".join(names.get(t, t) for t in tags))
    ax = axes[1]
    ordered = list(dict.fromkeys(list(tags) + [e["mid"] for e in (events or [])]))
    for row, mid in enumerate(ordered):
        ax.axhline(row, color="0.9", lw=8, zorder=0)
        for ev in events or []:
            if ev["mid"] == mid:
                ax.plot([ev["onset"], ev["offset"]], [row, row], lw=6,
                        color="tab:green" if ev.get("labelled", True) else "tab:gray", solid_capstyle="butt")
    ax.set_yticks(range(len(ordered)))
    ax.set_yticklabels([names.get(m, m) + ("" if m in tags else " (untagged)") for m in ordered], fontsize=8)
    ax.set_ylim(len(ordered) - 0.5, -0.5)
    ax.set_title("true event times (kept aside, never seen by training)" if events else "tags", fontsize=9)
    if frame_probs is not None:
        ax = axes[2]
        for mid, p in frame_probs.items():
            ax.plot(np.arange(len(p)) / 100.0, p, label=names.get(mid, mid))
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("p_SED")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return save(fig, path)


def training_curves(history: Sequence[Mapping], keys: Sequence[str] = ("loss",), *, eval_keys: Sequence[str] = (),
                    references: Mapping[str, float] | None = None, title: str = "", path=None):
    """Loss per step (smoothed) on the left axis, evaluation figures (e.g. validation mAP / SDRi) on the right,
    with optional horizontal reference lines (e.g. the x/2 floor and the IRM ceiling)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    steps = np.array([h["step"] for h in history])
    for key in keys:
        vals = np.array([h.get(key, np.nan) for h in history], dtype=float)
        ax.plot(steps, vals, color="0.75", lw=0.6)
        w = max(1, len(vals) // 50)
        if len(vals) >= w:
            smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1:], smooth, label=f"{key} (smoothed)")
    ax.set_xlabel("step")
    ax.set_ylabel(", ".join(keys))
    if eval_keys:
        ax2 = ax.twinx()
        for i, key in enumerate(eval_keys):
            pts = [(h["step"], h[key]) for h in history if key in h]
            if pts:
                ax2.plot(*zip(*pts), "o-", color=f"C{i + 1}", label=key)
        for j, (name, value) in enumerate((references or {}).items()):
            ax2.axhline(value, ls="--", color=f"C{j + 4}", lw=1, label=name)
        ax2.set_ylabel(", ".join(eval_keys))
        ax2.legend(loc="center right", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def bars(values: Mapping[str, Mapping[str, float]], *, ylabel: str = "", title: str = "", path=None):
    """Grouped bars: ``values[group][series]``."""
    plt = _plt()
    groups = list(values)
    series = list(dict.fromkeys(s for g in groups for s in values[g]))
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups) * max(1, len(series)) / 2, 3.2))
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        ax.bar(np.arange(len(groups)) + i * width, [values[g].get(s, np.nan) for g in groups], width, label=s)
    ax.set_xticks(np.arange(len(groups)) + width * (len(series) - 1) / 2)
    ax.set_xticklabels(groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)
