"""HTS-AT (Chen et al., "HTS-AT: A Hierarchical Token-Semantic Audio Transformer for Sound Classification and
Detection", ICASSP 2022): a Swin Transformer over a log-mel "image" with a token-semantic head, written from the
paper and the checkpoint layout so that the released AudioSet checkpoints (``HTSAT_AudioSet_Saved_1.ckpt`` …
``_6.ckpt``, embed 96) and the zero-shot separation repo's embed-256 model load strictly, with the official key
names.

Network (defaults = the released model; every shape below is for ``spec_size`` 256, patch 4, 4 stages):
    waveform (batch, N) at 32 kHz → log-mel (batch, 1, T, 64) (T = N // 320 + 1; 1001 for 10 s) → ``bn0``
    (BatchNorm over the mel bins) → the fixed-size "image": the T frames are stretched to 1024 by bicubic
    interpolation (``align_corners=True``), cut into 4 slices of 256 frames, and the slices are stacked along
    frequency → (batch, 1, 256, 256) → ``patch_embed`` (4×4 conv, stride 4, LayerNorm) → 64×64 tokens →
    4 stages of Swin blocks (window 8, the odd blocks with windows shifted by 4 and the -100 attention mask,
    relative-position bias per head; PatchMerging between stages: 2×2 neighbours concatenated → LayerNorm →
    Linear 4C→2C) → 8×8 tokens of 8·embed_dim → LayerNorm → the token-semantic head: the 8×8 grid is regrouped
    into (2 frequency rows, 32 time steps) (the 4 slices side by side again) → ``latent_output`` = mean over
    all 64 tokens (8·embed_dim wide) and ``tscam_conv`` (kernel 2×3 over frequency × time) → class logits per
    time step (batch, classes, 32) → ``clipwise_output`` = sigmoid of their mean over time,
    ``framewise_output`` = sigmoid per step, each step repeated 32× → (batch, 1024, classes). ``head`` exists
    in the checkpoints (Linear classes→classes) but the token-semantic forward pass never uses it.

Front end. The checkpoints store torchlibrosa's STFT conv kernels and mel matrix
(``spectrogram_extractor.stft.conv_real/conv_imag.weight``, ``logmel_extractor.melW``). As for PANNs
(:mod:`ussnb.taggers.panns`), the spectrogram is computed with ``torch.stft`` (periodic Hann 1024, hop 320,
centre, reflect), the mel projection uses the ``logmel_extractor.melW`` buffer (librosa's Slaney mel, 64 bands,
50-14 000 Hz), then ``10·log10(max(·, 1e-10))`` without ``top_db``; the STFT kernels are kept as buffers under
their official names only so checkpoints load strictly, and :meth:`HTSAT.check_frontend` verifies them.

Input lengths (``forward``, the reference's call convention):
    * up to 1024 frames (10.23 s): as the reference — stretched to 1024 frames. ``infer_mode=True`` is the
      reference's inference mode for short clips: the log-mel is first tiled ``1024 // T`` times along time
      (the reference's ``predict.py`` and the zero-shot repo call the model this way).
    * longer, in training: one random 1024-frame crop per clip (the reference's training path).
    * longer, in eval: the reference's evaluation path — crops of ``(T-1)//2`` frames every ``(T-1)//4``
      frames, each stretched to 1024, outputs averaged over the crops (the reference returns no
      ``latent_output`` there; here it is the crops' mean too). A crop must fit the image, so this works up
      to 2049 frames (20.48 s); longer inputs raise ``ValueError`` — use :meth:`tag`.

:meth:`HTSAT.tag` (the kit's interface, any length; frames at 100 frames/s, frame n centred at n·10 ms):
    * exactly 10 s: one pass; the 1024 model frames are resampled onto the 1001-frame grid by linear
      interpolation, model frame j sitting at log-mel frame ``j·(T-1)/1023`` (where the bicubic stretch put it).
    * shorter: the reference inference mode (``infer_mode=True``): the log-mel is tiled r = 1024 // T times and
      stretched; clip and embedding come from that pass; each of the T frames is the mean over the r copies
      of the model frames at that copy's position (interpolated as above). From 5.12 s up, r = 1 (stretch only).
    * longer: 10 s chunks, as the zero-shot repo processes long recordings: chunks start every 10 s, and the
      last chunk is aligned to the end of the input (on the 320-sample frame grid), so it overlaps the one
      before and every chunk is a full 10 s clip like the training data. Frames where chunks overlap are
      averaged; ``clip`` and ``embedding`` are the mean over the chunks. Chunks run in batches of
      ``max_batch``.

Training (``htsat-small``, :data:`SMALL`): ``forward`` in train mode returns the same dict; train on weak
labels with ``F.binary_cross_entropy(out["clipwise_output"], y)``; ``head`` gets no gradient (unused, as in the
reference). Stochastic depth (``drop_path_rate``) is active in training; the reference's SpecAugment and mixup
are not part of this module. ``bn0`` normalises raw dB values (about -100 … +20), so its running statistics,
starting at mean 0 / variance 1 with momentum 0.1, need some tens of steps before eval-mode outputs follow
the training fit: a model evaluated after only a handful of steps looks worse than its training loss.
"""
from __future__ import annotations

