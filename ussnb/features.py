"""Log-mel front-ends of the taggers, computed with ``torch.stft``.

* :class:`PannsLogMel` — the PANNs front-end (Kong et al. 2020): periodic Hann STFT, power, Slaney mel
  filterbank from :func:`librosa.filters.mel`, ``10·log10(max(mel, 1e-10))``. 10 s at 32 kHz → 1001 frames.
* :class:`EfficientATMel` — the EfficientAT preprocessing (Schmid et al. 2023) in eval mode: pre-emphasis,
  symmetric-Hann STFT with an 800-sample window inside n_fft 1024, Kaldi/HTK mel banks, ``log(x + 1e-5)``,
  ``(x + 4.5) / 5``. 10 s at 32 kHz → 1000 frames.

Both keep their constants (window, mel matrix) as *non-persistent* buffers: they are built once at
construction, follow ``.to(device)``, and never appear in a state dict (they are a fixed function of the
constructor arguments, which the models save in their config).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _as_batch(wave: torch.Tensor) -> torch.Tensor:
    """``(samples,)`` or ``(batch, samples)`` → ``(batch, samples)``."""
    if wave.dim() == 1:
        return wave.unsqueeze(0)
    if wave.dim() != 2:
        raise ValueError(f"expected a waveform (samples,) or (batch, samples), got shape {tuple(wave.shape)}")
    return wave


def panns_frames(samples: int, hop: int = 320) -> int:
    """Number of frames :class:`PannsLogMel` gives for ``samples`` (centred STFT): ``samples // hop + 1``."""
    return samples // hop + 1


class PannsLogMel(nn.Module):
    """PANNs log-mel spectrogram.

    Args:
        sample_rate: input rate in Hz (32 000 for the published PANNs).
        n_fft: FFT size = window length (periodic Hann).
        hop: hop size in samples (320 → 100 frames/s at 32 kHz).
        n_mels, fmin, fmax: Slaney-style mel filterbank of librosa (``htk=False``, ``norm="slaney"``).
        amin: floor of the mel power before the logarithm.
        persistent_mel: keep the mel matrix ``melW`` in the state dict (the PANNs checkpoints store it as
            ``logmel_extractor.melW``); by default it is a non-persistent buffer.

    Input ``(batch, samples)`` (or ``(samples,)``) → output ``(batch, 1, frames, n_mels)`` in dB, with
    ``frames = samples // hop + 1``. No ``top_db`` clipping (as in PANNs).
    """

    def __init__(
        self,
        sample_rate: int = 32000,
        n_fft: int = 1024,
        hop: int = 320,
        n_mels: int = 64,
        fmin: float = 50.0,
        fmax: float = 14000.0,
        amin: float = 1e-10,
        persistent_mel: bool = False,
    ) -> None:
        super().__init__()
        import librosa

        self.sample_rate, self.n_fft, self.hop, self.n_mels = int(sample_rate), int(n_fft), int(hop), int(n_mels)
        self.fmin, self.fmax, self.amin = float(fmin), float(fmax), float(amin)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        mel = librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax)
        # (n_freq, n_mels), so that power (batch, frames, n_freq) @ melW → (batch, frames, n_mels)
        self.register_buffer("melW", torch.from_numpy(np.ascontiguousarray(mel.T)).float(), persistent=persistent_mel)

    def frames(self, samples: int) -> int:
        return panns_frames(samples, self.hop)

    def power(self, wave: torch.Tensor) -> torch.Tensor:
        """Power spectrogram ``(batch, frames, n_fft // 2 + 1)``."""
        wave = _as_batch(wave)
        if wave.shape[-1] <= self.n_fft // 2:  # reflect padding needs more samples than it pads
            raise ValueError(f"PannsLogMel needs more than {self.n_fft // 2} samples, got {wave.shape[-1]}")
        spec = torch.stft(
            wave, self.n_fft, hop_length=self.hop, win_length=self.n_fft, window=self.window,
            center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
        )  # (batch, n_freq, frames)
        return (spec.real.square() + spec.imag.square()).transpose(1, 2)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.power(wave), self.melW)  # (batch, frames, n_mels)
        logmel = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
        return logmel.unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, hop={self.hop}, n_mels={self.n_mels}, "
                f"fmin={self.fmin}, fmax={self.fmax}")


