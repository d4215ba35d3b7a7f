"""The common interface of audio taggers / sound event detectors.

Every tagger is an ``nn.Module`` deriving from :class:`Tagger`. Besides its own ``forward`` (which keeps the
reference model's call convention, so parity tests compare like with like) it offers
:meth:`Tagger.tag`: waveform in, :class:`TagOutput` out — clip probabilities, frame probabilities at
100 frames/s and a clip embedding. Anchor mining uses the frames, query conditions the clip probabilities or
the embedding.

Also here: :func:`resolve_weights`, which finds a pretrained file (explicit path → weights folder →
download from its official URL with an atomic write) and fails with a message saying which file to put where.
"""
from __future__ import annotations

import logging

import os
import urllib.request  # noqa: F401  (downloads go through ussnb.download, which uses it)
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import AudioError, WeightsNotFoundError
from ..paths import find_weights, weights_dir

FRAME_RATE = 100  # frames per second of every TagOutput.frames


@dataclass
class TagOutput:
    """Result of :meth:`Tagger.tag`.

    Attributes:
        clip: ``(batch, classes)`` clip-level probabilities.
        frames: ``(batch, frames, classes)`` frame-level probabilities at ``frame_rate`` frames/s;
            frame ``n`` is centred at ``n / frame_rate`` seconds and ``frames = samples // hop + 1``
            with ``hop = sample_rate / frame_rate`` (1001 frames for 10 s).
        embedding: ``(batch, embedding_size)`` clip embedding.
        frame_rate: frames per second of ``frames``.
    """

    clip: torch.Tensor
    frames: torch.Tensor
    embedding: torch.Tensor
    frame_rate: float = FRAME_RATE

    def numpy(self) -> dict[str, np.ndarray]:
        """The three arrays as float32 NumPy arrays, in a dict."""
        return {k: getattr(self, k).detach().cpu().float().numpy() for k in ("clip", "frames", "embedding")}