import os
import random
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import check_state_dict, load_state_dict_checked, read_checkpoint, save_checkpoint
from ..errors import CheckpointError, ConfigError, WeightsNotFoundError
from ..features import PannsLogMel
from .base import TagOutput, Tagger, interpolate_frames, read_official_state_dict, resolve_weights
from .panns import _SpectrogramKernels, stft_kernels

OFFICIAL_FILE = "HTSAT_AudioSet_Saved_1.ckpt"
CHECKPOINT_FOLDER = "https://drive.google.com/drive/folders/1f5VYMk0uos_YnuBshgmaTVioXbs7Kmz6"
LIGHTNING_PREFIX = "sed_model."  # the HTS-AT Lightning wrapper's attribute name
KIND = "htsat"  # kind of the kit's own HTS-AT checkpoints (save_htsat / load_htsat_checkpoint)
FROZEN_FRONTEND_KEYS = (
    "spectrogram_extractor.stft.conv_real.weight",
    "spectrogram_extractor.stft.conv_imag.weight",
    "logmel_extractor.melW",
)
# ``htsat-small``: trains on 2 CPU cores from weak labels. Every stage keeps one plain and one shifted-window
# block; heads of 24 channels. 1.3 M parameters for 20 classes (2.2 M for 527); measured here on 2 cores, a
# training step (forward + backward + AdamW) on 16 × 10 s takes about 1 s, eval about 0.3-0.5 s.
SMALL = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))


# ---------------------------------------------------------------- Swin building blocks


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) → (B · H/size · W/size, size², C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size * size, c)


