"""Plain query-conditioned U-Net (the zero-shot USS baseline family): conv → BN → ReLU → +β(c) at every conv,
no residual connections, sigmoid magnitude mask with the mixture phase.

Shares the STFT front end, input normalisation (BN per bin, frames padded to the time pooling, top bin dropped)
and size presets with :mod:`ussnb.separators.resunet`.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .resunet import PRESETS
from .base import Separator
from .stft import STFT, check_call
from ..errors import ConfigError


class ConvBNReLUFiLM(nn.Module):
    """conv3×3 → BN → ReLU → + Linear(condition)  ·  ``(batch, in, t, f)`` → ``(batch, out, t, f)``."""

    def __init__(self, in_channels: int, out_channels: int, condition_size: int, momentum: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, momentum=momentum)
        self.beta = nn.Linear(condition_size, out_channels)
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.xavier_uniform_(self.beta.weight)
        nn.init.zeros_(self.beta.bias)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x))) + self.beta(condition)[:, :, None, None]


class UNet(Separator):
    """Query-conditioned U-Net on the STFT magnitude.

    ``model(mixture (batch, audio_channels, samples), condition (batch, condition_size))``
    → ``(batch, audio_channels, samples)``.

    Args mirror :class:`~ussnb.separators.resunet.ResUNet`: ``channels`` = (first conv, stage 1, ..., stage S);
    each stage is two conv-BN-ReLU-FiLM layers then average pooling ((2, 2), last (1, 2)); the decoder
    upsamples with a transposed conv (kernel = stride), concatenates the skip and applies two more layers.
    """

    registry_name = "unet"

    def __init__(self, condition_size: int = 527, channels: Sequence[int] = PRESETS["small"]["channels"],
                 pools: Sequence[Sequence[int]] | None = None, n_fft: int = 512, hop: int = 160,
                 sample_rate: int = 16000, audio_channels: int = 1, momentum: float = 0.01):
        super().__init__()
        channels = [int(c) for c in channels]
        stages = len(channels) - 1
        if pools is None:
            pools = [(2, 2)] * (stages - 1) + [(1, 2)]
        pools = [tuple(int(v) for v in p) for p in pools]
        if len(pools) != stages or stages < 1:
            raise ValueError(f"need one pool per stage: {len(pools)} pools, {stages} stages")
        if (n_fft // 2) % math.prod(p[1] for p in pools):
            raise ValueError("n_fft / 2 must be divisible by the total frequency pooling")
        self.set_config(dict(condition_size=int(condition_size), channels=channels, pools=[list(p) for p in pools],
                             n_fft=int(n_fft), hop=int(hop), sample_rate=int(sample_rate),
                             audio_channels=int(audio_channels), momentum=float(momentum)))
        self.pools = pools
        self.time_multiple = math.prod(p[0] for p in pools)
        self.stft = STFT(n_fft, hop)
        self.bn0 = nn.BatchNorm2d(n_fft // 2 + 1, momentum=momentum)
        c = condition_size

        def layer(i, o):
            return ConvBNReLUFiLM(i, o, c, momentum)

        self.first = layer(audio_channels, channels[0])
        self.encoders = nn.ModuleList(
            nn.ModuleList([layer(channels[s], channels[s + 1]), layer(channels[s + 1], channels[s + 1])])
            for s in range(stages)
        )
        self.centre = nn.ModuleList([layer(channels[-1], channels[-1]), layer(channels[-1], channels[-1])])
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        cin = channels[-1]
        for enc in reversed(range(stages)):
            out = channels[enc + 1]
            self.ups.append(nn.ConvTranspose2d(cin, out, pools[enc], stride=pools[enc], bias=False))
            self.decoders.append(nn.ModuleList([layer(2 * out, out), layer(out, out)]))
            cin = out
        self.head = nn.Conv2d(cin, audio_channels, 1)

    @classmethod
    def from_preset(cls, preset: str = "small", **overrides):
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[preset], **overrides})

    def forward(self, mixture, condition: torch.Tensor | None = None):
        if isinstance(mixture, dict):
            return {"waveform": self.forward(mixture["mixture"], mixture["condition"])}
        check_call(mixture, condition, self.audio_channels, self.condition_size)
        spec = self.stft(mixture)  # (batch, channels, frames, bins) complex
        mask = self.mask(spec.abs(), condition)
        spec = F.pad(spec[..., :-1] * mask, (0, 1))  # mixture phase; top bin returned as 0
        return self.stft.inverse(spec, mixture.shape[-1])

    def spectral(self, real: torch.Tensor, imag: torch.Tensor, condition: torch.Tensor):
        """The network between STFT and iSTFT in real arithmetic: the mixture spectrogram's parts
        ``(batch, channels, frames, bins)`` → the estimate's parts (what :mod:`ussnb.export` wraps)."""
        mask = self.mask((real * real + imag * imag).sqrt(), condition)
        return F.pad(real[..., :-1] * mask, (0, 1)), F.pad(imag[..., :-1] * mask, (0, 1))

    def mask(self, mag: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``|X|`` (batch, channels, frames, bins) → magnitude mask (batch, channels, frames, bins - 1)."""
        frames = mag.shape[2]
        x = self.bn0(mag.transpose(1, 3)).transpose(1, 3)
        x = F.pad(x, (0, -1, 0, -frames % self.time_multiple))  # pad frames, drop the top bin
        x = self.first(x, condition)
        skips = []
        for (a, b), pool in zip(self.encoders, self.pools):
            x = b(a(x, condition), condition)
            skips.append(x)
            x = F.avg_pool2d(x, pool)
        x = self.centre[1](self.centre[0](x, condition), condition)
        for up, (a, b), skip in zip(self.ups, self.decoders, reversed(skips)):
            x = torch.cat((up(x), skip), dim=1)
            x = b(a(x, condition), condition)
        return torch.sigmoid(self.head(x))[:, :, :frames]  # (batch, channels, frames, bins - 1)
