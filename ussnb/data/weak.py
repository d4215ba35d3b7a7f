"""Weakly labelled clip datasets and the balanced sampler.

A prepared dataset folder (see :func:`ussnb.data.compose.compose_weak_dataset`) holds per split the audio
and a ``metadata.jsonl`` of clip-level tags (AudioSet MIDs). :class:`WeakDataset` reads it; the true event
times (``events.jsonl``) are available through :meth:`WeakDataset.true_events` for *evaluation only*.
:meth:`WeakDataset.hf` opens a split with Hugging Face ``datasets`` (``audiofolder``, offline).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..audio import load_audio
from ..errors import DataError
from .compose import MARKER, SPLITS


@dataclass(frozen=True)
class Clip:
    """One weakly labelled clip: its id, audio path and clip-level tags (MIDs)."""

    clip_id: str
    path: Path
    labels: tuple[str, ...]
    split: str


class WeakDataset:
    """A prepared weakly labelled dataset (``info.json`` + per-split ``metadata.jsonl``).

    Attributes:
        root: the dataset folder.
        info: the parsed ``info.json``.
        labels: class MIDs in a fixed order; ``label_index[mid]`` is the column of a class in targets.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not (self.root / MARKER).is_file():
            raise DataError(
                f"{self.root} is not a prepared dataset (no {MARKER} marker); prepare it first, e.g. "
                "`ussnb data prepare starter`"
            )
        self.info = json.loads((self.root / "info.json").read_text())
        self.name: str = self.info.get("name", self.root.name)
        self.sample_rate: int = int(self.info["sample_rate"])
        self.clip_seconds: float = float(self.info["clip_seconds"])
        self.labels: list[str] = list(self.info["labels"])
        self.label_index = {mid: i for i, mid in enumerate(self.labels)}
        self.label_names = {c["mid"]: c["name"] for c in self.info["classes"]}
        self._clips: dict[str, list[Clip]] = {}

    def __repr__(self) -> str:
        counts = ", ".join(f"{s}={len(self.clips(s))}" for s in self.splits)
        return f"WeakDataset({self.name!r}, {len(self.labels)} classes, {counts})"

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if (self.root / s / "metadata.jsonl").is_file()]

    def clips(self, split: str) -> list[Clip]:
        """The clips of a split, in file order."""
        if split not in self._clips:
            meta = self.root / split / "metadata.jsonl"
            if not meta.is_file():
                raise DataError(f"{self.root}: no split '{split}' (have: {', '.join(self.splits)})")
            rows = [json.loads(line) for line in meta.read_text().splitlines() if line.strip()]
            self._clips[split] = [
                Clip(r["clip_id"], self.root / split / r["file_name"], tuple(r["labels"]), split) for r in rows
            ]
        return self._clips[split]

    def targets(self, split: str) -> np.ndarray:
        """``(clips, classes)`` boolean matrix of clip-level tags."""
        clips = self.clips(split)
        y = np.zeros((len(clips), len(self.labels)), dtype=bool)
        for i, clip in enumerate(clips):
            for mid in clip.labels:
                y[i, self.label_index[mid]] = True
        return y

    def load(self, clip: Clip, sr: int | None = None) -> np.ndarray:
        """``(samples,)`` float32 audio of a clip at ``sr`` (default: the dataset's rate)."""
        return load_audio(clip.path, sr or self.sample_rate)

    def true_events(self, split: str | None = None) -> dict[str, list[dict]]:
        """Hidden ground truth ``{clip_id: [{"mid", "onset", "offset", "labelled", ...}]}``.

        For measuring anchor-mining precision and SED quality only: never feed it to training."""
        path = self.root / "events.jsonl"
        if not path.is_file():
            raise DataError(f"{self.root}: this dataset has no true event times (events.jsonl)")
        out = {}
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if split is None or row["split"] == split:
                    out[row["clip_id"]] = row["events"]
        return out

    def hf(self, split: str):
        """Open a split with Hugging Face ``datasets``, offline: columns ``path``, ``clip_id``, ``labels``.

        Built from the split's ``metadata.jsonl`` with the ``json`` builder, so it needs neither the network
        nor torchcodec (which ``datasets``' ``Audio`` feature requires even to *index* files and which has no
        working CPU build beside torch 2.13 here). Read audio with :meth:`load` / soundfile. Where torchcodec
        works, ``load_dataset("audiofolder", data_dir=root)`` reads the same folder with decoded audio."""
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import datasets

        meta = self.root / split / "metadata.jsonl"
        if not meta.is_file():
            raise DataError(f"{self.root}: no split '{split}' (have: {', '.join(self.splits)})")
        ds = datasets.load_dataset("json", data_files=str(meta), split="train")
        folder = str(self.root / split)
        return ds.map(lambda row: {"path": os.path.join(folder, row["file_name"])}, remove_columns=["file_name"])

    def class_counts(self, split: str) -> dict[str, int]:
        y = self.targets(split)
        return {mid: int(y[:, i].sum()) for i, mid in enumerate(self.labels)}