def _unwindows(windows: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_windows`: (B · nW, size², C) → (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // size, w // size, size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


class DropPath(nn.Module):
    """Stochastic depth: in training, drop the residual branch per sample with probability ``p``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """``fc1`` → GELU → dropout → ``fc2`` → dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside square windows of ``window`` × ``window`` tokens, with a learned
    bias per head for every relative offset (``relative_position_bias_table``, (2w-1)² × heads, looked up
    through the ``relative_position_index`` buffer) and an optional additive mask per window."""

    def __init__(self, dim: int, window: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"width {dim} is not divisible by {heads} heads")
        self.dim, self.window, self.heads = dim, window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        # offset (dy, dx) of token j seen from token i, both in [-(w-1), w-1], flattened row-major
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        dy = ys[:, None] - ys[None, :] + (window - 1)
        dx = xs[:, None] - xs[None, :] + (window - 1)
        self.register_buffer("relative_position_index", dy * (2 * window - 1) + dx)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (windows, tokens, dim); ``mask`` (windows per image, tokens, tokens) or None."""
        n_win, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(n_win, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (windows, heads, tokens, head_dim)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            per_image = mask.shape[0]
            attn = attn.view(n_win // per_image, per_image, self.heads, tokens, tokens) + mask[None, :, None]
            attn = attn.view(n_win, self.heads, tokens, tokens)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(n_win, tokens, dim)
        return self.proj_drop(self.proj(x))


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """Attention mask of shifted-window attention, (windows, window², window²): after the cyclic shift by
    ``shift``, tokens that came from different regions of the image (the 3 × 3 bands cut at ``-window`` and
    ``-shift``) must not attend to each other: 0 where allowed, -100 where not."""
    region = torch.zeros(1, h, w, 1)
    cuts_h = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    cuts_w = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for sh in cuts_h:
        for sw in cuts_w:
            region[:, sh, sw, :] = label
            label += 1
    ids = _windows(region, window).squeeze(-1)  # (windows, window²)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return torch.where(diff != 0, torch.full_like(diff, -100.0), torch.zeros_like(diff))


class SwinBlock(nn.Module):
    """Pre-norm Swin block: ``x + attn(norm1(x))`` over (shifted) windows, then ``x + mlp(norm2(x))``.

    ``shift`` > 0 rolls the token grid by ``-shift`` before the window partition (and back after), with
    the ``attn_mask`` buffer keeping the wrapped regions apart. When the grid is not larger than the window,
    there is a single window and no shift (as in Swin)."""

    def __init__(self, dim: int, resolution: tuple[int, int], heads: int, window: int, shift: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:
            window, shift = min(resolution), 0
        if not 0 <= shift < window:
            raise ConfigError(f"shift {shift} must lie in [0, window {window})")
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        mask = shifted_window_mask(*resolution, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask)  # None: not in the state dict, as in the checkpoints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, length, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(_windows(y, self.window), mask=self.attn_mask)
        y = _unwindows(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Halve the token grid: each 2×2 neighbourhood (order: (0,0), (1,0), (0,1), (1,1)) is concatenated to
    4C, normalised and projected to 2C (``reduction``, no bias)."""

    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class SwinStage(nn.Module):
    """``depth`` Swin blocks (every second one shifted by half a window), then optional patch merging."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, heads: int, window: int,
                 mlp_ratio: float, qkv_bias: bool, drop: float, attn_drop: float, drop_path: Sequence[float],
                 downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, qkv_bias,
                      drop, attn_drop, drop_path[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    """Non-overlapping patches (conv ``patch`` × ``patch``, stride ``stride``) → tokens (B, H'·W', C) → LayerNorm."""

    def __init__(self, image: int, patch: int, stride: tuple[int, int], in_chans: int, dim: int) -> None:
        super().__init__()
        self.grid = (image // stride[0], image // stride[1])
        padding = ((patch - stride[0]) // 2, (patch - stride[1]) // 2)
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


# ---------------------------------------------------------------- the model


class HTSAT(Tagger):
    """HTS-AT audio tagger and sound event detector (see the module docstring for the network, the input
    lengths and the frame resampling).

    Args:
        embed_dim: width of the first stage (96: released AudioSet model; 256: the zero-shot repo's; 32: the
            parity vectors'); the last stage and ``latent_output`` are ``8 · embed_dim`` wide.
        depths, num_heads: Swin blocks and attention heads per stage.
        window_size, spec_size, patch_size, patch_stride: Swin window, image side, patch conv.
        classes: output classes.
        sample_rate, n_fft, hop, n_mels, fmin, fmax: the log-mel front end (hop must be sample_rate / 100).
        mlp_ratio, drop_rate, attn_drop_rate, drop_path_rate: as in Swin (dropouts act in training only).
        max_batch: :meth:`tag` runs at most this many 10 s images per forward pass.
        labels: optional class names, stored with the configuration.

    ``forward(wave (B, N), infer_mode=False)`` → ``{"clipwise_output": (B, classes), "framewise_output":
    (B, 1024, classes), "latent_output": (B, 8·embed_dim)}`` (probabilities, already sigmoided).
    """

    def __init__(self, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (4, 8, 16, 32), window_size: int = 8, spec_size: int = 256,
                 patch_size: int = 4, patch_stride: Sequence[int] = (4, 4), classes: int = 527,
                 sample_rate: int = 32000, n_fft: int = 1024, hop: int = 320, n_mels: int = 64,
                 fmin: float = 50.0, fmax: float = 14000.0, mlp_ratio: float = 4.0, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1, max_batch: int = 8,
                 labels: Sequence[str] | None = None) -> None:
        super().__init__()
        depths, num_heads, patch_stride = [int(d) for d in depths], [int(h) for h in num_heads], [int(s) for s in patch_stride]
        if len(depths) != len(num_heads):
            raise ConfigError("depths and num_heads must have the same length")
        if hop * self.frame_rate != sample_rate:
            raise ConfigError("HTS-AT needs hop = sample_rate / 100 (100 frames/s)")
        if spec_size % n_mels or spec_size // n_mels < 1:
            raise ConfigError(f"spec_size {spec_size} must be a multiple of n_mels {n_mels}")
        if labels is not None and len(labels) != classes:
            raise ConfigError(f"{len(labels)} labels for {classes} classes")
        self.config = dict(embed_dim=int(embed_dim), depths=depths, num_heads=num_heads,
                           window_size=int(window_size), spec_size=int(spec_size), patch_size=int(patch_size),
                           patch_stride=patch_stride, classes=int(classes), sample_rate=int(sample_rate),
                           n_fft=int(n_fft), hop=int(hop), n_mels=int(n_mels), fmin=float(fmin),
                           fmax=float(fmax), mlp_ratio=float(mlp_ratio), drop_rate=float(drop_rate),
                           attn_drop_rate=float(attn_drop_rate), drop_path_rate=float(drop_path_rate),
                           max_batch=int(max_batch), labels=list(labels) if labels is not None else None)
        self.labels = self.config["labels"]
        self.sample_rate, self.classes = int(sample_rate), int(classes)
        self.spec_size, self.freq_ratio = int(spec_size), int(spec_size) // int(n_mels)
        self.image_frames = self.spec_size * self.freq_ratio  # 1024: time frames of one image
        self.clip_samples = 10 * self.sample_rate  # the training clips' length, the chunk of tag()
        self.patch_stride = patch_stride
        self.max_batch = int(max_batch)
        self.min_samples = int(n_fft)  # the reflect-padded STFT needs more than n_fft // 2 samples

        self.spectrogram_extractor = _SpectrogramKernels(n_fft)
        self.logmel_extractor = PannsLogMel(sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels,
                                            fmin=fmin, fmax=fmax, persistent_mel=True)
        self.bn0 = nn.BatchNorm2d(n_mels)
        self.patch_embed = PatchEmbed(self.spec_size, patch_size, tuple(patch_stride), 1, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        grid = self.patch_embed.grid
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            self.layers.append(SwinStage(
                embed_dim * 2 ** i, (grid[0] // 2 ** i, grid[1] // 2 ** i), depth, heads, window_size,
                mlp_ratio, True, drop_rate, attn_drop_rate, rates[sum(depths[:i]):sum(depths[:i + 1])],
                downsample=i < len(depths) - 1,
            ))
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.final_grid = (grid[0] // 2 ** (len(depths) - 1), grid[1] // 2 ** (len(depths) - 1))
        if self.final_grid[0] % self.freq_ratio:
            raise ConfigError(f"final token rows {self.final_grid[0]} not divisible by {self.freq_ratio} slices")
        freq_rows = self.final_grid[0] // self.freq_ratio  # token rows per image slice (2)
        self.time_steps = self.freq_ratio * self.final_grid[1]  # 32 token columns over the 1024 frames
        self.tscam_conv = nn.Conv2d(self.num_features, classes, kernel_size=(freq_rows, 3), padding=(0, 1))
        self.head = nn.Linear(classes, classes)  # in the checkpoints; unused by the token-semantic head
        self.embedding_size = self.num_features
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # -- pieces
    def logmel(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(batch, 1, frames, n_mels)`` in dB, before ``bn0`` (the reference's ``logmel``)."""
        return self.logmel_extractor(wave)

    def _normed_logmel(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.logmel(wave)
        return self.bn0(x.transpose(1, 3)).transpose(1, 3)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, 1, T ≤ 1024, F ≤ 64)`` → image ``(B, 1, 256, 256)``: stretched (bicubic,
        align_corners) to 1024 × 64, then the 4 time slices of 256 frames stacked along frequency."""
        b, c, t, f = x.shape
        target_f = self.spec_size // self.freq_ratio
        if t > self.image_frames or f > target_f:
            raise ValueError(f"log-mel of {t} × {f} does not fit the {self.image_frames} × {target_f} image")
        if t < self.image_frames:
            x = F.interpolate(x, (self.image_frames, f), mode="bicubic", align_corners=True)
        if f < target_f:
            x = F.interpolate(x, (x.shape[2], target_f), mode="bicubic", align_corners=True)
        x = x.permute(0, 1, 3, 2)  # (B, C, F, T)
        x = x.reshape(b, c, target_f, self.freq_ratio, self.spec_size).permute(0, 1, 3, 2, 4)
        return x.reshape(b, c, self.freq_ratio * target_f, self.spec_size)

    def forward_image(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Swin stages and token-semantic head on an image ``(B, 1, 256, 256)``."""
        x = self.pos_drop(self.patch_embed(image))
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)  # (B, rows · cols, C)
        b, _, c = x.shape
        rows, cols = self.final_grid
        x = x.transpose(1, 2).reshape(b, c, rows, cols)
        # rows = (slice, row within slice): put the slices side by side along time again
        x = x.reshape(b, c, self.freq_ratio, rows // self.freq_ratio, cols).permute(0, 1, 3, 2, 4)
        x = x.reshape(b, c, rows // self.freq_ratio, self.freq_ratio * cols)
        latent = x.flatten(2).mean(dim=2)
        logits = self.tscam_conv(x).flatten(2)  # (B, classes, steps)
        steps = torch.sigmoid(logits).transpose(1, 2)  # (B, steps, classes)
        framewise = steps.repeat_interleave(self.image_frames // steps.shape[1], dim=1)
        return {"framewise_output": framewise, "clipwise_output": torch.sigmoid(logits.mean(dim=2)),
                "latent_output": latent}

    # -- reference call convention
    def forward(self, wave: torch.Tensor, infer_mode: bool = False) -> dict[str, torch.Tensor]:
        """``wave`` ``(batch, samples)`` → ``{"clipwise_output", "framewise_output" (batch, 1024, classes),
        "latent_output"}``; lengths as described in the module docstring."""
        x = self._normed_logmel(wave)
        frames = x.shape[2]
        if frames <= self.image_frames:
            if infer_mode:
                x = x.repeat(1, 1, self.image_frames // frames, 1)
            return self.forward_image(self.to_image(x))
        if self.training:  # one random full-image crop per clip
            starts = [random.randint(0, frames - self.image_frames - 1) for _ in range(x.shape[0])]
            x = torch.stack([x[i, :, s:s + self.image_frames] for i, s in enumerate(starts)])
            return self.forward_image(self.to_image(x))
        crop, hop = (frames - 1) // 2, (frames - 1) // 4
        if crop > self.image_frames:
            raise ValueError(f"HTSAT.forward: {frames} frames are too long for the reference's evaluation crops "
                             f"(at most {2 * self.image_frames + 1}); use tag(), which runs 10 s chunks")
        outs = [self.forward_image(self.to_image(x[:, :, s:s + crop])) for s in range(0, frames - crop - 1, hop)]
        return {k: torch.stack([o[k] for o in outs]).mean(dim=0) for k in outs[0]}

    # -- kit interface
    def _model_frame_positions(self, frames: int, device: torch.device) -> torch.Tensor:
        """Log-mel frame position of each of the 1024 model frames when ``frames`` frames were stretched."""
        j = torch.arange(self.image_frames, dtype=torch.float32, device=device)
        return j * ((frames - 1) / (self.image_frames - 1))

    def _run(self, waves: torch.Tensor, infer_mode: bool) -> dict[str, torch.Tensor]:
        outs = [self(waves[i:i + self.max_batch], infer_mode=infer_mode)
                for i in range(0, waves.shape[0], self.max_batch)]
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}

    def _tag(self, wave: torch.Tensor, frames: bool = True) -> TagOutput:
        batch, samples = wave.shape
        n_frames = self.num_frames(samples)
        hop = int(self.frame_hop)
        if samples <= self.clip_samples:
            out = self._run(wave, infer_mode=True)
            copies = self.image_frames // n_frames
            total = copies * n_frames
            tiled = interpolate_frames(out["framewise_output"], self._model_frame_positions(total, wave.device),
                                       total)
            frame_probs = tiled.view(batch, copies, n_frames, -1).mean(dim=1)
            return TagOutput(clip=out["clipwise_output"], frames=frame_probs, embedding=out["latent_output"])
        # 10 s chunks every 10 s, the last one ending on the input's last frame
        chunk_frames = self.num_frames(self.clip_samples)
        last = n_frames - chunk_frames  # first frame of the last chunk
        starts = list(range(0, last, chunk_frames - 1)) + [last]
        chunks = torch.stack([wave[:, s * hop:s * hop + self.clip_samples] for s in starts], dim=1)
        out = self._run(chunks.flatten(0, 1), infer_mode=False)
        k = len(starts)
        positions = self._model_frame_positions(chunk_frames, wave.device)
        local = interpolate_frames(out["framewise_output"], positions, chunk_frames).view(batch, k, chunk_frames, -1)
        total = local.new_zeros(batch, n_frames, local.shape[-1])
        count = local.new_zeros(1, n_frames, 1)
        for i, s in enumerate(starts):
            total[:, s:s + chunk_frames] += local[:, i]
            count[:, s:s + chunk_frames] += 1
        return TagOutput(clip=out["clipwise_output"].view(batch, k, -1).mean(dim=1), frames=total / count,
                         embedding=out["latent_output"].view(batch, k, -1).mean(dim=1))

    # -- checkpoint consistency
    def check_frontend(self, rtol: float = 1e-3) -> None:
        """Raise :class:`CheckpointError` if the stored STFT kernels / mel matrix differ from those implied by
        the settings by more than ``rtol`` × their largest magnitude (the spectrogram is computed with
        ``torch.stft``, so the stored kernels must describe the same transform)."""
        cfg = self.config
        real, imag = stft_kernels(cfg["n_fft"])
        mel = PannsLogMel(sample_rate=cfg["sample_rate"], n_fft=cfg["n_fft"], hop=cfg["hop"], n_mels=cfg["n_mels"],
                          fmin=cfg["fmin"], fmax=cfg["fmax"]).melW
        stored = dict(zip(FROZEN_FRONTEND_KEYS, (self.spectrogram_extractor.stft.conv_real.weight,
                                                 self.spectrogram_extractor.stft.conv_imag.weight,
                                                 self.logmel_extractor.melW)))
        for (key, have), want in zip(stored.items(), (real, imag, mel)):
            err = (have.detach().float().cpu() - want).abs().max().item()
            if not err <= rtol * want.abs().max().item():
                raise CheckpointError(
                    f"HTSAT: stored front-end tensor {key} differs from the one implied by the settings "
                    f"(max abs difference {err:.3g}); wrong sample rate / window / mel settings for this checkpoint?"
                )


# ---------------------------------------------------------------- loading and saving


def official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state dict of an HTS-AT checkpoint: a Lightning ``.ckpt`` (``{"state_dict": {"sed_model.…"}}``,
    the prefix is removed), ``{"model": …}`` or a bare state dict."""
    state = read_official_state_dict(path)
    if state and all(k.startswith(LIGHTNING_PREFIX) for k in state):
        state = {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items()}
    return state


def load_htsat(path: str | os.PathLike | None = None, *, filename: str = OFFICIAL_FILE, embed_dim: int = 96,
               **model_kw: Any) -> HTSAT:
    """HTS-AT with pretrained weights, loaded strictly, in eval mode.

    Weights come from ``path``, else ``filename`` (default the released AudioSet checkpoint
    ``HTSAT_AudioSet_Saved_1.ckpt``) in ``USSNB_WEIGHTS_DIR``. The checkpoints are on Google Drive, which
    gives no stable direct link, so nothing is downloaded: a missing file raises
    :class:`~ussnb.errors.WeightsNotFoundError` saying where to get it and where to put it. ``embed_dim=256``
    with ``path=`` loads the zero-shot repo's ``htsat_audioset_2048d.ckpt``. Key or shape mismatches raise
    :class:`~ussnb.errors.CheckpointError` naming the keys.
    """
    try:
        file = resolve_weights(filename, None, path, download=False)
    except WeightsNotFoundError as exc:
        raise WeightsNotFoundError(
            f"{exc}. The released HTS-AT checkpoints (HTSAT_AudioSet_Saved_1.ckpt … _6.ckpt, linked from "
            f"github.com/RetroCirce/HTS-Audio-Transformer) are in the Google Drive folder {CHECKPOINT_FOLDER}"
        ) from exc
    model = HTSAT(embed_dim=embed_dim, **model_kw)
    state = official_state_dict(file)
    check_state_dict(model, state, what=str(file))
    model.load_state_dict(state, strict=True)
    model.check_frontend()
    return model.eval()


def save_htsat(model: HTSAT, path: str | os.PathLike, **extra: Any):
    """Save ``model`` (e.g. a trained ``htsat-small``) with its configuration (kind ``"htsat"``)."""
    return save_checkpoint(path, model, kind=KIND, config=model.config, **extra)


def load_htsat_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> HTSAT:
    """Rebuild an :class:`HTSAT` saved by :func:`save_htsat` (eval mode)."""
    payload = read_checkpoint(path, expect_kind=KIND)
    try:
        model = HTSAT(**payload["config"])
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {path}: configuration does not fit HTSAT: {exc}") from exc
    load_state_dict_checked(model, payload["state_dict"], what=str(path))
    return model.to(map_location).eval()


def small_config(**kw: Any) -> dict[str, Any]:
    """Constructor arguments of ``htsat-small`` (``kw`` override them)."""
    return {**SMALL, **kw}


__all__ = ["HTSAT", "FROZEN_FRONTEND_KEYS", "OFFICIAL_FILE", "load_htsat", "load_htsat_checkpoint",
           "official_state_dict", "save_htsat", "small_config"]
