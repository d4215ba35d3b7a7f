"""The one path from a trained separator to waveforms.

Every estimate the kit computes — training validation (stage 04), the benchmarks and the paper's protocol
(stage 06), the notebooks and ``ussnb separate`` — goes through :func:`forward_chunks`: inference mode, batches,
the one place that trims or pads a model's output to its input length and refuses non-finite output.
:func:`apply_separator` adds the chunking around it:

- ``segment_seconds=None``: each item in one pass (the 2 s validation mixtures of training);
- ``overlap=0``: non-overlapping chunks, the last one zero-padded (the evaluation protocol of Kong et al. 2023 §4);
- ``overlap>0``: chunks cross-faded by overlap-add (:func:`ussnb.audio.stream_overlap_add`), as for long files.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import SeparationError


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s weights live (inputs are moved there; outputs come back to the CPU as float32)."""
    if getattr(model, "device", None) is not None and isinstance(model.device, torch.device):
        return model.device
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def forward_chunks(model: torch.nn.Module, chunks: np.ndarray, conditions: np.ndarray,
                   *, batch_size: int | None = None) -> np.ndarray:
    """``(B, n)`` chunks and ``(B, C)`` (or one ``(C,)``) conditions → ``(B, n)`` float32 estimates.

    Runs ``model(x (b, 1, n), c (b, C))`` under ``torch.inference_mode`` in batches of ``batch_size`` (all at
    once if None). A model whose STFT framing changes the length gets its output trimmed / zero-padded to
    ``n``. Raises :class:`~ussnb.errors.SeparationError` if any estimate is NaN/inf.
    """
    chunks = np.ascontiguousarray(chunks, dtype=np.float32)
    conditions = np.asarray(conditions, dtype=np.float32)
    if conditions.ndim == 1:
        conditions = np.broadcast_to(conditions, (len(chunks), conditions.shape[0]))
    conditions = np.ascontiguousarray(conditions)
    b, n = chunks.shape
    step = b if not batch_size else int(batch_size)
    out = np.empty((b, n), np.float32)
    device = model_device(model)
    with torch.inference_mode():
        for i in range(0, b, max(1, step)):
            x = torch.from_numpy(chunks[i:i + step])[:, None].to(device)
            y = model(x, torch.from_numpy(conditions[i:i + step]).to(device))[:, 0]
            y = y.float().cpu().numpy()
            if y.shape[1] != n:
                y = y[:, :n] if y.shape[1] > n else np.pad(y, ((0, 0), (0, n - y.shape[1])))
            out[i:i + step] = y
    if not np.all(np.isfinite(out)):
        raise SeparationError("the separator produced NaN/inf (a diverged checkpoint?)")
    return out


def apply_separator(model: torch.nn.Module, mixtures: np.ndarray, conditions: np.ndarray, *,
                    segment_seconds: float | None = 2.0, overlap: float = 0.0, batch_size: int = 16,
                    progress: bool = False) -> np.ndarray:
    """``(items, samples)`` (or ``(samples,)``) mixtures and ``(items, C)`` (or ``(C,)``) conditions →
    estimates of the same shape as ``mixtures``.

    Args:
        segment_seconds: chunk length at ``model.sample_rate``; None = every item in one pass.
        overlap: fraction of a chunk cross-faded with the next, in [0, 1); 0 = plain non-overlapping chunks.
        batch_size: chunks per forward pass.
    """
    mixtures = np.asarray(mixtures, np.float32)
    single = mixtures.ndim == 1
    waves = mixtures[None] if single else mixtures
    conds = np.asarray(conditions, np.float32)
    conds = np.broadcast_to(conds, (len(waves), conds.shape[-1])) if conds.ndim == 1 else conds
    if len(conds) != len(waves):
        raise SeparationError(f"{len(waves)} mixtures but {len(conds)} conditions")
    n_items, n = waves.shape
    if segment_seconds is None or n == 0:
        out = forward_chunks(model, waves, conds, batch_size=batch_size) if n else waves.copy()
    elif overlap == 0:
        chunk = max(1, int(round(segment_seconds * int(model.sample_rate))))
        pieces = max(1, math.ceil(n / chunk))
        padded = np.zeros((n_items, pieces * chunk), np.float32)
        padded[:, :n] = waves
        y = forward_chunks(model, padded.reshape(n_items * pieces, chunk), np.repeat(conds, pieces, axis=0),
                           batch_size=batch_size)
        out = y.reshape(n_items, pieces * chunk)[:, :n]
    else:
        from .audio import segment_hop, stream_overlap_add

        segment, hop = segment_hop(int(model.sample_rate), segment_seconds, overlap)
        out = np.empty_like(waves)
        for i in range(n_items):
            c = conds[i]

            def fn(chunks: np.ndarray, starts: Any, c=c) -> np.ndarray:
                return forward_chunks(model, chunks, c, batch_size=batch_size)

            out[i] = np.concatenate(list(stream_overlap_add([waves[i]], fn, segment, hop, batch_size,
                                                            progress=progress, total=n)))[:n]
    return out[0] if single else out


__all__ = ["apply_separator", "forward_chunks"]
