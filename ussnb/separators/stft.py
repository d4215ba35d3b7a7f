"""STFT front-end shared by the spectrogram-mask separators.

``torch.stft`` / ``torch.istft`` with a periodic Hann window, ``center=True`` and reflect padding — the same
transform the reference USS code computes with frozen conv kernels (the README measures ~1e-7 agreement), at a
fraction of the cost and without 12.6 M stored numbers. The window is a non-persistent buffer: it moves with
``.to(device)``, is created once, and never appears in a state dict.
"""
from __future__ import annotations

import torch
from torch import nn


class STFT(nn.Module):
    """Complex STFT / inverse STFT of multichannel waveforms.

    ``forward(wave)``: ``(batch, channels, samples)`` → complex ``(batch, channels, frames, bins)``
    with ``frames = samples // hop + 1`` and ``bins = n_fft // 2 + 1`` (frames × bins, as the reference).
    ``inverse(spec, length)``: the reverse, returning ``(batch, channels, length)``.
    """

    def __init__(self, n_fft: int = 2048, hop: int = 320):
        super().__init__()
        self.n_fft, self.hop = int(n_fft), int(hop)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        batch, channels, samples = wave.shape
        x = wave.reshape(batch * channels, samples)
        # reflect padding needs more samples than n_fft // 2; shorter inputs are zero-padded instead
        mode = "reflect" if samples > self.n_fft // 2 else "constant"
        spec = torch.stft(
            x, self.n_fft, self.hop, window=self.window, center=True, pad_mode=mode, return_complex=True,
        )  # (batch*channels, bins, frames)
        return spec.transpose(1, 2).reshape(batch, channels, -1, self.bins)

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        batch, channels, frames, bins = spec.shape
        x = spec.reshape(batch * channels, frames, bins).transpose(1, 2)
        wave = torch.istft(
            x, self.n_fft, self.hop, window=self.window, center=True, length=length,
        )
        return wave.reshape(batch, channels, length)


def magnitude_phase(spec: torch.Tensor, eps: float = 1e-10):
    """``|X|`` with the power clamped at ``eps`` before the square root (as the reference), and the unit
    phase ``(cos, sin) = (re, im) / |X|``. All outputs have ``spec``'s shape, real dtype."""
    return magnitude_phase_parts(spec.real, spec.imag, eps)


def magnitude_phase_parts(real: torch.Tensor, imag: torch.Tensor, eps: float = 1e-10):
    """:func:`magnitude_phase` of a spectrogram given as its real and imaginary parts (real arithmetic only,
    for exports without complex tensors)."""
    mag = (real * real + imag * imag).clamp_min(eps).sqrt()
    return mag, real / mag, imag / mag


def check_call(mixture: torch.Tensor, condition: torch.Tensor | None, audio_channels: int, condition_size: int) -> None:
    """Validate a separator call: ``mixture (batch, audio_channels, samples)``, ``condition (batch, condition_size)``."""
    if mixture.dim() != 3 or mixture.shape[1] != audio_channels:
        raise ValueError(f"mixture must be (batch, {audio_channels}, samples), got {tuple(mixture.shape)}")
    if condition is None or tuple(condition.shape) != (mixture.shape[0], condition_size):
        got = None if condition is None else tuple(condition.shape)
        raise ValueError(f"condition must be (batch, {condition_size}) = ({mixture.shape[0]}, {condition_size}), got {got}")
