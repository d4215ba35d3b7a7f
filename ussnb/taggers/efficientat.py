"""EfficientAT MobileNetV3 audio tagger (Schmid et al., "Efficient Large-Scale Audio Tagging via
Transformer-to-CNN Knowledge Distillation", 2023), written from the architecture description and the
checkpoint layout so that the published ``mn04_as_mAP_432.pt`` (AudioSet, mAP 0.432, MIT) loads strictly.

Network (``width_mult`` scales every width, rounded to multiples of 8):
    mel ``(batch, 1, 128, frames)`` → conv3×3 stride 2 + BN + hardswish → 15 inverted-residual blocks
    (MobileNetV3-Large layout: optional 1×1 expansion → depthwise k×k → squeeze-excitation on some blocks →
    1×1 projection, residual when the shape is kept) → 1×1 conv to 6× the last block width + BN + hardswish
    → global average pool (= ``features``, 384 wide for ``mn04``) → MLP head Linear → hardswish → dropout →
    Linear (= ``logits``, 527).
The squeeze-excitation is EfficientAT's "concurrent" variant restricted to the channel dimension
(``se_dims="c"``): mean over frequency and time → Linear → ReLU → Linear → sigmoid → channel scale; with one
dimension the max-aggregation over SE branches is the identity.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import check_state_dict
from ..features import EfficientATMel
from .base import TagOutput, Tagger, interpolate_frames, read_official_state_dict, resolve_weights
from ..errors import ConfigError

RELEASE_URL = "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/"
PRETRAINED = {"mn04_as": dict(width_mult=0.4, file="mn04_as_mAP_432.pt")}

# MobileNetV3-Large blocks: (kernel, expanded width, output width, squeeze-excitation, activation, stride)
# at width multiplier 1; "stride" = 0 marks the four strided positions that take the ``strides`` argument.
_BLOCKS = [
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 0),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 0),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hardswish", 0),
    (3, 200, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 184, 80, False, "hardswish", 1),
    (3, 480, 112, True, "hardswish", 1),
    (3, 672, 112, True, "hardswish", 1),
    (5, 672, 160, True, "hardswish", 0),
    (5, 960, 160, True, "hardswish", 1),
    (5, 960, 160, True, "hardswish", 1),
]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10%
    below ``value`` — the MobileNet channel rounding."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _act(name: str | None) -> nn.Module:
    return {"relu": nn.ReLU(), "hardswish": nn.Hardswish(), None: nn.Identity()}[name]


class ConvBNAct(nn.Sequential):
    """Conv (no bias, 'same' padding) → BatchNorm (eps 1e-3) → activation; keys ``0.weight``, ``1.*``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = None) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=0.001, momentum=0.01),
        ]
        if act is not None:
            layers.append(_act(act))
        super().__init__(*layers)


class ChannelSE(nn.Module):
    """Channel squeeze-excitation: ``x · sigmoid(fc2(relu(fc1(mean_{f,t} x))))``."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, squeeze)
        self.fc2 = nn.Linear(squeeze, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels, freq, time)
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s[:, :, None, None]


class ConcurrentSE(nn.Module):
    """EfficientAT's concurrent SE: several SE branches (here only the channel one), outputs combined by an
    element-wise max."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.conc_se_layers = nn.ModuleList([ChannelSE(channels, squeeze)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [layer(x) for layer in self.conc_se_layers]
        return outs[0] if len(outs) == 1 else torch.stack(outs).max(dim=0).values