def as_wave_batch(wave: Any) -> torch.Tensor:
    """NumPy array / tensor / list, ``(samples,)`` or ``(batch, samples)`` → float32 ``(batch, samples)``.

    Raises :class:`~ussnb.errors.AudioError` for other shapes, empty or non-finite input.
    """
    x = torch.as_tensor(np.asarray(wave) if not isinstance(wave, torch.Tensor) else wave)
    if x.dim() == 1:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise AudioError(f"expected a waveform (samples,) or (batch, samples), got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise AudioError(f"empty waveform of shape {tuple(x.shape)}")
    x = x.float()
    if not torch.isfinite(x).all():
        raise AudioError("waveform contains NaN or inf")
    return x


class Tagger(nn.Module):
    """Base class of taggers. Subclasses set the attributes in ``__init__`` and implement :meth:`_tag`.

    Attributes:
        sample_rate: rate in Hz the model expects (``tag`` does not resample).
        classes: number of output classes.
        embedding_size: width of ``TagOutput.embedding``.
        min_samples: shorter inputs are zero-padded at the end to this length (the outputs' frames are then
            trimmed back to the input's length).
    """

    sample_rate: int = 32000
    classes: int = 527
    embedding_size: int = 0
    frame_rate: int = FRAME_RATE
    min_samples: int = 1

    @property
    def frame_hop(self) -> float:
        """Samples per output frame (320 at 32 kHz)."""
        return self.sample_rate / self.frame_rate

    def num_frames(self, samples: int) -> int:
        """Number of output frames for ``samples`` input samples: ``samples // hop + 1``."""
        return int(samples // self.frame_hop) + 1

    def _tag(self, wave: torch.Tensor, frames: bool = True) -> TagOutput:  # pragma: no cover - abstract
        """``wave`` ``(batch, samples)`` float32 on the model's device, at least ``min_samples`` long.
        ``frames=False``: the caller needs no frame output; a tagger whose frames cost extra passes (mn04's
        sliding windows) may then return ``(batch, 0, classes)`` frames."""
        raise NotImplementedError

    def _device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def tag(self, wave: Any, sr: int | None = None, *, frames: bool = True) -> TagOutput:
        """Tag a waveform at ``self.sample_rate``.

        Args:
            wave: ``(samples,)`` or ``(batch, samples)``, NumPy array or tensor.

        Returns:
            :class:`TagOutput` with ``clip`` ``(batch, classes)``, ``frames`` ``(batch, frames, classes)``
            (100 frames/s) and ``embedding`` ``(batch, embedding_size)``, all on the model's device.

        ``sr``: the rate of ``wave`` when it is not the model's; it is then resampled (noted in the log).
        ``frames=False``: only ``clip`` and ``embedding`` are wanted (conditions, query by example); ``frames``
        may then be empty, which saves mn04's sliding-window passes (~5× its clip pass).
        Runs in eval mode under ``torch.inference_mode`` (the training flag is restored afterwards).
        """
        x = as_wave_batch(wave)
        if sr is not None and int(sr) != int(self.sample_rate):
            from ..audio import resample

            logging.getLogger(__name__).info("resampling tagger input %d Hz -> %d Hz", sr, self.sample_rate)
            x = torch.from_numpy(resample(x.numpy(), int(sr), int(self.sample_rate)))
        x = x.to(self._device())
        samples = x.shape[-1]
        if samples < self.min_samples:
            x = nn.functional.pad(x, (0, self.min_samples - samples))
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                out = self._tag(x, frames=frames)
        finally:
            self.train(was_training)
        n = self.num_frames(samples)
        if out.frames.shape[1] != n and (frames or out.frames.shape[1]):
            out.frames = _fit_frames(out.frames, n)
        return out


def _fit_frames(frames: torch.Tensor, n: int) -> torch.Tensor:
    """Trim ``(batch, frames, classes)`` to ``n`` frames, or pad by repeating the last frame."""
    if frames.shape[1] >= n:
        return frames[:, :n]
    pad = frames[:, -1:].expand(-1, n - frames.shape[1], -1)
    return torch.cat([frames, pad], dim=1)


def repeat_frames(x: torch.Tensor, ratio: int, frames: int) -> torch.Tensor:
    """Upsample ``(batch, steps, classes)`` by repeating each step ``ratio`` times, then fit to ``frames``
    (trim, or repeat the last value) — the nearest-neighbour upsampling PANNs uses for its frame outputs."""
    x = x.repeat_interleave(ratio, dim=1)
    return _fit_frames(x, frames)


def interpolate_frames(values: torch.Tensor, centres: torch.Tensor, frames: int) -> torch.Tensor:
    """Linear interpolation of ``values`` ``(batch, steps, classes)`` known at frame positions ``centres``
    ``(steps,)`` (increasing, in output-frame units) onto frames ``0 .. frames-1``; held constant outside."""
    t = torch.arange(frames, dtype=centres.dtype, device=centres.device)
    if values.shape[1] == 1:
        return values.expand(-1, frames, -1)
    idx = torch.searchsorted(centres, t).clamp(1, len(centres) - 1)
    lo, hi = centres[idx - 1], centres[idx]
    w = ((t - lo) / (hi - lo)).clamp(0.0, 1.0).to(values.dtype)[None, :, None]
    return values[:, idx - 1] * (1 - w) + values[:, idx] * w


# ---------------------------------------------------------------- pretrained files


def resolve_weights(filename: str, url: str | None, path: str | os.PathLike | None = None,
                    download: bool = True) -> Path:
    """Path of a pretrained file: ``path`` if given (must exist), else ``find_weights(filename)`` (the
    ``USSNB_WEIGHTS_DIR`` folder), else a download from ``url`` into that folder.

    Raises :class:`WeightsNotFoundError` naming the file, the folder and the URL when all fail.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsNotFoundError(f"weights file not found: {p}")
        return p
    found = find_weights(filename)
    if found is not None:
        return found
    folder = weights_dir()
    hint = (f"put '{filename}' into {folder.resolve()} (set USSNB_WEIGHTS_DIR to choose the folder) "
            f"or pass path=...")
    if url:
        hint += f"; its official URL is {url}"
    if not download or not url:
        raise WeightsNotFoundError(f"pretrained weights '{filename}' not found: {hint}")
    try:
        from ..download import download_file

        return download_file(url, folder / filename)
    except Exception as exc:  # offline, HTTP error, read-only folder, ...
        raise WeightsNotFoundError(
            f"pretrained weights '{filename}' not found and the download failed ({exc}): {hint}"
        ) from exc


def read_official_state_dict(path: str | os.PathLike, *, allow_pickle: bool = True) -> dict[str, torch.Tensor]:
    """Read a third-party checkpoint: ``{"model": state_dict}``, ``{"state_dict": ...}`` or a bare state
    dict; a DataParallel ``module.`` prefix is removed.

    The file is first read with ``weights_only=True``. Training checkpoints may also hold non-tensor
    objects (e.g. a data sampler's NumPy state) that this refuses; with ``allow_pickle`` the file is then
    read with full unpickling, with a warning — only do this for files from a source you trust.
    """
    import pickle
    import warnings

    from ..errors import CheckpointError

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_pickle:
            raise CheckpointError(f"cannot read weights {path} with weights_only=True: {exc}") from exc
        warnings.warn(f"{path} cannot be read with weights_only=True (non-tensor objects?); "
                      "retrying with full unpickling", stacklevel=2)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise CheckpointError(f"cannot read weights {path}: {exc2}") from exc2
    except Exception as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from exc
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict (expected a dict of tensors or {{'model': ...}})")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj
