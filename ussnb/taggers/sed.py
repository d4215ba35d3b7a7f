"""A small trainable sound event detection (SED) model for CPU: a PANNs-style decision-level CNN.

    waveform (batch, samples)
    → PannsLogMel (batch, 1, frames, n_mels) → bn0 over the mel axis
    → conv blocks [conv3×3 → BN → ReLU] × 2 + average pooling (frequency always 2, time per ``time_pools``)
    → mean over frequency (batch, steps, C) → frame-wise Linear + ReLU (batch, steps, hidden)
    → frame-wise Linear → sigmoid: step probabilities (batch, steps, classes)
    → linear interpolation to the input's 100 frames/s: ``framewise_output`` (batch, frames, classes)
    clip probability (batch, classes) = max over time (``pooling="max"``) or attention pooling
    (``pooling="attention"``: per class, a softmax over time of a second frame-wise Linear weights the
    frame probabilities).

Default size: 0.54 M parameters for 20 classes (0.61 M for 527); forward of a batch of 16 × 10 s takes about
1.2-2 s on 2 CPU cores (eval), a training step (forward + backward) 3-6 s.

Trained with weak (clip-level) labels only, e.g. ``F.binary_cross_entropy(out["clipwise_output"], y)``;
the frame probabilities then localise the classes, which is what anchor mining needs. Saved and loaded with
its configuration through :mod:`ussnb.checkpoint` (kind ``"starter-sed"``).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_state_dict_checked, read_checkpoint, save_checkpoint
from ..errors import CheckpointError, ConfigError
from ..features import PannsLogMel
from .base import TagOutput, Tagger, interpolate_frames

KIND = "starter-sed"


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_uniform_(conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool != (1, 1) else x


class SedCnn(Tagger):
    """Decision-level CNN sound event detector.

    Args:
        classes: number of output classes.
        sample_rate, n_fft, hop, n_mels, fmin, fmax: log-mel front-end (:class:`~ussnb.features.PannsLogMel`).
        channels: output channels of the conv blocks (each block = two 3×3 convs).
        time_pools: time pooling factor after each block (frequency is always pooled by 2).
        hidden: width of the frame-wise hidden layer (= ``embedding_size``).
        pooling: ``"max"`` or ``"attention"`` — how frame probabilities become the clip probability.
        dropout: dropout before the frame-wise layers (training only).
        labels: optional class names, stored with the configuration.

    ``forward(wave (batch, samples))`` → ``{"clipwise_output": (batch, classes), "framewise_output":
    (batch, frames, classes), "embedding": (batch, hidden)}`` with ``frames = samples // (sample_rate/100) + 1``
    and ``embedding`` = max over time of the frame-wise hidden layer.
    """

    def __init__(self, classes: int, sample_rate: int = 32000, n_fft: int = 1024, hop: int = 320,
                 n_mels: int = 64, fmin: float = 50.0, fmax: float = 14000.0,
                 channels: Sequence[int] = (16, 32, 64, 192), time_pools: Sequence[int] = (2, 2, 2, 1),
                 hidden: int = 128, pooling: str = "max", dropout: float = 0.2,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__()
        if pooling not in ("max", "attention"):
            raise ConfigError(f"pooling must be 'max' or 'attention', got {pooling!r}")
        if len(channels) != len(time_pools):
            raise ValueError("channels and time_pools must have the same length")
        if labels is not None and len(labels) != classes:
            raise ValueError(f"{len(labels)} labels for {classes} classes")
        fmax = min(float(fmax), sample_rate / 2)  # e.g. 16 kHz input with the 32 kHz default fmax
        if n_mels < 2 ** len(channels):
            raise ValueError(f"n_mels={n_mels} too small for {len(channels)} frequency poolings")
        self.config = dict(classes=int(classes), sample_rate=int(sample_rate), n_fft=int(n_fft), hop=int(hop),
                           n_mels=int(n_mels), fmin=float(fmin), fmax=float(fmax), channels=list(channels),
                           time_pools=list(time_pools), hidden=int(hidden), pooling=pooling,
                           dropout=float(dropout), labels=list(labels) if labels is not None else None)
        self.sample_rate, self.classes, self.embedding_size = int(sample_rate), int(classes), int(hidden)
        self.labels = self.config["labels"]
        self.pooling, self.dropout = pooling, float(dropout)
        self.frontend = PannsLogMel(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels,
                                    fmin=fmin, fmax=fmax)
        self.bn0 = nn.BatchNorm2d(n_mels)
        chans = [1, *channels]
        self.blocks = nn.ModuleList(_ConvBlock(chans[i], chans[i + 1]) for i in range(len(channels)))
        self.pools = [(int(t), 2) for t in time_pools]
        self.fc = nn.Linear(channels[-1], hidden)
        self.classifier = nn.Linear(hidden, classes)
        self.attention = nn.Linear(hidden, classes) if pooling == "attention" else None
        self.time_ratio = 1
        for t in time_pools:
            self.time_ratio *= int(t)
        self.min_samples = self.time_ratio * hop

    def _steps(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame-wise hidden features ``(batch, steps, hidden)`` and the number of log-mel frames."""
        x = self.frontend(wave)  # (batch, 1, frames, n_mels)
        frames = x.shape[2]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for block, pool in zip(self.blocks, self.pools):
            x = block(x, pool)
        x = x.mean(dim=3).transpose(1, 2)  # (batch, steps, C)
        x = F.dropout(x, self.dropout, self.training)
        h = F.relu(self.fc(x))
        return F.dropout(h, self.dropout, self.training), frames

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        h, frames = self._steps(wave)
        steps = torch.sigmoid(self.classifier(h))  # (batch, steps, classes)
        if self.attention is None:
            clip = steps.max(dim=1).values
        else:
            weights = torch.softmax(self.attention(h), dim=1)  # over time, per class
            clip = (weights * steps).sum(dim=1).clamp(0.0, 1.0)
        n = self.num_frames(wave.shape[-1])
        # step i covers input frames [i·r, (i+1)·r): its centre in 100-fps frames
        scale = self.frame_rate * self.frontend.hop / self.sample_rate  # input frames → 100-fps frames
        centres = (torch.arange(steps.shape[1], device=h.device, dtype=torch.float32) + 0.5) * self.time_ratio - 0.5
        framewise = interpolate_frames(steps, centres * scale, n)
        return {"clipwise_output": clip, "framewise_output": framewise, "embedding": h.max(dim=1).values}

    def _tag(self, wave: torch.Tensor, frames: bool = True) -> TagOutput:  # frames are a by-product here
        out = self(wave)
        return TagOutput(clip=out["clipwise_output"], frames=out["framewise_output"], embedding=out["embedding"])


def save_sed(model: SedCnn, path: str | os.PathLike, **extra: Any):
    """Save ``model`` with its configuration (kind ``"starter-sed"``); ``extra`` entries (e.g. ``step``,
    ``metrics``) are stored beside it."""
    return save_checkpoint(path, model, kind=KIND, config=model.config, **extra)


def load_sed(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SedCnn:
    """Rebuild a :class:`SedCnn` from a checkpoint written by :func:`save_sed` (eval mode). Missing or
    unexpected keys and shape mismatches raise :class:`~ussnb.errors.CheckpointError`."""
    payload = read_checkpoint(path, expect_kind=KIND)
    try:
        model = SedCnn(**payload["config"])
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {path}: configuration does not fit SedCnn: {exc}") from exc
    load_state_dict_checked(model, payload["state_dict"], what=str(path))
    return model.to(map_location).eval()
