"""ResUNet separators with additive FiLM conditioning and a complex ideal ratio mask (Kong et al., USS 2023).

Written from the paper and from the key list / parity vectors in ``shared/reference/uss_resunet30_at_soft``;
state-dict keys are the official ones, so the released USS checkpoints load strictly:

* ``base.*``  the U-Net: ``bn0`` (BatchNorm over the 1025 STFT bins), ``pre_conv`` (1×1), ``encoder_block1..6``,
  ``conv_block7a`` (centre), ``decoder_block1..6``, ``after_conv`` (1×1 → 3 mask channels per audio channel);
* ``film.*``  one ``Linear(condition → channels)`` per modulated BatchNorm, named by the layer's path with a
  literal ``->``, e.g. ``film.encoder_block1->conv_block1->beta1`` (the conditioning is an additive β only).

Signal path of ``ResUNet30`` (paper preset), shapes for one audio channel::

    mixture (B, 1, N) ─ STFT n_fft 2048 hop 320 ─► |X| (B, 1, T, 1025), phase (cos, sin)
    |X| ─ bn0 per bin ─ pad T to a multiple of 32 (zeros) ─ drop top bin ─► (B, 1, T', 1024)
        ─ pre_conv 1×1 ─► 32 ch ─ 6 × [residual block, avg-pool (2,2)×5 then (1,2)]
          channels 32, 64, 128, 256, 384, 384 ─ centre residual block 384
        ─ 6 × [BN + β, LeakyReLU, transposed conv (kernel = stride), concat skip, residual block]
        ─ after_conv 1×1 ─► (B, 3, T', 1024) ─ crop T, restore the top bin as 0
    mask: |M| = sigmoid(ch0), ∠M from (tanh ch1, tanh ch2) normalised to unit length
    Ŝ = ReLU(|X|·|M|) · e^{j(∠X + ∠M)}  ─ iSTFT ─► (B, 1, N)

Residual block: BN → +β1(c) → LeakyReLU(0.01) → conv3×3 (no bias) → BN → +β2(c) → LeakyReLU → conv3×3,
plus the input (or a 1×1 conv with bias when the channel count changes). BatchNorm momentum 0.01.

Reference quirks, and what is kept
----------------------------------
* **Unused decoder layers (kept only for the official layout).** Each reference decoder block owns a second
  BatchNorm (``decoder_blockN.bn2``) and a second FiLM Linear (``film.decoder_blockN->beta2``) that its forward
  pass never uses (6 BNs + 6 Linears, 1.2 M parameters at condition 527). They are in every official
  checkpoint and in the quoted parameter count (26,595,781), so ``official_layout=True`` (the ``paper``
  preset of ResUNet30) registers them for strict loading — but they are never computed, so they receive no
  gradient (use ``find_unused_parameters`` under DDP, or ``official_layout=False`` to train without them).
  Note: the reference README/notes name the unused Linears ``...->conv_block2->beta2``; the parity vectors show
  that the decoder-level ``->beta2`` (beside the unused ``bn2``) is the one not used — the residual block's
  ``conv_block2->beta2`` *is* used (see ``tests/separators/test_resunet.py``).
* **Frozen STFT kernels dropped.** The reference computes the STFT/iSTFT with 12.6 M frozen conv weights
  (``base.stft.conv_real.weight`` ...). Here ``torch.stft``/``torch.istft`` do the same transform; those 5 keys
  are not in this model's state dict, and :func:`load_official_uss_checkpoint` ignores them when present.
* **Kept for parity:** magnitude from the power clamped at 1e-10; BN over frequency bins before the time padding
  (padded frames are exact zeros after BN); the top bin dropped and returned as 0; phase mask normalised with a
  1e-10 floor (a zero phase-mask vector gives a zero output bin).

Inference fast path (eval mode and no autograd, e.g. under ``torch.inference_mode``): every "BN → +β → LeakyReLU"
is one fused affine (``x·scale + (shift + β)``) plus an in-place LeakyReLU; on large feature maps the BN after
conv1 is folded into conv1's weights/bias, and on the CPU conv1's LeakyReLU and conv2's residual addition are post-ops of the
oneDNN convolution (:func:`_conv3x3`); the U-Net runs in channels-last memory format (faster oneDNN convs). Same function, fewer passes over memory; the parity tests run this path and
check it against the plain-module (autograd) path.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_state_dict_checked
from ..errors import CheckpointError, ConfigError
from .base import Separator
from .stft import STFT, check_call, magnitude_phase, magnitude_phase_parts

# Size presets: ``channels`` = (pre-conv, encoder stage 1, ..., encoder stage S); the centre block keeps the last.
PRESETS: dict[str, dict[str, Any]] = {
    # the paper's ResUNet30 (32 kHz, n_fft 2048 / hop 320, 6 stages)
    "paper": dict(channels=(32, 32, 64, 128, 256, 384, 384), n_fft=2048, hop=320, sample_rate=32000),
    # CPU variants at 16 kHz with a 512-point STFT (257 bins → 256)
    "small": dict(channels=(16, 16, 32, 64, 128, 192, 192), n_fft=512, hop=160, sample_rate=16000),
    "tiny": dict(channels=(8, 8, 16, 32, 64), n_fft=512, hop=160, sample_rate=16000),
    # tiny's widths on a 256-point STFT (129 bins → 128, hop 8 ms; 0.62× tiny's time-frequency pixels): the plain
    # U-Net of the zs2021 preset. A training step of 16 × 2 s on 1 thread took 0.4-0.9× tiny's time on the shared
    # 2-core machine (perf/separator_train_step.py, 2026-12-02)
    "cpu": dict(channels=(8, 8, 16, 32, 64), n_fft=256, hop=128, sample_rate=16000),
}

# The reference's frozen STFT/iSTFT tensors: present in official checkpoints, absent (and unneeded) here.
FROZEN_STFT_KEYS = (
    "base.stft.conv_real.weight",
    "base.stft.conv_imag.weight",
    "base.istft.ola_window",
    "base.istft.conv_real.weight",
    "base.istft.conv_imag.weight",
)

LEAKY_SLOPE = 0.01


def _uses_batch_stats(bn: nn.BatchNorm2d) -> bool:
    return bn.training or not bn.track_running_stats or bn.running_var is None


def _bn_affine(bn: nn.BatchNorm2d, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``x·scale + shift`` (per channel), computed in the BN's own (fp32) precision and returned
    in ``dtype`` (the activations' dtype: bf16/fp16 in a low-precision body, see :meth:`ResUNet.low_precision`)."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    return (scale, shift) if dtype is None else (scale.to(dtype), shift.to(dtype))


def _fast_path(*bns: nn.BatchNorm2d) -> bool:
    """Inference fast path: running statistics and no autograd (so in-place ops are safe)."""
    return not torch.is_grad_enabled() and not any(_uses_batch_stats(bn) for bn in bns)


def _bn_film_act(bn: nn.BatchNorm2d, x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(BN(x) + β). ``x`` (batch, channels, frames, bins), ``β`` (batch, channels, 1, 1).

    Fast path: BN and β fused into a single ``addcmul`` (one pass over ``x``) + an in-place LeakyReLU.
    """
    if not _fast_path(bn):
        return F.leaky_relu(bn(x) + beta, LEAKY_SLOPE)
    scale, shift = _bn_affine(bn, x.dtype)
    y = torch.addcmul(shift[None, :, None, None] + beta, x, scale[None, :, None, None])
    return F.leaky_relu_(y, LEAKY_SLOPE)


