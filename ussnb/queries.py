"""Query conditions (paper §3.4): what the separator is told to extract.

Condition types of an anchor segment x of class k:

- ``onehot``: e_k ∈ {0,1}^K (needs the label; no zero-shot);
- ``soft``: the tagger's clip probabilities p_AT(x) ∈ [0,1]^K;
- ``embedding``: the tagger's penultimate layer h(x) ∈ R^H;
- learnable, on top of a tagger: ``finetune`` (the tagger itself is trained), ``shortcut`` (frozen tagger
  plus a trainable copy, c = f(x) + α·f'(x)), ``adaptor`` (frozen tagger plus a 2-layer MLP, c = g(f(x))).

At inference a class is queried by the average condition of many of its examples (eq. 9),
c_k = 1/N Σ_n c(x_n^k), computed here from a split's cached anchors and saved; or by the average over the
non-silent segments of the user's own example files (query by example → zero-shot).
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .audio import load_audio
from .errors import AudioError, ConfigError, DataError

CONDITION_TYPES = ("onehot", "soft", "embedding", "finetune", "shortcut", "adaptor")
LEARNABLE = ("finetune", "shortcut", "adaptor")


def onehot(labels: Sequence[int], classes: int) -> np.ndarray:
    """``(batch, classes)`` one-hot conditions."""
    out = np.zeros((len(labels), classes), dtype=np.float32)
    out[np.arange(len(labels)), np.asarray(labels, dtype=int)] = 1.0
    return out


def tagger_output(tagger, wave: torch.Tensor, output: str) -> torch.Tensor:
    """``soft`` → clip probabilities, ``embedding`` → embedding, with gradients (no inference mode)."""
    out = tagger._tag(wave, frames=False) if hasattr(tagger, "_tag") else tagger.tag(wave, frames=False)
    if output == "soft":
        return out.clip
    if output == "embedding":
        return out.embedding
    raise ValueError(f"tagger output must be 'soft' or 'embedding', got {output!r}")


class QueryNet(nn.Module):
    """Maps anchor waveforms ``(batch, samples)`` to conditions ``(batch, dim)``.

    ``kind`` is one of :data:`CONDITION_TYPES` except ``onehot``; ``output`` picks the tagger's ``soft`` or
    ``embedding`` head the learnable kinds start from. Only the learnable parts have ``requires_grad``; hand
    ``[p for p in net.parameters() if p.requires_grad]`` to the optimizer (the training loop does)."""

    def __init__(self, tagger: nn.Module, kind: str = "soft", output: str | None = None, hidden: int = 512):
        super().__init__()
        if kind not in CONDITION_TYPES or kind == "onehot":
            raise ConfigError(f"query net kind must be one of {CONDITION_TYPES[1:]}, got {kind!r}")
        self.kind = kind
        self.output = output or ("embedding" if kind == "embedding" else "soft")
        if kind in ("soft", "embedding"):
            self.output = kind
        self.tagger = tagger
        finetune = kind == "finetune"
        for p in self.tagger.parameters():
            p.requires_grad_(finetune)
        with torch.no_grad():
            probe = tagger_output(tagger.eval(), torch.zeros(1, int(tagger.sample_rate)), self.output)
        self.dim = int(probe.shape[-1])
        if kind == "shortcut":
            self.copy = copy.deepcopy(tagger)
            for p in self.copy.parameters():
                p.requires_grad_(True)
            self.alpha = nn.Parameter(torch.tensor(0.1))
        if kind == "adaptor":
            self.adaptor = nn.Sequential(nn.Linear(self.dim, hidden), nn.ReLU(), nn.Linear(hidden, self.dim))

    @property
    def sample_rate(self) -> int:
        return int(self.tagger.sample_rate)

    @property
    def learnable(self) -> bool:
        return self.kind in LEARNABLE

    def train(self, mode: bool = True):
        super().train(mode)
        self.tagger.eval()  # BatchNorm statistics of the pretrained tagger stay fixed
        if self.kind == "shortcut":
            self.copy.eval()
        return self

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.kind in ("soft", "embedding"):
            with torch.no_grad():
                return tagger_output(self.tagger, wave, self.output)
        if self.kind == "finetune":
            return tagger_output(self.tagger, wave, self.output)
        with torch.no_grad():
            base = tagger_output(self.tagger, wave, self.output)
        if self.kind == "shortcut":
            return base + self.alpha * tagger_output(self.copy, wave, self.output)
        return self.adaptor(base)


# --------------------------------------------------------------------------------------------- eq. 9
def class_average_conditions(conditions: np.ndarray, labels: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 9: per class the mean condition of its anchors. Returns ``(classes, dim)`` and the anchor count
    per class (classes without anchors get zeros and count 0)."""
    conditions = np.asarray(conditions, dtype=np.float64)
    out = np.zeros((classes, conditions.shape[1]), dtype=np.float64)
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=classes)
    np.add.at(out, np.asarray(labels, dtype=int), conditions)
    out[counts > 0] /= counts[counts > 0, None]
    return out.astype(np.float32), counts


