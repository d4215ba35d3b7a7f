"""PANNs audio taggers (Kong et al., "PANNs: Large-Scale Pretrained Audio Neural Networks", 2020):
``Cnn6``, ``Cnn10``, ``Cnn14`` and ``Cnn14_DecisionLevelMax``, written from the paper's description with the
official checkpoint key names, so the published AudioSet checkpoints (Zenodo record 3987831) load strictly.

Architecture (32 kHz, 64 mel bins, 100 frames/s):
    log-mel ``(batch, 1, frames, 64)`` → ``bn0`` (BatchNorm over the mel axis) → conv blocks, each
    ``[conv3×3 → BN → ReLU] × 2`` (``Cnn6``: one 5×5 conv) then 2×2 average pooling and dropout 0.2 →
    mean over frequency ``(batch, channels, steps)``.
    * Cnn6/10/14 (clip-level): max + mean over time → dropout 0.5 → ``fc1`` + ReLU (= ``embedding``) →
      dropout 0.5 → ``fc_audioset`` → sigmoid (= ``clipwise_output``).
    * Cnn14_DecisionLevelMax: 3-step max-pool + 3-step avg-pool over time (stride 1), ``fc1`` + ReLU and
      ``fc_audioset`` + sigmoid on every time step (= segment-wise probabilities), clip = max over time,
      frames = each step repeated 32× and the tail padded with the last step (``framewise_output``
      ``(batch, frames, classes)``).

Front-end. The official checkpoints store the STFT as conv kernels (``spectrogram_extractor.stft.conv_real /
conv_imag.weight``) and the mel matrix (``logmel_extractor.melW``). Here the spectrogram is computed with
``torch.stft`` (periodic Hann, centre, reflect) and the mel projection uses the ``logmel_extractor.melW``
buffer — so a checkpoint's mel matrix is the one used. The STFT kernels are kept as buffers under their
official names only so checkpoints load strictly; :meth:`PannsCnn.check_frontend` verifies that loaded
kernels and mel matrix equal the ones implied by the settings (to 1e-3 relative; ``load_panns`` calls it),
so the stored tensors and the computation cannot silently disagree. The reference README measures this native
front-end at 6e-8 from the conv-kernel one on ``clipwise_output``.

Frame probabilities of the clip-level models (not in the reference code). :meth:`PannsCnn.tag` gives
``frames`` for Cnn6/10/14 by *class activation over time*: the decision-level head of
Cnn14_DecisionLevelMax (3-step max + avg smoothing, ``fc1``, ``fc_audioset``, sigmoid per step) is applied to
the time-distributed features before the clip pooling. max + mean of a stationary sequence equals
max + avg of a local window, so the head sees inputs on the scale it was trained on; a steady sound gets
about the same frame and clip probabilities (within 0.01 on 10 s of noise, see the tests). Steps are repeated to 100 frames/s like PANNs's own SED output.

Training-time augmentation of the reference (SpecAugment, mixup) is not part of these modules.
"""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import check_state_dict
from ..errors import CheckpointError, ConfigError
from ..features import PannsLogMel
from .base import TagOutput, Tagger, read_official_state_dict, repeat_frames, resolve_weights

ZENODO_RECORD = "https://zenodo.org/record/3987831/files/"
OFFICIAL_FILES = {
    "Cnn6": "Cnn6_mAP=0.343.pth",
    "Cnn10": "Cnn10_mAP=0.380.pth",
    "Cnn14": "Cnn14_mAP=0.431.pth",
    "Cnn14_DecisionLevelMax": "Cnn14_DecisionLevelMax_mAP=0.385.pth",
}


def official_url(name: str) -> str:
    return ZENODO_RECORD + OFFICIAL_FILES[name].replace("=", "%3D")