def kaldi_mel_banks(
    num_bins: int,
    n_fft: int,
    sample_rate: float,
    low_freq: float = 0.0,
    high_freq: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Kaldi's triangular mel filterbank without VTLN warping, ``(num_bins, n_fft // 2)``.

    HTK mel scale ``mel(f) = 1127·ln(1 + f/700)``; ``num_bins + 2`` equally spaced mel edges between
    ``mel(low_freq)`` and ``mel(high_freq)``; filter ``b`` rises linearly (in mel) from edge ``b`` to edge
    ``b+1`` and falls to edge ``b+2``; not area-normalised. FFT bin ``j`` sits at ``j·sample_rate/n_fft`` for
    ``j < n_fft // 2`` (the Nyquist bin is not covered). ``high_freq <= 0`` counts down from Nyquist.

    The arithmetic is done in ``dtype`` (float32 by default) in the same order as Kaldi-compatible code does
    it, so the filterbank is bit-identical to the one the published EfficientAT weights were trained on
    (float64 banks move the log-mel by up to 1.6e-4).
    """
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"bad mel range: low_freq={low_freq}, high_freq={high_freq}, nyquist={nyquist}")
    mel_lo = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_hi = 1127.0 * math.log(1.0 + high_freq / 700.0)
    delta = (mel_hi - mel_lo) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=dtype).unsqueeze(1)
    left = mel_lo + b * delta
    centre = mel_lo + (b + 1.0) * delta
    right = mel_lo + (b + 2.0) * delta
    freqs = (sample_rate / n_fft) * torch.arange(n_fft // 2, dtype=dtype)
    mel = (1127.0 * (1.0 + freqs / 700.0).log()).unsqueeze(0)
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0)


class EfficientATMel(nn.Module):
    """EfficientAT log-mel preprocessing (the reference ``AugmentMelSTFT`` in eval mode).

    1. pre-emphasis ``y[n] = x[n+1] - 0.97·x[n]`` (``samples - 1`` outputs);
    2. ``torch.stft`` (n_fft 1024, hop 320, symmetric Hann of ``win_length`` 800 centred in the frame,
       centre + reflect padding), power;
    3. Kaldi/HTK mel banks (``n_mels`` bins from ``fmin`` to ``fmax``) plus a zero column for Nyquist;
    4. ``(log(mel + 1e-5) + 4.5) / 5``.

    Input ``(batch, samples)`` → ``(batch, 1, n_mels, frames)`` with ``frames = 1 + (samples - 1) // hop``
    (1000 for 10 s at 32 kHz). No augmentation (no mel-range jitter, no masking).
    """

    def __init__(
        self,
        sample_rate: int = 32000,
        n_fft: int = 1024,
        win_length: int = 800,
        hop: int = 320,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: float = 15000.0,
        preemphasis: float = 0.97,
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.win_length, self.hop = int(sample_rate), int(n_fft), int(win_length), int(hop)
        self.n_mels, self.fmin, self.fmax, self.preemphasis = int(n_mels), float(fmin), float(fmax), float(preemphasis)
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=False), persistent=False)
        banks = kaldi_mel_banks(self.n_mels, self.n_fft, self.sample_rate, self.fmin, self.fmax)
        banks = torch.nn.functional.pad(banks, (0, 1))  # zero weight on Nyquist → (n_mels, n_fft // 2 + 1)
        self.register_buffer("mel_basis", banks, persistent=False)

    def frames(self, samples: int) -> int:
        return 1 + (samples - 1) // self.hop

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = _as_batch(wave)
        if wave.shape[-1] - 1 <= self.n_fft // 2:  # reflect padding needs more samples than it pads
            raise ValueError(f"EfficientATMel needs more than {self.n_fft // 2 + 1} samples, got {wave.shape[-1]}")
        x = wave[:, 1:] - self.preemphasis * wave[:, :-1]
        spec = torch.stft(
            x, self.n_fft, hop_length=self.hop, win_length=self.win_length, window=self.window,
            center=True, pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
        )  # (batch, n_freq, frames)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.mel_basis, power)  # (batch, n_mels, frames)
        return ((torch.log(mel + 1e-5) + 4.5) / 5.0).unsqueeze(1)

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length}, "
                f"hop={self.hop}, n_mels={self.n_mels}, fmin={self.fmin}, fmax={self.fmax}")