_FUSED_CONV: dict = {}  # dtype → False once this torch build refused the oneDNN fused convolution for it


def _conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, leaky: bool = False,
             add: torch.Tensor | None = None) -> torch.Tensor:
    """3×3 convolution (padding 1, + bias) followed by LeakyReLU (``leaky``) or by ``+ add`` (the residual).

    On the CPU (fp32/bf16) this is one oneDNN convolution with the activation / addition as a post-op — the
    fused kernel ``torch.compile`` itself emits (``torch.ops.mkldnn._convolution_pointwise``) — so the output
    is not written and re-read once more. Same function (bit-identical in fp32 here); measured on a 2-core AMX
    CPU: ~25 % faster per large bf16 conv, the bf16 ResUNet30 forward ~7 % faster, fp32 unchanged. Where the op
    is missing or refuses the call, the plain conv + in-place op (and for that dtype from then on)."""
    if (_FUSED_CONV.get(x.dtype) is not False and x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16)
            and weight.dtype == x.dtype and (add is None or add.dtype == x.dtype)):
        try:
            ops = torch.ops.mkldnn
            if add is not None:
                y = ops._convolution_pointwise.binary(x, add, weight, bias, [1, 1], [1, 1], [1, 1], 1, "add", 1.0,
                                                      None, [], None)
            else:
                y = ops._convolution_pointwise(x, weight, bias, [1, 1], [1, 1], [1, 1], 1,
                                               "leaky_relu" if leaky else "none", [LEAKY_SLOPE] if leaky else [], "")
            _FUSED_CONV[x.dtype] = True
            return y
        except (RuntimeError, AttributeError, NotImplementedError):
            if _FUSED_CONV.get(x.dtype) is None:  # never worked for this dtype: stop trying
                _FUSED_CONV[x.dtype] = False
    y = F.conv2d(x, weight, bias, padding=1)
    if leaky:
        y = F.leaky_relu_(y, LEAKY_SLOPE)
    return y if add is None else y.add_(add)