def stft_kernels(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The DFT-as-convolution kernels of the official checkpoints, each ``(n_fft // 2 + 1, 1, n_fft)``:
    ``w[n]·cos(2πkn/N)`` and ``-w[n]·sin(2πkn/N)`` with a periodic Hann window ``w`` (float64 → float32)."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)
    phase = 2.0 * np.pi * ((k * n) % n_fft) / n_fft
    real = (window * np.cos(phase))[:, None, :]
    imag = (-window * np.sin(phase))[:, None, :]
    return torch.from_numpy(real).float(), torch.from_numpy(imag).float()


class _FrozenWeight(nn.Module):
    """Holds one frozen tensor as the buffer ``weight`` (stands in for an official conv layer)."""

    def __init__(self, tensor: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", tensor)


class _StftKernels(nn.Module):
    def __init__(self, n_fft: int) -> None:
        super().__init__()
        real, imag = stft_kernels(n_fft)
        self.conv_real = _FrozenWeight(real)
        self.conv_imag = _FrozenWeight(imag)


class _SpectrogramKernels(nn.Module):
    """``spectrogram_extractor``: official STFT kernels, checked on load, not used for computing."""

    def __init__(self, n_fft: int) -> None:
        super().__init__()
        self.stft = _StftKernels(n_fft)


def _init_layer(layer: nn.Module) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


class ConvBlock(nn.Module):
    """``[conv3×3 (no bias) → BN → ReLU] × 2`` then pooling; ``(batch, in, T, F)`` → ``(batch, out, T', F')``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        _init_layer(self.conv1)
        _init_layer(self.conv2)

    def forward(self, x: torch.Tensor, pool: tuple[int, int] = (2, 2)) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool != (1, 1) else x


class ConvBlock5x5(nn.Module):
    """``conv5×5 (no bias) → BN → ReLU`` then pooling (the blocks of Cnn6)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        _init_layer(self.conv1)

    def forward(self, x: torch.Tensor, pool: tuple[int, int] = (2, 2)) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.avg_pool2d(x, pool) if pool != (1, 1) else x


class PannsCnn(Tagger):
    """Common part of the PANNs CNNs. Subclasses give the block list and the pooling per block.

    Input of :meth:`forward`: waveform ``(batch, samples)`` at ``sample_rate``.
    """

    block_type: type[nn.Module] = ConvBlock
    channels: tuple[int, ...] = ()
    pools: tuple[tuple[int, int], ...] = ()
    decision_level: bool = False

    def __init__(self, sample_rate: int = 32000, window_size: int = 1024, hop_size: int = 320,
                 mel_bins: int = 64, fmin: float = 50.0, fmax: float = 14000.0, classes_num: int = 527) -> None:
        super().__init__()
        self.config = dict(sample_rate=sample_rate, window_size=window_size, hop_size=hop_size,
                           mel_bins=mel_bins, fmin=fmin, fmax=fmax, classes_num=classes_num)
        self.sample_rate, self.classes = int(sample_rate), int(classes_num)
        self.spectrogram_extractor = _SpectrogramKernels(window_size)
        # the log-mel module; its mel matrix is the state-dict entry ``logmel_extractor.melW``
        self.logmel_extractor = PannsLogMel(sample_rate=sample_rate, n_fft=window_size, hop=hop_size,
                                            n_mels=mel_bins, fmin=fmin, fmax=fmax, persistent_mel=True)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        chans = (1,) + self.channels
        for i in range(len(self.channels)):
            setattr(self, f"conv_block{i + 1}", self.block_type(chans[i], chans[i + 1]))
        width = self.channels[-1]
        self.fc1 = nn.Linear(width, width)
        self.fc_audioset = nn.Linear(width, classes_num)
        _init_layer(self.fc1)
        _init_layer(self.fc_audioset)
        self.embedding_size = width
        # time downsampling of the blocks; the frame output repeats each step this many times
        self.time_ratio = math.prod(p[0] for p in self.pools)
        self.min_samples = self.time_ratio * hop_size
        if hop_size * self.frame_rate != sample_rate:
            raise ValueError("PANNs models need hop_size = sample_rate / 100 (100 frames/s)")

    # -- pieces
    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, 1, frames, mel_bins)`` in dB (before ``bn0``)."""
        return self.logmel_extractor(wave)

    def _features(self, wave: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Conv features averaged over frequency ``(batch, channels, steps)`` and the input frame count."""
        x = self.logmel(wave)
        frames = x.shape[2]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalise each mel bin
        for i, pool in enumerate(self.pools):
            x = getattr(self, f"conv_block{i + 1}")(x, pool)
            x = F.dropout(x, p=0.2, training=self.training)
        return x.mean(dim=3), frames

    def _clip_head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip-level head on ``(batch, channels, steps)`` → (probabilities, embedding)."""
        x = x.max(dim=2).values + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        emb = F.relu(self.fc1(x))
        x = F.dropout(emb, p=0.5, training=self.training)
        return torch.sigmoid(self.fc_audioset(x)), emb

    def _step_head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decision-level head on ``(batch, channels, steps)`` → step probabilities
        ``(batch, steps, classes)`` and step embeddings ``(batch, steps, channels)``."""
        x = F.max_pool1d(x, 3, stride=1, padding=1) + F.avg_pool1d(x, 3, stride=1, padding=1)
        x = F.dropout(x, p=0.5, training=self.training).transpose(1, 2)
        emb = F.relu(self.fc1(x))
        x = F.dropout(emb, p=0.5, training=self.training)
        return torch.sigmoid(self.fc_audioset(x)), emb

    # -- reference call convention
    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        """``wave`` ``(batch, samples)`` → ``{"clipwise_output": (batch, classes),
        "embedding": (batch, width)}`` (+ ``"framewise_output": (batch, frames, classes)`` for the
        decision-level model, whose embedding is the max over time of the step embeddings)."""
        x, frames = self._features(wave)
        if not self.decision_level:
            clip, emb = self._clip_head(x)
            return {"clipwise_output": clip, "embedding": emb}
        steps, step_emb = self._step_head(x)
        return {
            "clipwise_output": steps.max(dim=1).values,
            "framewise_output": repeat_frames(steps, self.time_ratio, frames),
            "embedding": step_emb.max(dim=1).values,
        }

    def _tag(self, wave: torch.Tensor, frames: bool = True) -> TagOutput:  # frames are a by-product here
        x, n_frames = self._features(wave)
        steps, step_emb = self._step_head(x)
        if self.decision_level:
            clip, emb = steps.max(dim=1).values, step_emb.max(dim=1).values
        else:
            clip, emb = self._clip_head(x)
        return TagOutput(clip=clip, frames=repeat_frames(steps, self.time_ratio, n_frames), embedding=emb)

    # -- checkpoint consistency
    def check_frontend(self, rtol: float = 1e-3) -> None:
        """Raise :class:`CheckpointError` if the stored STFT kernels / mel matrix differ from those implied
        by the constructor settings by more than ``rtol`` × their largest magnitude (the STFT is computed
        with ``torch.stft``, so the stored kernels must describe the same transform; a wrong sample rate,
        window or mel range shows up as an O(1) relative difference, float rounding as ~1e-7)."""
        real, imag = stft_kernels(self.config["window_size"])
        fresh = PannsLogMel(sample_rate=self.config["sample_rate"], n_fft=self.config["window_size"],
                            hop=self.config["hop_size"], n_mels=self.config["mel_bins"],
                            fmin=self.config["fmin"], fmax=self.config["fmax"]).melW
        stored = {
            "spectrogram_extractor.stft.conv_real.weight": (self.spectrogram_extractor.stft.conv_real.weight, real),
            "spectrogram_extractor.stft.conv_imag.weight": (self.spectrogram_extractor.stft.conv_imag.weight, imag),
            "logmel_extractor.melW": (self.logmel_extractor.melW, fresh),
        }
        for key, (have, want) in stored.items():
            err = (have.detach().float().cpu() - want).abs().max().item()
            if not err <= rtol * want.abs().max().item():
                raise CheckpointError(
                    f"{type(self).__name__}: stored front-end tensor {key} differs from the one implied by "
                    f"the settings {self.config} (max abs difference {err:.3g}); wrong sample rate / "
                    "window / mel settings for this checkpoint?"
                )


class Cnn6(PannsCnn):
    """PANNs Cnn6: 4 blocks of one 5×5 conv (64-128-256-512), embedding 512."""

    block_type = ConvBlock5x5
    channels = (64, 128, 256, 512)
    pools = ((2, 2),) * 4


class Cnn10(PannsCnn):
    """PANNs Cnn10: 4 blocks of two 3×3 convs (64-128-256-512), embedding 512."""

    channels = (64, 128, 256, 512)
    pools = ((2, 2),) * 4


class Cnn14(PannsCnn):
    """PANNs Cnn14: 6 blocks of two 3×3 convs (64 … 2048, the last without pooling), embedding 2048."""

    channels = (64, 128, 256, 512, 1024, 2048)
    pools = ((2, 2),) * 5 + ((1, 1),)


class Cnn14_DecisionLevelMax(Cnn14):  # noqa: N801 - official name
    """PANNs Cnn14 with a decision-level head: frame-wise probabilities, clip = max over time."""

    decision_level = True


MODELS: dict[str, type[PannsCnn]] = {
    "Cnn6": Cnn6, "Cnn10": Cnn10, "Cnn14": Cnn14, "Cnn14_DecisionLevelMax": Cnn14_DecisionLevelMax,
}


def _canonical(name: str) -> str:
    for key in MODELS:
        if name.lower().replace("-", "_") in (key.lower(), f"panns_{key.lower()}"):
            return key
    raise ConfigError(f"unknown PANNs model {name!r}; available: {sorted(MODELS)}")


def load_panns(name: str, path: str | os.PathLike | None = None, *, download: bool = True,
               **model_kw: Any) -> PannsCnn:
    """Build PANNs model ``name`` and load weights strictly.

    Weights come from ``path`` (an official ``.pth`` ``{"model": state_dict}`` or a bare state dict), else the
    official file name in ``USSNB_WEIGHTS_DIR`` (e.g. ``Cnn14_mAP=0.431.pth``), else a download from Zenodo
    record 3987831 (when ``download`` and online). Key or shape mismatches raise
    :class:`~ussnb.errors.CheckpointError` naming the first offending keys; a missing file raises
    :class:`~ussnb.taggers.base.WeightsNotFoundError` saying which file to put where.
    Returns the model in eval mode.
    """
    name = _canonical(name)
    model = MODELS[name](**model_kw)
    file = resolve_weights(OFFICIAL_FILES[name], official_url(name), path, download=download)
    state = read_official_state_dict(file)
    check_state_dict(model, state, what=str(file))
    model.load_state_dict(state, strict=True)
    model.check_frontend()
    return model.eval()
