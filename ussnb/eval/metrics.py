"""Metrics: separation (SDR and its aggregates) and audio tagging / sound event detection.

**Separation.** SDR on whole clips (paper §4): SDR(s, ŝ) = 10·log10( (‖s‖² + ε) / (‖s − ŝ‖² + ε) ),
ε = 1e-10 — the epsilon keeps a perfect estimate finite (≈ 10·log10(‖s‖²/ε), e.g. ~100 dB for a unit-energy
target) and a silent target defined (0 dB). SDRi = SDR(s, ŝ) − SDR(s, x). The paper's aggregate: per class the
*median* SDRi, then the *mean* over classes. Every table also shows two references on the same mixtures:

- the **trivial floor** ŝ = x/2, which on 0 dB (energy-matched) pairs already scores ≈ 3 dB SDRi;
- the **oracle mask ceilings**: the ideal ratio mask on the STFT magnitude (IRM, mixture phase) and the ideal
  complex mask (= the target itself up to STFT consistency), the best a mask-based separator can do.

museval (BSSEval v4) is imported lazily (it needs ffmpeg at import), and PESQ likewise.

**Tagging and detection** (NumPy only, no scikit-learn):

* :func:`average_precision`, :func:`mean_average_precision` — clip tagging (AudioSet's mAP): area under the
  precision-recall step curve, macro-averaged over classes that have at least one positive.
* :func:`frame_auc` — ROC AUC over frames, per class present, averaged.
* :func:`segment_f1` — segment-based F1 (Mesaros et al. 2016): a class is active in a segment if any of
  its frame probabilities there reaches the threshold (prediction) or an event overlaps it (reference);
  true/false positives and false negatives are counted over all segments, classes and clips (micro F1).
* :func:`frame_targets` — frame-level targets from event lists, for :func:`frame_auc`.

Events are ``(onset_seconds, offset_seconds, class_index)`` tuples; frame ``n`` is at ``n / frame_rate`` s.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch


# ------------------------------------------------------------------------------------------ separation: SDR
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

    from ..audio import resample

    if sr != 16000:
        clean, estimate = resample(clean, sr, 16000), resample(estimate, sr, 16000)
    return float(pesq(16000, np.asarray(clean, np.float32), np.asarray(estimate, np.float32), "wb"))


def summarise(rows: Iterable[Mapping], key: str, class_key: str = "class") -> dict:
    rows = list(rows)
    return class_aggregate([r[key] for r in rows], [r[class_key] for r in rows])


# ------------------------------------------------------------------------------------------ tagging, SED
Event = tuple[float, float, int]


def _as_2d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
    if a.ndim < 2:
        raise ValueError(f"{name} must have shape (..., classes), got {a.shape}")
    return a.reshape(-1, a.shape[-1])


def average_precision(targets: Any, scores: Any) -> float:
    """Average precision of one class: ``Σ_n (R_n − R_{n−1}) · P_n`` over the distinct score thresholds in
    decreasing order (tied scores form one threshold). ``nan`` if there is no positive.

    Args:
        targets: ``(items,)`` bool / 0-1.
        scores: ``(items,)`` real.
    """
    y = np.asarray(targets).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"targets {y.shape} and scores {s.shape} differ in shape")
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last item of each tie group
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(targets: Any, scores: Any, *, per_class: bool = False):
    """Macro mean of :func:`average_precision` over classes with at least one positive.

    Args:
        targets: ``(clips, classes)`` bool / 0-1.
        scores: ``(clips, classes)`` real (e.g. clip probabilities).
        per_class: also return the ``(classes,)`` AP array (``nan`` for classes without positives).

    Returns:
        mAP as a float (``nan`` if no class has a positive), or ``(mAP, per-class AP)``.
    """
    y, s = _as_2d(targets, "targets"), _as_2d(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"targets {y.shape} and scores {s.shape} differ in shape")
    ap = np.array([average_precision(y[:, k], s[:, k]) for k in range(y.shape[1])])
    value = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
    return (value, ap) if per_class else value


def roc_auc(targets: Any, scores: Any) -> float:
    """ROC AUC of one class (Mann-Whitney U with mid-ranks for ties); ``nan`` without both classes."""
    y = np.asarray(targets).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # mid-rank of each tie group: (first + last) / 2, 1-based
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + 1 + b) / 2.0
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def frame_auc(targets: Any, scores: Any, *, per_class: bool = False):
    """Frame-level ROC AUC, averaged over the classes that have both positive and negative frames.

    Args:
        targets: ``(clips, frames, classes)`` or ``(frames, classes)`` bool / 0-1.
        scores: same shape, frame probabilities.
        per_class: also return the ``(classes,)`` AUC array (``nan`` where undefined).
    """
    y, s = _as_2d(targets, "targets"), _as_2d(scores, "scores")
    if y.shape != s.shape:
        raise ValueError(f"targets {y.shape} and scores {s.shape} differ in shape")
    auc = np.array([roc_auc(y[:, k], s[:, k]) for k in range(y.shape[1])])
    value = float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")
    return (value, auc) if per_class else value


def frame_targets(events: Sequence[Sequence[Event]], frames: int, frame_rate: float, classes: int) -> np.ndarray:
    """Frame-level targets ``(clips, frames, classes)``: frame ``n`` (at ``n / frame_rate`` s) is active for
    an event if ``onset <= n / frame_rate < offset``."""
    out = np.zeros((len(events), frames, classes), dtype=bool)
    times = np.arange(frames) / frame_rate
    for i, clip_events in enumerate(events):
        for onset, offset, k in clip_events:
            out[i, (times >= onset) & (times < offset), int(k)] = True
    return out


def segment_f1(
    frame_probs: Any,
    events: Sequence[Sequence[Event]],
    frame_rate: float,
    segment_seconds: float = 1.0,
    threshold: float = 0.5,
    *,
    return_counts: bool = False,
):
    """Segment-based F1 of frame probabilities against reference events.

    Each clip of ``T`` frames lasts ``(T - 1) / frame_rate`` seconds (frame ``n`` at ``n / frame_rate``;
    10 s at 100 frames/s = 1001 frames) and is cut into ``ceil(duration / segment_seconds)`` segments
    (at least one; the frame exactly at the end joins the last segment).

    * predicted: class ``k`` is active in a segment if ``max(frame_probs[frames in segment, k]) >= threshold``;
    * reference: class ``k`` is active if an event ``(onset, offset, k)`` overlaps the segment
      (``onset < segment end`` and ``offset > segment start``).

    Args:
        frame_probs: ``(clips, frames, classes)`` array, or a list of ``(frames_i, classes)`` arrays.
        events: per clip, a list of ``(onset_s, offset_s, class_index)``.
        frame_rate: frames per second of ``frame_probs``.

    Returns:
        micro F1 = 2·TP / (2·TP + FP + FN) (``nan`` if there is nothing to detect and nothing detected), or
        with ``return_counts`` a dict with ``f1``, ``precision``, ``recall``, ``tp``, ``fp``, ``fn``.
    """
    clips = [np.asarray(p.detach().cpu().numpy() if hasattr(p, "detach") else p) for p in frame_probs]
    if len(clips) != len(events):
        raise ValueError(f"{len(clips)} clips of probabilities but {len(events)} event lists")
    tp = fp = fn = 0
    for probs, clip_events in zip(clips, events):
        if probs.ndim != 2:
            raise ValueError(f"each clip's probabilities must be (frames, classes), got {probs.shape}")
        frames, classes = probs.shape
        duration = (frames - 1) / frame_rate
        n_seg = max(1, math.ceil(duration / segment_seconds - 1e-9))
        seg_of_frame = np.minimum((np.arange(frames) / frame_rate / segment_seconds + 1e-9).astype(int), n_seg - 1)
        predicted = np.zeros((n_seg, classes), dtype=bool)
        np.logical_or.at(predicted, seg_of_frame, probs >= threshold)
        reference = np.zeros((n_seg, classes), dtype=bool)
        starts = np.arange(n_seg) * segment_seconds
        ends = starts + segment_seconds
        for onset, offset, k in clip_events:
            if not 0 <= int(k) < classes:
                raise ValueError(f"event class {k} outside 0..{classes - 1}")
            reference[(onset < ends) & (offset > starts), int(k)] = True
        tp += int((predicted & reference).sum())
        fp += int((predicted & ~reference).sum())
        fn += int((~predicted & reference).sum())
    denom = 2 * tp + fp + fn
    f1 = 2 * tp / denom if denom else float("nan")
    if not return_counts:
        return f1
    return {
        "f1": f1,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "tp": tp, "fp": fp, "fn": fn,
    }
