"""Separation metrics and their aggregates.

SDR on whole clips (paper §4): SDR(s, ŝ) = 10·log10( (‖s‖² + ε) / (‖s − ŝ‖² + ε) ), ε = 1e-10 — the epsilon
keeps a perfect estimate finite (≈ 10·log10(‖s‖²/ε), e.g. ~100 dB for a unit-energy target) and a silent
target defined (0 dB). SDRi = SDR(s, ŝ) − SDR(s, x). The paper's aggregate: per class the *median* SDRi, then
the *mean* over classes. Every table also shows two references on the same mixtures:

- the **trivial floor** ŝ = x/2, which on 0 dB (energy-matched) pairs already scores ≈ 3 dB SDRi;
- the **oracle mask ceilings**: the ideal ratio mask on the STFT magnitude (IRM, mixture phase) and the ideal
  complex mask (= the target itself up to STFT consistency), the best a mask-based separator can do.

museval (BSSEval v4) is imported lazily (it needs ffmpeg at import), and PESQ likewise.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

EPS = 1e-10


def sdr(reference: np.ndarray, estimate: np.ndarray, eps: float = EPS) -> np.ndarray:
    """SDR in dB over the last axis: ``(..., samples)`` → ``(...)``."""
    s = np.asarray(reference, dtype=np.float64)
    e = np.asarray(estimate, dtype=np.float64)
    num = np.sum(s ** 2, axis=-1) + eps
    den = np.sum((s - e) ** 2, axis=-1) + eps
    return 10 * np.log10(num / den)


def sdri(reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray, eps: float = EPS) -> np.ndarray:
    """SDR improvement of ``estimate`` over the ``mixture`` itself, dB."""
    return sdr(reference, estimate, eps) - sdr(reference, mixture, eps)


def sdr_torch(reference: torch.Tensor, estimate: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Differentiable SDR (dB) over the last axis (for a negative-SDR training loss)."""
    num = reference.pow(2).sum(-1) + eps
    den = (reference - estimate).pow(2).sum(-1) + eps
    return 10 * torch.log10(num / den)


def class_aggregate(values: Sequence[float], classes: Sequence) -> dict:
    """The paper's aggregate: per-class median, then mean over classes; plus the plain mean ± 95 % CI.

    Returns ``{"per_class": {class: median}, "median_then_mean": .., "mean": .., "ci95": .., "n": ..}``."""
    values = np.asarray(values, dtype=np.float64)
    classes = list(classes)
    per: dict = {}
    for c in dict.fromkeys(classes):
        per[c] = float(np.median(values[[i for i, k in enumerate(classes) if k == c]]))
    n = len(values)
    std = float(np.std(values, ddof=1)) if n > 1 else 0.0
    return {
        "per_class": per,
        "median_then_mean": float(np.mean(list(per.values()))) if per else float("nan"),
        "mean": float(np.mean(values)) if n else float("nan"),
        "ci95": 1.96 * std / math.sqrt(n) if n > 1 else float("nan"),
        "n": n,
    }


# ------------------------------------------------------------------------------------------ oracle masks
def _stft(x: np.ndarray, n_fft: int, hop: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float32))
    return torch.stft(t, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True)


def _istft(X: torch.Tensor, n_fft: int, hop: int, length: int) -> np.ndarray:
    return torch.istft(X, n_fft, hop, window=torch.hann_window(n_fft), center=True, length=length).numpy()


def oracle_irm(target: np.ndarray, mixture: np.ndarray, n_fft: int = 2048, hop: int = 320) -> np.ndarray:
    """Estimate with the ideal ratio mask |S|/(|S|+|N|) on the magnitude, mixture phase. ``(..., samples)``."""
    mixture = np.asarray(mixture, dtype=np.float32)
    S, N = _stft(target, n_fft, hop), _stft(mixture - np.asarray(target, np.float32), n_fft, hop)
    X = S + N
    mask = S.abs() / (S.abs() + N.abs() + 1e-8)
    return _istft(X * mask, n_fft, hop, mixture.shape[-1])


def oracle_cirm(target: np.ndarray, mixture: np.ndarray, n_fft: int = 2048, hop: int = 320) -> np.ndarray:
    """Estimate with the ideal complex ratio mask S/X (bounded only by STFT round-trip error)."""
    mixture = np.asarray(mixture, dtype=np.float32)
    S, X = _stft(target, n_fft, hop), _stft(mixture, n_fft, hop)
    mask = S / torch.where(X.abs() < 1e-8, torch.full_like(X, 1e-8), X)
    return _istft(X * mask, n_fft, hop, mixture.shape[-1])


def reference_scores(target: np.ndarray, mixture: np.ndarray, n_fft: int = 2048, hop: int = 320) -> dict[str, np.ndarray]:
    """SDRi of the trivial floor (x/2), the IRM and the ideal complex mask on the same mixtures."""
    return {
        "trivial_sdri": sdri(target, np.asarray(mixture) / 2, mixture),
        "irm_sdri": sdri(target, oracle_irm(target, mixture, n_fft, hop), mixture),
        "cirm_sdri": sdri(target, oracle_cirm(target, mixture, n_fft, hop), mixture),
    }


# ------------------------------------------------------------------------------------------ music, speech
def museval_sdr(references: np.ndarray, estimates: np.ndarray, sr: int, window_seconds: float = 1.0) -> np.ndarray:
    """BSSEval v4 SDR per source (median over ``window_seconds`` windows), via museval.

    Args:
        references: ``(sources, samples)`` true stems.
        estimates: ``(sources, samples)`` separated stems, same order.

    museval's ``evaluate(references, estimates)`` takes the **references first**; the reference USS code
    passed them the other way round. Windows where a reference is silent are NaN in BSSEval and ignored by
    the median (``nanmedian``)."""
    import museval  # lazy: its import chain needs the ffmpeg binary

    ref = np.asarray(references, dtype=np.float64)[..., None]  # (sources, samples, channels)
    est = np.asarray(estimates, dtype=np.float64)[..., None]
    win = int(round(window_seconds * sr))
    sdr_frames, _, _, _ = museval.evaluate(ref, est, win=win, hop=win)
    return np.nanmedian(sdr_frames, axis=1)


def segmental_snr(clean: np.ndarray, estimate: np.ndarray, sr: int, frame_seconds: float = 0.032,
                  clip_db: tuple[float, float] = (-10.0, 35.0)) -> float:
    """Segmental SNR (dB): mean over frames of the per-frame SNR clipped to ``clip_db`` (the speech
    enhancement convention; Voicebank-Demand reports it as SSNR)."""
    clean = np.asarray(clean, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    n = int(frame_seconds * sr)
    frames = len(clean) // n
    c = clean[: frames * n].reshape(frames, n)
    e = estimate[: frames * n].reshape(frames, n)
    snr = 10 * np.log10((np.sum(c ** 2, 1) + EPS) / (np.sum((c - e) ** 2, 1) + EPS))
    return float(np.mean(np.clip(snr, *clip_db)))


def pesq_wb(clean: np.ndarray, estimate: np.ndarray, sr: int) -> float:
    """Wide-band PESQ at 16 kHz (resampled if needed)."""
    from pesq import pesq

    from .audio import resample

    if sr != 16000:
        clean, estimate = resample(clean, sr, 16000), resample(estimate, sr, 16000)
    return float(pesq(16000, np.asarray(clean, np.float32), np.asarray(estimate, np.float32), "wb"))


def summarise(rows: Iterable[Mapping], key: str, class_key: str = "class") -> dict:
    rows = list(rows)
    return class_aggregate([r[key] for r in rows], [r[class_key] for r in rows])