class plain_convolutions:
    """Context manager: :func:`_conv3x3` uses the plain ``F.conv2d`` path (no oneDNN fused kernel) inside it —
    for tracing / export, where ``torch.ops.mkldnn._convolution_pointwise`` would be recorded as a CPU-only op
    that neither ONNX nor other runtimes know. The previous state is restored on exit."""

    def __enter__(self):
        self._saved = dict(_FUSED_CONV)
        _FUSED_CONV.update({torch.float32: False, torch.bfloat16: False})
        return self

    def __exit__(self, *exc):
        _FUSED_CONV.clear()
        _FUSED_CONV.update(self._saved)
        return False


class FiLM(nn.Module):
    """Additive FiLM: a ``Linear(condition_size → channels)`` per modulated layer.

    Sub-modules are named by the modulated layer's path with ``->`` (official key names).
    ``forward(condition (batch, condition_size), names)`` → ``{name: β (batch, channels, 1, 1)}``.
    """

    def __init__(self, condition_size: int, layers: Mapping[str, int]):
        super().__init__()
        for name, channels in layers.items():
            linear = nn.Linear(condition_size, channels)
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
            self.add_module(name, linear)

    def forward(self, condition: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        modules = self._modules
        return {n: modules[n](condition)[:, :, None, None] for n in names}


class ResBlock(nn.Module):
    """Pre-activation residual block modulated by β1, β2 (``ConvBlockRes`` in the reference).

    ``(batch, in_channels, frames, bins)`` → ``(batch, out_channels, frames, bins)``.
    """

    def __init__(self, path: str, in_channels: int, out_channels: int, momentum: float):
        super().__init__()
        self.path = path  # e.g. "encoder_block1->conv_block1"; FiLM names are path + "->beta1"/"->beta2"
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=momentum)
        self.bn2 = nn.BatchNorm2d(out_channels, momentum=momentum)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight)
        if self.shortcut is not None:
            nn.init.xavier_uniform_(self.shortcut.weight)
            nn.init.zeros_(self.shortcut.bias)

    def film_layers(self) -> dict[str, int]:
        return {f"{self.path}->beta1": self.bn1.num_features, f"{self.path}->beta2": self.bn2.num_features}

    def forward(self, x: torch.Tensor, betas: Mapping[str, torch.Tensor]) -> torch.Tensor:
        beta1, beta2 = betas[f"{self.path}->beta1"], betas[f"{self.path}->beta2"]
        if _fast_path(self.bn1, self.bn2):
            return self._forward_inference(x, beta1, beta2)
        h = self.conv1(_bn_film_act(self.bn1, x, beta1))
        h = self.conv2(_bn_film_act(self.bn2, h, beta2))
        return h + (x if self.shortcut is None else self.shortcut(x))

    def _forward_inference(self, x: torch.Tensor, beta1: torch.Tensor, beta2: torch.Tensor) -> torch.Tensor:
        """Same function with fewer passes over memory: on large feature maps bn2's scale is folded into conv1's
        weights and its shift + β2 into conv1's bias (batch 1) or one in-place add; activations and the residual
        are updated in place. (On small maps scaling the weights would cost more than it saves.)"""
        h = _bn_film_act(self.bn1, x, beta1)
        if h.numel() < self.conv1.weight.numel():
            h = self.conv2(_bn_film_act(self.bn2, self.conv1(h), beta2))
            return h.add_(x if self.shortcut is None else self.shortcut(x))
        scale, shift = _bn_affine(self.bn2)  # fp32: folded into the weights before any rounding to bf16/fp16
        weight = (self.conv1.weight.to(scale.dtype) * scale[:, None, None, None]).to(self.conv1.weight.dtype)
        shift = shift.to(h.dtype)
        if x.shape[0] == 1:  # one item: bn2's shift + β2 is conv1's bias, LeakyReLU its post-op
            h = _conv3x3(h, weight, shift + beta2.flatten(), leaky=True)
        else:
            h = F.leaky_relu_(F.conv2d(h, weight, shift, padding=1).add_(beta2), LEAKY_SLOPE)
        return _conv3x3(h, self.conv2.weight, None, add=x if self.shortcut is None else self.shortcut(x))