class InvertedResidual(nn.Module):
    """MobileNetV3 block, ``block`` = [expand 1×1] → depthwise k×k → [SE] → project 1×1 (linear)."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, act: str, stride: int,
                 se_ratio: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, act=act))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act))
        if se:
            layers.append(ConcurrentSE(expanded, make_divisible(expanded // se_ratio, 8)))
        layers.append(ConvBNAct(expanded, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class MobileNetAT(Tagger):
    """EfficientAT MobileNetV3 (``mn``) audio tagger.

    :meth:`forward` keeps the reference convention: mel ``(batch, 1, n_mels, frames)`` (from :attr:`mel`,
    an :class:`~ussnb.features.EfficientATMel`) → ``(logits (batch, classes), features (batch, C))``.
    :meth:`tag` takes a 32 kHz waveform.

    Args:
        width_mult: width multiplier (0.4 for ``mn04``); classes, strides, se_ratio, last_channel, dropout:
            as in EfficientAT (``strides`` are the 4 strided block positions).
        frame_method, window_seconds, window_hop_seconds: how :meth:`tag` makes frame probabilities (below).
        window_batch: at most this many windows (over the whole batch) per forward pass.

    Frame probabilities (``frame_method``):
        * ``"window"`` (default): the network is run on sliding windows of the clip's mel spectrogram
          (``window_seconds`` long, every ``window_hop_seconds``; windows are cut from one mel computation and
          run as one batch) and the window probabilities, placed at the window centres, are linearly
          interpolated to 100 frames/s. Each window is a short clip, which is exactly the question the model
          was trained to answer ("is the class in this clip?"), so the frame values are calibrated
          probabilities; the price is ~``1/window_hop`` times the compute of one pass and a time resolution
          of about one window.
        * ``"activation"``: class activation over time — the MLP head applied to every time column of the
          last feature map (averaged over frequency), 32× upsampled. One pass, finer steps, but the head
          only ever saw clip averages, so the values are less calibrated and clip-wide context leaks in
          through the receptive field.
        Measured here on six ESC-50 events (2 s, placed at 6-8 s in 10 s of low noise): both localise
        (mean probability inside / before the event 18-2900× with ``"window"``, 60-4000× with
        ``"activation"``); the half-maximum span stayed inside the event with ``"window"`` but spilled up to
        0.3 s with ``"activation"``. Cost vs anchor-mining precision on the composed ``esc50`` test split
        (96 clips, 2 cores, ``python perf/mn04_frames.py --clips 96``, side by side in one run): window hop
        0.1 s 0.183 s/clip, SED precision @2 s 0.912; **hop 0.25 s (default) 0.087 s/clip, 0.907**; hop 0.5 s
        0.050 s/clip, 0.881; ``"activation"`` 0.024 s/clip, 0.798; random anchors 0.562; the clip pass alone
        (``tag(..., frames=False)``) 0.016 s/clip. The 0.25 s hop keeps the precision of 0.1 s at half the
        cost; ``"window"`` stays the default for its calibrated, well-bounded frame values.
    """

    def __init__(self, width_mult: float = 0.4, classes: int = 527, strides: Sequence[int] = (2, 2, 2, 2),
                 se_ratio: int = 4, last_channel: int = 1280, dropout: float = 0.2,
                 frame_method: str = "window", window_seconds: float = 1.0, window_hop_seconds: float = 0.25,
                 window_batch: int = 128) -> None:
        super().__init__()
        if frame_method not in ("window", "activation"):
            raise ConfigError(f"frame_method must be 'window' or 'activation', got {frame_method!r}")
        self.config = dict(width_mult=width_mult, classes=classes, strides=list(strides), se_ratio=se_ratio,
                           last_channel=last_channel, dropout=dropout)
        self.sample_rate, self.classes = 32000, int(classes)
        self.frame_method = frame_method
        self.window_seconds, self.window_hop_seconds, self.window_batch = window_seconds, window_hop_seconds, window_batch
        self.mel = EfficientATMel()  # no state-dict entries (non-persistent buffers)

        width = lambda c: make_divisible(c * width_mult, 8)  # noqa: E731
        cin = width(16)
        layers: list[nn.Module] = [ConvBNAct(1, cin, 3, stride=2, act="hardswish")]
        stride_iter = iter(strides)
        for kernel, expanded, cout, se, act, stride in _BLOCKS:
            stride = next(stride_iter) if stride == 0 else stride
            layers.append(InvertedResidual(cin, kernel, width(expanded), width(cout), se, act, stride, se_ratio))
            cin = width(cout)
        last_conv = 6 * cin
        layers.append(ConvBNAct(cin, last_conv, 1, act="hardswish"))
        self.features = nn.Sequential(*layers)
        hidden = make_divisible(last_channel * width_mult, 8)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(last_conv, hidden), nn.Hardswish(), nn.Dropout(dropout),
            nn.Linear(hidden, classes),
        )
        self.embedding_size = last_conv
        self.time_ratio = 2 * 2 ** sum(1 for s in strides if s == 2)  # stem stride 2 + strided blocks
        self.min_samples = 2 * self.time_ratio * 320
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mel ``(batch, 1, n_mels, frames)`` → ``(logits (batch, classes), features (batch, C))``."""
        x = self.features(mel)
        return self.classifier(x), x.mean(dim=(2, 3))

    # -- frame-level outputs
    def _window_frames(self, mel: torch.Tensor, frames: int) -> torch.Tensor:
        """Sliding-window probabilities interpolated to ``(batch, frames, classes)``."""
        length = max(1, round(self.window_seconds * self.frame_rate))
        hop = max(1, round(self.window_hop_seconds * self.frame_rate))
        total = mel.shape[-1]
        if total <= length:
            starts = [0]
            length = total
        else:
            starts = list(range(0, total - length + 1, hop))
            if starts[-1] != total - length:
                starts.append(total - length)
        batch = mel.shape[0]
        per_chunk = max(1, self.window_batch // batch)  # windows are cut chunk by chunk: bounded memory
        probs = []
        for i in range(0, len(starts), per_chunk):
            chunk = torch.stack([mel[..., s:s + length] for s in starts[i:i + per_chunk]], dim=1)
            logits, _ = self(chunk.flatten(0, 1))  # (batch · windows, classes)
            probs.append(torch.sigmoid(logits).view(batch, chunk.shape[1], -1))
        probs = torch.cat(probs, dim=1)  # (batch, windows, classes)
        centres = torch.tensor([s + (length - 1) / 2 for s in starts], dtype=torch.float32, device=mel.device)
        return interpolate_frames(probs, centres, frames)

    def _activation_frames(self, feature_map: torch.Tensor, frames: int) -> torch.Tensor:
        """Head applied per time column of ``(batch, C, freq, steps)`` → ``(batch, frames, classes)``."""
        cols = feature_map.mean(dim=2).transpose(1, 2)  # (batch, steps, C)
        head = self.classifier[2:]  # Linear → hardswish → dropout → Linear
        probs = torch.sigmoid(head(cols))
        centres = (torch.arange(probs.shape[1], dtype=torch.float32, device=cols.device) + 0.5) * self.time_ratio - 0.5
        return interpolate_frames(probs, centres, frames)

    def _tag(self, wave: torch.Tensor, frames: bool = True) -> TagOutput:
        mel = self.mel(wave)
        n_frames = self.num_frames(wave.shape[-1])
        feature_map = self.features(mel)
        logits = self.classifier(feature_map)
        emb = feature_map.mean(dim=(2, 3))
        if not frames:
            frame_probs = logits.new_zeros((logits.shape[0], 0, logits.shape[1]))
        elif self.frame_method == "window":
            frame_probs = self._window_frames(mel, n_frames)
        else:
            frame_probs = self._activation_frames(feature_map, n_frames)
        return TagOutput(clip=torch.sigmoid(logits), frames=frame_probs, embedding=emb)


def load_efficientat(name: str = "mn04_as", path: str | os.PathLike | None = None, *, download: bool = True,
                     **model_kw: Any) -> MobileNetAT:
    """Build EfficientAT model ``name`` (only ``"mn04_as"`` is defined) and load its weights strictly from
    ``path``, else ``mn04_as_mAP_432.pt`` in ``USSNB_WEIGHTS_DIR``, else the official GitHub release (when
    ``download`` and online). Mismatches raise :class:`~ussnb.errors.CheckpointError`; a missing file raises
    :class:`~ussnb.taggers.base.WeightsNotFoundError`. Returns the model in eval mode."""
    if name not in PRETRAINED:
        raise ConfigError(f"unknown EfficientAT model {name!r}; available: {sorted(PRETRAINED)}")
    spec = PRETRAINED[name]
    model = MobileNetAT(width_mult=spec["width_mult"], **model_kw)
    file = resolve_weights(spec["file"], RELEASE_URL + spec["file"], path, download=download)
    state = read_official_state_dict(file)
    check_state_dict(model, state, what=str(file))
    model.load_state_dict(state, strict=True)
    return model.eval()