def save_conditions(path: str | os.PathLike, matrix: np.ndarray, *, kind: str, labels: Sequence[str],
                    counts: np.ndarray | None = None, tagger: str | None = None, names: Sequence[str] | None = None) -> Path:
    """Save class-average conditions as ``.npz`` (``conditions``, ``counts``) + a ``.json`` sidecar."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, conditions=np.asarray(matrix, np.float32),
             counts=np.asarray(counts if counts is not None else np.ones(len(labels)), np.int64))
    meta = {"kind": kind, "labels": list(labels), "names": list(names) if names is not None else None,
            "tagger": tagger, "dim": int(np.asarray(matrix).shape[1])}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return path


class ClassConditions:
    """Saved class-average conditions: ``conditions`` ``(classes, dim)``, their ``kind``, label MIDs."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: class-average conditions not found")
        with np.load(self.path) as z:
            self.conditions = z["conditions"]
            self.counts = z["counts"]
        self.meta = json.loads(self.path.with_suffix(".json").read_text())
        self.kind: str = self.meta["kind"]
        self.labels: list[str] = self.meta["labels"]

    def __getitem__(self, mid: str) -> np.ndarray:
        if mid not in self.labels:
            raise DataError(f"no class-average condition for {mid}")
        i = self.labels.index(mid)
        if self.counts[i] == 0:
            raise DataError(f"class {mid} had no anchors, so it has no class-average condition")
        return self.conditions[i]


# --------------------------------------------------------------------------------------------- by example
def split_segments(wave: np.ndarray, sr: int, segment_seconds: float = 2.0, hop_seconds: float | None = None) -> np.ndarray:
    """``(segments, samples)``: ``segment_seconds`` segments every ``hop_seconds`` (default: consecutive,
    no overlap); the last is tiled (repeated) up to full length."""
    seg = int(round(segment_seconds * sr))
    hop = int(round(hop_seconds * sr)) if hop_seconds else seg
    n = max(1, int(np.ceil(max(wave.shape[0] - seg, 0) / hop)) + 1) if hop != seg else max(1, int(np.ceil(wave.shape[0] / seg)))
    out = np.zeros((n, seg), dtype=np.float32)
    for i in range(n):
        piece = wave[i * hop:i * hop + seg]
        reps = int(np.ceil(seg / max(piece.shape[0], 1)))
        out[i] = np.tile(piece, reps)[:seg]
    return out


def non_silent(segments: np.ndarray, threshold_db: float = -50.0, relative_db: float | None = None) -> np.ndarray:
    """Mask of segments whose RMS is above ``threshold_db`` dBFS and, with ``relative_db``, within that many
    dB of the loudest segment."""
    rms = np.sqrt(np.mean(segments.astype(np.float64) ** 2, axis=1) + 1e-20)
    level = 20 * np.log10(rms)
    keep = level > threshold_db
    if relative_db is not None and keep.any():
        keep &= level >= level.max() - relative_db
    return keep


def query_by_example(
    files: Sequence[str | os.PathLike],
    query_net,
    *,
    segment_seconds: float = 2.0,
    hop_seconds: float | None = 1.0,
    threshold_db: float = -50.0,
    relative_db: float | None = 20.0,
    batch_size: int = 16,
) -> np.ndarray:
    """Condition ``(dim,)`` from example audio: the mean over each file's ``segment_seconds`` segments (every
    ``hop_seconds``) that are not silent — above ``threshold_db`` dBFS and within ``relative_db`` of the file's
    loudest segment, so the quiet gaps of a recording do not water the query down — then over files.
    Training conditions are anchors that hold the sound, so the example segments should too. ``query_net`` is a
    :class:`QueryNet` (or anything with ``sample_rate`` mapping ``(batch, samples)`` to conditions). A silent or
    empty example file is an error naming it."""
    if not files:
        raise AudioError("query by example needs at least one audio file")
    per_file = []
    for f in files:
        wave = load_audio(f, query_net.sample_rate)
        segs = split_segments(wave, query_net.sample_rate, segment_seconds, hop_seconds)
        keep = non_silent(segs, threshold_db, relative_db)
        if not keep.any():
            raise AudioError(f"{f}: example is silent (no {segment_seconds:g} s segment above {threshold_db:g} dBFS)")
        segs = segs[keep]
        outs = []
        with torch.inference_mode():
            for i in range(0, len(segs), batch_size):
                outs.append(query_net(torch.from_numpy(segs[i:i + batch_size])).float().cpu().numpy())
        per_file.append(np.concatenate(outs).mean(axis=0))
    return np.mean(per_file, axis=0).astype(np.float32)