class EncoderBlock(nn.Module):
    """``blocks`` residual blocks then average pooling. Returns ``(pooled, before_pool)``."""

    def __init__(self, name: str, in_channels: int, out_channels: int, blocks: int, pool, momentum: float):
        super().__init__()
        self.pool = tuple(pool)
        for i in range(blocks):
            cin = in_channels if i == 0 else out_channels
            self.add_module(f"conv_block{i + 1}", ResBlock(f"{name}->conv_block{i + 1}", cin, out_channels, momentum))

    def forward(self, x: torch.Tensor, betas):
        for block in self.children():
            x = block(x, betas)
        pooled = F.avg_pool2d(x, self.pool) if self.pool != (1, 1) else x
        return pooled, x


class DecoderBlock(nn.Module):
    """BN + β1 → LeakyReLU → transposed conv (kernel = stride) → concat skip → ``blocks`` residual blocks.

    ``(batch, in_channels, t, f)`` + skip ``(batch, out_channels, t·st, f·sf)`` → ``(batch, out_channels, ...)``.
    With ``official_layout`` the reference's unused ``bn2`` / ``->beta2`` are registered (never computed).
    """

    def __init__(self, name: str, in_channels: int, out_channels: int, blocks: int, stride, momentum: float,
                 official_layout: bool):
        super().__init__()
        self.path = name
        self.official_layout = official_layout
        self.bn1 = nn.BatchNorm2d(in_channels, momentum=momentum)
        if official_layout:
            self.bn2 = nn.BatchNorm2d(in_channels, momentum=momentum)  # unused, as in the reference
        self.conv1 = nn.ConvTranspose2d(in_channels, out_channels, tuple(stride), stride=tuple(stride), bias=False)
        nn.init.xavier_uniform_(self.conv1.weight)
        self.blocks = []
        for i in range(blocks):
            cin = 2 * out_channels if i == 0 else out_channels
            block = ResBlock(f"{name}->conv_block{i + 2}", cin, out_channels, momentum)
            self.add_module(f"conv_block{i + 2}", block)
            self.blocks.append(block)

    def film_layers(self) -> dict[str, int]:
        layers = {f"{self.path}->beta1": self.bn1.num_features}
        if self.official_layout:
            layers[f"{self.path}->beta2"] = self.bn1.num_features  # unused, as in the reference
        for block in self.blocks:
            layers.update(block.film_layers())
        return layers

    def used_film_layers(self) -> list[str]:
        names = [f"{self.path}->beta1"]
        for block in self.blocks:
            names += list(block.film_layers())
        return names

    def forward(self, x: torch.Tensor, skip: torch.Tensor, betas) -> torch.Tensor:
        x = self.conv1(_bn_film_act(self.bn1, x, betas[f"{self.path}->beta1"]))
        x = torch.cat((x, skip), dim=1)
        for block in self.blocks:
            x = block(x, betas)
        return x