class BalancedSampler:
    """Batches of ``batch_size`` *distinct* classes, one clip of each (the paper's balanced sampling).

    Classes are drawn from a queue refilled with a fresh permutation of all classes, so over an epoch
    (``n_classes`` draws) every class is visited exactly once per permutation; within a class, clips are
    taken in a shuffled order and reshuffled when exhausted. A batch never holds a class twice (when the
    queue's tail would repeat a class, the next permutation is consulted). With ``world_size > 1`` each rank
    takes ``batch[rank::world_size]`` of the same global batch, so ranks see disjoint shards.

    Yields lists of ``(class_index, clip_index)``.
    """

    def __init__(
        self,
        targets: np.ndarray,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        classes: Sequence[int] | None = None,
    ):
        targets = np.asarray(targets, dtype=bool)
        self.clips_of = {k: np.nonzero(targets[:, k])[0] for k in range(targets.shape[1])}
        allowed = range(targets.shape[1]) if classes is None else classes
        self.classes = [k for k in allowed if len(self.clips_of[k]) > 0]
        if batch_size > len(self.classes):
            raise DataError(
                f"batch_size {batch_size} exceeds the {len(self.classes)} classes that have clips; a balanced "
                "batch holds distinct classes"
            )
        if batch_size % world_size:
            raise DataError(f"global batch_size {batch_size} must be divisible by world_size {world_size}")
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.rng = np.random.default_rng(seed)
        self._queue: list[int] = []
        self._pointer = {k: 0 for k in self.classes}
        self._order = {k: self.rng.permutation(self.clips_of[k]) for k in self.classes}

    def _next_class(self, exclude: set[int]) -> int:
        for _ in range(2):
            for i in range(len(self._queue) - 1, -1, -1):
                if self._queue[i] not in exclude:
                    return self._queue.pop(i)
            self._queue = [int(k) for k in self.rng.permutation(self.classes)][::-1] + self._queue
        raise AssertionError("unreachable: batch_size <= number of classes")

    def _next_clip(self, k: int) -> int:
        if self._pointer[k] >= len(self._order[k]):
            self._order[k] = self.rng.permutation(self.clips_of[k])
            self._pointer[k] = 0
        clip = int(self._order[k][self._pointer[k]])
        self._pointer[k] += 1
        return clip

    def next_global_batch(self) -> list[tuple[int, int]]:
        chosen: list[int] = []
        for _ in range(self.batch_size):
            chosen.append(self._next_class(set(chosen)))
        return [(k, self._next_clip(k)) for k in chosen]

    def next_batch(self) -> list[tuple[int, int]]:
        return self.next_global_batch()[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        """Everything needed to continue the exact same stream after a restart."""
        return {"rng": self.rng.bit_generator.state, "queue": [int(k) for k in self._queue],
                "pointer": dict(self._pointer), "order": {k: v.tolist() for k, v in self._order.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._queue = list(state["queue"])
        self._pointer = {int(k): int(v) for k, v in state["pointer"].items()}
        self._order = {int(k): np.asarray(v, dtype=np.int64) for k, v in state["order"].items()}