class ResUNetBase(nn.Module):
    """The U-Net on the magnitude spectrogram (``base.*`` keys). See the module docstring."""

    def __init__(self, channels: Sequence[int], blocks_per_stage: int, pools: Sequence[Sequence[int]],
                 n_fft: int, hop: int, audio_channels: int, momentum: float, official_layout: bool):
        super().__init__()
        self.audio_channels = audio_channels
        self.stft = STFT(n_fft, hop)  # no state-dict entries (window is a non-persistent buffer)
        bins = n_fft // 2 + 1
        self.bn0 = nn.BatchNorm2d(bins, momentum=momentum)
        self.pre_conv = nn.Conv2d(audio_channels, channels[0], 1)
        stages = len(channels) - 1
        self.time_multiple = math.prod(p[0] for p in pools)
        self.encoders: list[EncoderBlock] = []
        for s in range(stages):
            block = EncoderBlock(f"encoder_block{s + 1}", channels[s], channels[s + 1], blocks_per_stage,
                                 pools[s], momentum)
            self.add_module(f"encoder_block{s + 1}", block)
            self.encoders.append(block)
        self.conv_block7a = EncoderBlock("conv_block7a", channels[-1], channels[-1], blocks_per_stage, (1, 1),
                                         momentum)
        self.decoders: list[DecoderBlock] = []
        for s in range(stages):
            # decoder s undoes encoder stage enc: its skip (and output) has that stage's channels, its input is the
            # centre (s = 0) or the previous decoder's output (= the next-deeper stage's channels)
            enc = stages - 1 - s
            cin = channels[-1] if s == 0 else channels[enc + 2]
            block = DecoderBlock(f"decoder_block{s + 1}", cin, channels[enc + 1], blocks_per_stage, pools[enc],
                                 momentum, official_layout)
            self.add_module(f"decoder_block{s + 1}", block)
            self.decoders.append(block)
        self.after_conv = nn.Conv2d(channels[1], 3 * audio_channels, 1)
        for conv in (self.pre_conv, self.after_conv):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def film_layers(self) -> dict[str, int]:
        """All FiLM layers in registration order (official order: encoders, centre, decoders)."""
        layers: dict[str, int] = {}
        for block in [*self.encoders, self.conv_block7a]:
            for res in block.children():
                layers.update(res.film_layers())
        for dec in self.decoders:
            layers.update(dec.film_layers())
        return layers

    def used_film_layers(self) -> list[str]:
        names = []
        for block in [*self.encoders, self.conv_block7a]:
            for res in block.children():
                names += list(res.film_layers())
        for dec in self.decoders:
            names += dec.used_film_layers()
        return names

    def normalize_input(self, mag: torch.Tensor) -> torch.Tensor:
        """bn0 over frequency bins, zero-pad frames to a multiple of the time pooling, drop the top bin.

        ``(batch, audio_channels, frames, bins)`` → ``(batch, audio_channels, padded_frames, bins - 1)``.
        """
        bn = self.bn0
        if bn.training or bn.running_var is None:
            x = bn(mag.transpose(1, 3)).transpose(1, 3)
        else:
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            x = torch.addcmul(bn.bias - bn.running_mean * scale, mag, scale)
        frames = mag.shape[2]
        pad = -frames % self.time_multiple
        return F.pad(x, (0, -1, 0, pad))  # negative pad crops the top bin

    def forward(self, mag: torch.Tensor, betas: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mask logits. ``mag`` (batch, audio_channels, frames, bins) →
        ``(batch, 3·audio_channels, padded_frames, bins - 1)`` (the reference's ``after_conv`` output)."""
        x = self.normalize_input(mag).to(self.pre_conv.weight.dtype)  # the body's dtype (fp32 unless low_precision)
        if self.training:
            x = self.pre_conv(x)
        else:
            # 1×1 pre-conv as a per-pixel linear map written straight into channels-last layout
            # (oneDNN convs are faster in it, and a 1-input-channel conv is slow anyway)
            w = self.pre_conv.weight.flatten(1)  # (out, in)
            x = x.permute(0, 2, 3, 1)  # (batch, frames, bins, in)
            x = (torch.addcmul(self.pre_conv.bias, x, w[:, 0]) if w.shape[1] == 1
                 else F.linear(x, w, self.pre_conv.bias))
            x = x.permute(0, 3, 1, 2)  # (batch, out, frames, bins), channels-last strides
        skips = []
        for enc in self.encoders:
            x, skip = enc(x, betas)
            skips.append(skip)
        x, _ = self.conv_block7a(x, betas)
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = dec(x, skip, betas)
        return self.after_conv(x).contiguous()


class ResUNet(Separator):
    """Query-conditioned ResUNet separator (generic; see :class:`ResUNet30`, :class:`ResUNet60`).

    ``model(mixture (batch, audio_channels, samples), condition (batch, condition_size))``
    → ``(batch, audio_channels, samples)``; any ``samples`` ≥ 1. Also accepts the reference's dict call
    ``model({"mixture": ..., "condition": ...})`` → ``{"waveform": ...}``.

    Args:
        condition_size: size of the query vector (527 for AudioSet tagging probabilities, 2048 for Cnn14 embeddings).
        channels: (pre-conv, encoder stage 1, ..., stage S) channel counts.
        blocks_per_stage: residual blocks per encoder / decoder / centre stage (1 → ResUNet30, 2 → ResUNet60).
        pools: (time, freq) average-pooling factor per stage; default (2, 2) then (1, 2) for the last stage.
        n_fft, hop: STFT size and hop (samples). ``n_fft / 2`` must be divisible by the total frequency pooling.
        sample_rate: the rate the model expects (informational; the caller resamples).
        audio_channels: channels of the mixture (and of the output).
        momentum: BatchNorm momentum (0.01 as the reference).
        official_layout: also register the reference's unused decoder ``bn2`` / ``->beta2`` layers.
    """

    registry_name = "resunet"

    def __init__(self, condition_size: int = 527, channels: Sequence[int] = PRESETS["paper"]["channels"],
                 blocks_per_stage: int = 1, pools: Sequence[Sequence[int]] | None = None, n_fft: int = 2048,
                 hop: int = 320, sample_rate: int = 32000, audio_channels: int = 1, momentum: float = 0.01,
                 official_layout: bool = False):
        super().__init__()
        channels = [int(c) for c in channels]
        stages = len(channels) - 1
        if stages < 1:
            raise ValueError("channels needs a pre-conv size and at least one encoder stage")
        if pools is None:
            pools = [(2, 2)] * (stages - 1) + [(1, 2)]
        pools = [tuple(int(v) for v in p) for p in pools]
        if len(pools) != stages:
            raise ValueError(f"{len(pools)} pools given for {stages} stages")
        freq_multiple = math.prod(p[1] for p in pools)
        if (n_fft // 2) % freq_multiple:
            raise ValueError(f"n_fft/2 = {n_fft // 2} bins are not divisible by the frequency pooling {freq_multiple}")
        self.set_config(dict(condition_size=int(condition_size), channels=channels,
                             blocks_per_stage=int(blocks_per_stage), pools=[list(p) for p in pools],
                             n_fft=int(n_fft), hop=int(hop), sample_rate=int(sample_rate),
                             audio_channels=int(audio_channels), momentum=float(momentum),
                             official_layout=bool(official_layout)))
        self.base = ResUNetBase(channels, int(blocks_per_stage), pools, int(n_fft), int(hop), int(audio_channels),
                                float(momentum), bool(official_layout))
        self.film = FiLM(self.condition_size, self.base.film_layers())
        self._used_film = self.base.used_film_layers()
        # conv weights in channels-last layout, like the activations: oneDNN would otherwise reorder every
        # weight on every call (the layout is kept by load_state_dict and .to(device))
        self.base.to(memory_format=torch.channels_last)

    @classmethod
    def from_preset(cls, preset: str = "paper", **overrides):
        """Build from a size preset (``paper``, ``small``, ``tiny``, see ``PRESETS``); for ResUNet30 only the
        ``paper`` preset uses the official layout."""
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        kwargs = dict(PRESETS[preset])
        if cls is ResUNet30:
            kwargs["official_layout"] = preset == "paper"
        kwargs.update(overrides)
        return cls(**kwargs)

    # -- pieces (also used by the parity tests) ----------------------------------------------------------------
    def spectrogram(self, mixture: torch.Tensor):
        """``(batch, channels, samples)`` → ``(|X|, cos∠X, sin∠X)`` each ``(batch, channels, frames, bins)``."""
        return magnitude_phase(self.base.stft(mixture))

    def mask_logits(self, mag: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """``(batch, channels, frames, bins)`` → ``(batch, 3·channels, padded_frames, bins - 1)``."""
        condition = condition.to(self.base.pre_conv.weight.dtype)
        return self.base(mag, self.film(condition, self._used_film)).float()

    def low_precision(self, dtype: torch.dtype) -> "ResUNet":
        """An inference copy whose U-Net body (convolutions, FiLM, activations) runs natively in ``dtype``
        (bfloat16, or float16 on a GPU); the STFT, ``bn0``, every BatchNorm's statistics and the mask arithmetic
        stay float32 (BN is folded in fp32 and only then rounded). Measured on a 2-core AMX CPU
        (``perf/separator_speed.py --modes``): about 2.5× fp32 at ~45 dB output SDR vs fp32, where autocast
        (which flips every activation between bf16 and fp32) gains only ~1.2×. The original is untouched."""
        import copy

        model = copy.deepcopy(self).eval()
        for module in [*model.base.modules(), *model.film.modules()]:
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                module.to(dtype)  # keeps the channels-last layout of the conv weights
        return model

    def apply_mask(self, logits: torch.Tensor, mag, cos, sin, length: int) -> torch.Tensor:
        """Complex-mask the mixture spectrogram and invert it to ``(batch, channels, length)``."""
        real, imag = self.mask_spectrum(logits, mag, cos, sin)
        return self.base.stft.inverse(torch.complex(real, imag), length)

    def mask_spectrum(self, logits: torch.Tensor, mag, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked spectrogram's real and imaginary parts ``(batch, channels, frames, bins)`` (top bin 0)."""
        batch, channels, frames, bins = mag.shape
        x = logits[:, :, :frames].reshape(batch, channels, 3, frames, bins - 1)
        mask_mag = torch.sigmoid(x[:, :, 0])
        mask_re, mask_im = torch.tanh(x[:, :, 1]), torch.tanh(x[:, :, 2])
        norm = (mask_re * mask_re + mask_im * mask_im).sqrt().clamp_min(1e-10)
        mask_cos, mask_sin = mask_re / norm, mask_im / norm
        cos, sin = cos[..., :-1], sin[..., :-1]
        out_mag = F.relu(mag[..., :-1] * mask_mag)
        real = out_mag * (cos * mask_cos - sin * mask_sin)
        imag = out_mag * (sin * mask_cos + cos * mask_sin)
        return F.pad(real, (0, 1)), F.pad(imag, (0, 1))  # top bin restored as 0

    def spectral(self, real: torch.Tensor, imag: torch.Tensor, condition: torch.Tensor):
        """The network between STFT and iSTFT in real arithmetic: the mixture spectrogram's parts
        ``(batch, channels, frames, bins)`` → the estimate's parts (what :mod:`ussnb.export` wraps)."""
        mag, cos, sin = magnitude_phase_parts(real, imag)
        return self.mask_spectrum(self.mask_logits(mag, condition), mag, cos, sin)

    def forward(self, mixture, condition: torch.Tensor | None = None):
        if isinstance(mixture, Mapping):  # reference call style
            return {"waveform": self.forward(mixture["mixture"], mixture["condition"])}
        check_call(mixture, condition, self.config["audio_channels"], self.condition_size)
        mag, cos, sin = self.spectrogram(mixture)
        logits = self.mask_logits(mag, condition)
        return self.apply_mask(logits, mag, cos, sin, mixture.shape[-1])


class ResUNet30(ResUNet):
    """ResUNet30: one residual block per stage. The ``paper`` preset (default) is the reference model and uses the
    official layout; other sizes via ``channels`` / ``n_fft`` / ``hop`` or :meth:`from_preset`."""

    registry_name = "resunet30"

    def __init__(self, condition_size: int = 527, channels: Sequence[int] = PRESETS["paper"]["channels"],
                 pools: Sequence[Sequence[int]] | None = None, n_fft: int = 2048, hop: int = 320,
                 sample_rate: int = 32000, audio_channels: int = 1, momentum: float = 0.01,
                 official_layout: bool = True):
        super().__init__(condition_size, channels, 1, pools, n_fft, hop, sample_rate, audio_channels, momentum,
                         official_layout)
        self.config.pop("blocks_per_stage")


class ResUNet60(ResUNet):
    """ResUNet60: two residual blocks per stage (the reference family's ``Res2B`` stages); the second
    encoder block of a stage is ``conv_block2``, decoder blocks are ``conv_block2``, ``conv_block3``.
    No official checkpoint exists, so the unused reference layers are off by default."""

    registry_name = "resunet60"

    def __init__(self, condition_size: int = 527, channels: Sequence[int] = PRESETS["paper"]["channels"],
                 pools: Sequence[Sequence[int]] | None = None, n_fft: int = 2048, hop: int = 320,
                 sample_rate: int = 32000, audio_channels: int = 1, momentum: float = 0.01,
                 official_layout: bool = False):
        super().__init__(condition_size, channels, 2, pools, n_fft, hop, sample_rate, audio_channels, momentum,
                         official_layout)
        self.config.pop("blocks_per_stage")


# -- official USS checkpoints ----------------------------------------------------------------------------------

def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_official_uss_checkpoint(path: str | os.PathLike, *, weights_only: bool = True):
    """Load a separator from an official bytedance/uss checkpoint.

    Accepts a Lightning checkpoint (``checkpoint["state_dict"]`` with ``ss_model.base.*`` / ``ss_model.film.*``
    separator keys, ``query_net.*`` tagger keys, possibly ``anchor_segment_detector.*``) or a bare separator
    state dict (``base.*`` / ``film.*``, e.g. the parity file). The condition size is read from
    ``film.encoder_block1->conv_block1->beta1.weight``; the frozen STFT kernels are ignored; any other missing,
    unexpected or mis-shaped separator key raises :class:`CheckpointError` naming it.
    ``weights_only=False`` allows arbitrary pickles — only for files you trust.

    Returns ``(model, query_net_state_dict | None)``: ``model`` is a :class:`ResUNet30` in eval mode;
    the query-net dict has the ``query_net.`` prefix stripped, and also ``base.`` when every key has it
    (so an at_soft / embedding checkpoint gives plain Cnn14 keys).
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint not found: {path}") from exc
    except Exception as exc:
        hint = " (if you trust the file, retry with weights_only=False)" if weights_only else ""
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}{hint}") from exc
    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: no state dict found (expected a Lightning checkpoint or a state dict)")
    if any(k.startswith("ss_model.") for k in state):
        separator = _strip(state, "ss_model.")
    elif any(k.startswith(("base.", "film.")) for k in state):
        separator = {k: v for k, v in state.items() if k.startswith(("base.", "film."))}
    else:
        raise CheckpointError(f"{path}: no separator weights (keys 'ss_model.*' or 'base.*'/'film.*'); "
                              f"first keys: {list(state)[:5]}")
    for key in FROZEN_STFT_KEYS:
        separator.pop(key, None)
    probe = "film.encoder_block1->conv_block1->beta1.weight"
    if probe not in separator or separator[probe].dim() != 2:
        raise CheckpointError(f"{path}: cannot infer the condition size, key {probe!r} missing or not 2-D")
    model = ResUNet30(condition_size=int(separator[probe].shape[1]))
    load_state_dict_checked(model, separator, what=f"separator weights in {path}")
    query = _strip(state, "query_net.")
    if query and all(k.startswith("base.") for k in query):
        query = _strip(query, "base.")
    return model.eval(), (query or None)
