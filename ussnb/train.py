"""Training the query-conditioned separator from cached anchors (paper §3, Algorithm 1 → eq. 8).

Each step: B distinct classes are sampled (balanced), one cached anchor each; anchors are mixed J at a time
(energy-matched by default); the separator f(x, c) is asked for the target given its condition c (the
*oracle* condition of the clean target anchor, as in the paper); the loss compares waveforms:

    L1:       ‖f(x, c) − s‖₁                (the paper, eq. 8)
    neg-sdr:  −10·log10(‖s‖² / ‖s − f(x, c)‖²)  (scale-aware SDR; learns faster on the CPU, see the notes)

Validation: a fixed set of mixtures from the validation anchors, scored in SDRi every ``val_every`` steps,
beside the trivial floor (x/2) and the ideal-ratio-mask ceiling on the very same mixtures.

Checkpoints (``state.pt``) are atomic and carry model config, optimizer, scheduler, step, sampler position
and every RNG state: a run killed at any moment resumes with exactly the losses of an uninterrupted run.
Multi-process training: ``torchrun --nproc_per_node N -m ussnb.train ...`` (DistributedDataParallel; each
rank takes its shard ``batch[rank::world]`` of the same balanced global batch; gloo on the CPU).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .anchors import AnchorSet, detected_sets, group_disjoint, mix_sources, roll_groups
from .audio import resample
from .errors import ConfigError, DataError
from .io import atomic_path
from .eval.metrics import class_aggregate, reference_scores, sdr_torch, sdri
from .queries import CONDITION_TYPES, LEARNABLE
from .trainutil import capture_rng, restore_rng, resume_state, save_state, seed_everything, warmup_lambda
from .run import HISTORY_FILE, SEPARATOR_FILE, VALIDATION_FILE
from .config import TrainSection


@dataclass
class TrainConfig(TrainSection):
    """Stage 04's parameters (:class:`ussnb.config.TrainSection`: names, defaults and help in one place) plus
    the settings only code sets."""
    separator_config: dict = field(default_factory=dict)  # constructor overrides of the separator
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    min_rms_db: float = -40.0  # anchors quieter than this (RMS, dBFS) count as silent and are skipped
    checkpoint_every: int = 250

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "TrainConfig":
        """The config of stage 04 from pipeline parameters (a preset's ``train`` section + overrides, or notebook
        04's cell): the fields it names, the rest from the defaults (notebook 04's cell is written from them).
        ``step3_threshold < 0`` means off (None); ``checkpoint_every`` follows ``val_every`` unless given."""
        fields = set(cls.__dataclass_fields__)
        values = {k: v for k, v in params.items() if k in fields}
        if values.get("step3_threshold") is not None and values["step3_threshold"] < 0:
            values["step3_threshold"] = None
        if "val_every" in values and "checkpoint_every" not in values:
            values["checkpoint_every"] = values["val_every"]
        return cls(**values)


class AnchorAudio:
    """All anchor segments of an :class:`AnchorSet` at one sample rate, in memory (int16), cached on disk
    as ``audio_<rate>.npy`` beside the anchors so every run after the first starts at once. Anchors mined
    with ``in-clip-random`` also bring their in-clip mixture partners (``partner_<rate>.npy``, ``.partner``)."""

    def __init__(self, anchors: AnchorSet, sample_rate: int, progress: bool = True):
        self.anchors, self.sample_rate = anchors, int(sample_rate)
        self.data = self._cached("audio", False, progress)
        self.partner = self._cached("partner", True, progress) if anchors.partner is not None else None

    def _cached(self, name: str, partner: bool, progress: bool) -> np.ndarray:
        from tqdm.auto import tqdm

        anchors = self.anchors
        path = anchors.folder / f"{name}_{self.sample_rate}.npy"
        if path.is_file():
            return np.load(path, mmap_mode=None)
        seg = int(round(anchors.meta["duration"] * self.sample_rate))
        data = np.zeros((len(anchors), seg), dtype=np.int16)
        what = "in-clip partner" if partner else "anchor"
        for i in tqdm(range(len(anchors)), desc=f"caching {what} audio at {self.sample_rate} Hz",
                      disable=not progress):
            x = anchors.segment_audio(i, partner=partner)
            if anchors.sample_rate != self.sample_rate:
                x = resample(x, anchors.sample_rate, self.sample_rate)
            x = x[:seg] if x.shape[0] >= seg else np.pad(x, (0, seg - x.shape[0]))
            data[i] = np.clip(np.round(x * 32767), -32767, 32767).astype(np.int16)
        with atomic_path(path) as tmp:  # a name per process: DDP ranks may race here
            np.save(tmp, data)
        return data

    def __getitem__(self, idx) -> np.ndarray:
        return self.data[idx].astype(np.float32) / 32767

    def partners(self, idx) -> np.ndarray:
        """The in-clip mixture partners of anchors ``idx`` (float32, like ``self[idx]``)."""
        if self.partner is None:
            raise DataError("these anchors have no in-clip partners (mined with another strategy)")
        return self.partner[idx].astype(np.float32) / 32767


def _speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Resample by linear interpolation (a speed/pitch change), cropped/padded to the same length."""
    n = x.shape[-1]
    t = torch.from_numpy(x)[None, None]
    y = F.interpolate(t, size=max(2, int(round(n / factor))), mode="linear", align_corners=False)[0, 0].numpy()
    return y[:n] if y.shape[0] >= n else np.pad(y, (0, n - y.shape[0]))


class MixtureSampler:
    """Balanced batches of cached anchors → mixtures, targets and conditions (all NumPy)."""

    def __init__(self, anchors: AnchorSet, audio: AnchorAudio, cfg: TrainConfig, *, rank: int = 0, world: int = 1):
        self.anchors, self.audio, self.cfg = anchors, audio, cfg
        loud = rms_db(audio[np.arange(len(anchors))]) > cfg.min_rms_db  # quiet anchors are left out up front
        self.n_quiet = int((~loud).sum())
        self.by_class = {k: v[loud[v]] for k, v in anchors.by_class().items() if loud[v].any()}
        self.classes = sorted(self.by_class)
        if len(self.classes) < max(cfg.n_sources, 2):
            raise DataError(f"the anchor set has {len(self.classes)} classes; mixing needs ≥ {cfg.n_sources}")
        self.batch = min(cfg.batch_size, len(self.classes))
        if self.batch % world:
            raise DataError(f"batch size {self.batch} is not divisible by the {world} processes")
        self.rng = np.random.default_rng(cfg.seed)  # same on every rank: the same global batch
        self.local = np.random.default_rng([cfg.seed, 1000 + rank])  # per-rank augmentation randomness
        self.rank, self.world = rank, world
        self.queue: list[int] = []
        n_classes = len(anchors.meta["labels"])
        self.n_classes = n_classes
        self.in_clip = audio.partner is not None
        if self.in_clip and cfg.n_sources != 2:
            raise ConfigError(f"in-clip-random anchors are mixed with one segment of their own clip: n_sources must "
                              f"be 2, got {cfg.n_sources}")

    def state_dict(self) -> dict:
        return {"queue": list(self.queue)}

    def load_state_dict(self, state: dict) -> None:
        self.queue = list(state["queue"])

    def _classes(self) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < self.batch:
            if not self.queue:
                self.queue = [int(k) for k in self.rng.permutation(self.classes)]
            k = self.queue.pop()
            if k in chosen:  # keep it for the next batch
                self.queue.insert(0, k)
                continue
            chosen.append(k)
        return chosen

    def next(self, tries: int = 10) -> dict[str, np.ndarray]:
        """The next batch (a batch that formed no mixture — all pairs degenerate — is drawn again)."""
        for _ in range(tries - 1):
            try:
                return self._next()
            except DataError:
                continue
        return self._next()

    def _next(self) -> dict[str, np.ndarray]:
        classes = self._classes()
        picks = np.array(pick_compatible(self.anchors, self.by_class, classes, self.rng))
        picks = picks[self.rank::self.world]
        segs = self.audio[picks]
        if self.cfg.speed_perturb > 0:
            p = self.cfg.speed_perturb
            segs = np.stack([_speed(s, f) for s, f in zip(segs, self.local.uniform(1 - p, 1 + p, len(segs)))])
        labels = self.anchors.label[picks]
        J = self.cfg.n_sources
        if self.in_clip:  # in-clip-random (Table 7): each anchor is mixed with another segment of its own clip
            return self._in_clip(picks, segs)
        if self.cfg.step3_threshold is not None:
            groups = group_disjoint(detected_sets(self.anchors.conditions("soft")[picks], labels,
                                                  self.cfg.step3_threshold), J, self.local)
        else:
            groups = roll_groups(len(picks), J) if len(picks) >= J else []
        mixtures, targets, anchor_ids = [], [], []
        for g in groups:
            if any(abs(correlation(segs[g[0]], segs[j])) > 0.5 for j in g[1:]):
                continue  # the same source event in two anchors: not a separation problem
            mixture, target, gains = mix_sources(segs[g], augmentation=self.cfg.augmentation, rng=self.local)
            scale = headroom(mixture)
            mixtures.append(mixture * scale)
            targets.append(target * scale)
            anchor_ids.append(picks[g[0]])
            if self.cfg.both_targets and J == 2:  # the same mixture, queried for its other source
                mixtures.append(mixture * scale)
                targets.append((mixture - target) * scale)
                anchor_ids.append(picks[g[1]])
        return self._batch(mixtures, targets, anchor_ids)

    def _in_clip(self, picks: np.ndarray, segs: np.ndarray) -> dict[str, np.ndarray]:
        """Mixtures of each anchor (the target, queried by its own condition) and its in-clip partner — which
        holds the same clip's classes, so the separator is often asked to split a sound from itself."""
        partners = self.audio.partners(picks)
        if self.cfg.speed_perturb > 0:
            p = self.cfg.speed_perturb
            partners = np.stack([_speed(s, f) for s, f in zip(partners, self.local.uniform(1 - p, 1 + p, len(partners)))])
        mixtures, targets, anchor_ids = [], [], []
        for a, seg, partner in zip(picks, segs, partners):
            if abs(correlation(seg, partner)) > 0.5 or rms_db(partner) <= self.cfg.min_rms_db:
                continue  # overlapping (short clip) or silent partner
            mixture, target, _ = mix_sources(np.stack([seg, partner]), augmentation=self.cfg.augmentation,
                                             rng=self.local)
            scale = headroom(mixture)
            mixtures.append(mixture * scale)
            targets.append(target * scale)
            anchor_ids.append(int(a))
        return self._batch(mixtures, targets, anchor_ids)

    def _batch(self, mixtures: list, targets: list, anchor_ids: list) -> dict[str, np.ndarray]:
        if not mixtures:
            raise DataError("no mixture could be formed from this batch")
        return {"mixture": np.stack(mixtures).astype(np.float32), "target": np.stack(targets).astype(np.float32),
                "anchor": np.asarray(anchor_ids), "query": self._query_ids(anchor_ids)}

    def _query_ids(self, anchor_ids: list[int]) -> np.ndarray:
        """``(items, k)`` anchors whose mean condition queries each item: its own anchor (the paper's oracle
        condition; k = 1 when ``query_other`` is 0), or with probability ``query_other`` the mean of
        ``query_examples`` other anchors of the same class from other clips — training the way a user queries
        by example, with another recording of the sound than the one in the mixture."""
        p, k = float(self.cfg.query_other), max(1, int(self.cfg.query_examples))
        if p <= 0:
            return np.asarray(anchor_ids, dtype=np.int64)[:, None]
        out = np.repeat(np.asarray(anchor_ids, dtype=np.int64)[:, None], k, axis=1)
        for i, a in enumerate(anchor_ids):
            if self.local.random() >= p:
                continue
            pool = self.by_class[int(self.anchors.label[a])]
            pool = pool[self.anchors.clip[pool] != self.anchors.clip[a]]
            if len(pool):
                out[i] = pool[self.local.integers(len(pool), size=k)]
        return out


class BatchStream:
    """The sampler's batches in order, each paired with the sampler state right after it — what a resume needs
    to continue exactly after the last batch *consumed* (``self.state``), even when batches are made ahead.

    ``prefetch`` > 0 assembles up to that many batches ahead in one background thread (the anchors are in
    memory, so a batch is NumPy work: picking, speed perturbation, mixing), overlapping it with the model's
    step; with ``pin`` (CUDA) the arrays are also copied to pinned memory there. Thread, not worker processes:
    a single producer keeps the batch order — and so exact resume — independent of timing, and shares the
    in-memory anchors without copies. 0 makes each batch on demand (the same batches, the same states)."""

    def __init__(self, sampler: "MixtureSampler", prefetch: int = 0, pin: bool = False):
        import queue
        import threading

        self.sampler, self.pin = sampler, pin
        self.state = self._snapshot()
        self._queue = queue.Queue(maxsize=max(1, prefetch)) if prefetch > 0 else None
        self._stop = threading.Event()
        if self._queue is not None:
            self._thread = threading.Thread(target=self._produce, name="ussnb-batches", daemon=True)
            self._thread.start()

    def _snapshot(self) -> dict:
        s = self.sampler
        return {"sampler": s.state_dict(),
                "generators": {"sampler": s.rng.bit_generator.state, "local": s.local.bit_generator.state}}

    def _make(self) -> tuple[dict, dict]:
        batch = self.sampler.next()
        if self.pin:
            batch = {k: torch.from_numpy(v).pin_memory() if v.dtype == np.float32 else v for k, v in batch.items()}
        return batch, self._snapshot()

    def _produce(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._make()
            except BaseException as exc:  # handed to the consumer, raised there
                item = exc
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except Exception:
                    continue
            if isinstance(item, BaseException):
                return

    def next(self) -> dict:
        if self._queue is None:
            batch, self.state = self._make()
            return batch
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self.state = item
        return batch

    def close(self) -> None:
        self._stop.set()
        if self._queue is not None:
            self._thread.join(timeout=5)


def condition_vectors(anchors: AnchorSet, ids: np.ndarray, kind: str) -> np.ndarray:
    """Cached conditions of anchors ``ids`` (``onehot`` built from their labels)."""
    if kind == "onehot":
        return np.eye(len(anchors.meta["labels"]), dtype=np.float32)[anchors.label[ids]]
    return anchors.conditions(kind)[ids].astype(np.float32)


def condition_size(anchors: AnchorSet, kind: str, query_net=None) -> int:
    if kind == "onehot":
        return len(anchors.meta["labels"])
    if kind in LEARNABLE:
        return int(query_net.dim)
    return int(anchors.conditions(kind).shape[1])


def clip_tags(anchors: AnchorSet) -> dict[int, set[int]]:
    """Clip → the classes it is tagged with (every tag of a clip has an anchor)."""
    tags: dict[int, set[int]] = {}
    for c, k in zip(anchors.clip.tolist(), anchors.label.tolist()):
        tags.setdefault(c, set()).add(k)
    return tags


def pick_compatible(anchors: AnchorSet, by_class: dict[int, np.ndarray], classes: list[int],
                    rng: np.random.Generator, tries: int = 8) -> list[int]:
    """One anchor per class such that no two come from the same clip and no anchor's clip is tagged with
    another class of the batch (so an interferer does not hold the target's class — weak labels permitting).
    Falls back to any anchor of the class after ``tries`` attempts."""
    tags = getattr(anchors, "_clip_tags", None)
    if tags is None:
        tags = anchors._clip_tags = clip_tags(anchors)
    chosen_set = set(classes)
    used_clips: set[int] = set()
    picks = []
    for k in classes:
        pool = by_class[k]
        pick = int(pool[rng.integers(len(pool))])
        for _ in range(tries):
            clip = int(anchors.clip[pick])
            if clip not in used_clips and not (tags[clip] - {k}) & chosen_set:
                break
            pick = int(pool[rng.integers(len(pool))])
        used_clips.add(int(anchors.clip[pick]))
        picks.append(pick)
    return picks


def headroom(mixture: np.ndarray, peak_limit: float = 0.9) -> float:
    """The gain that keeps a mixture's peak at ``peak_limit`` (1 when it is already below); apply it to the target too."""
    peak = float(np.abs(mixture).max())
    return peak_limit / peak if peak > peak_limit else 1.0


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.dot(a, b) / (np.sqrt(np.dot(a, a) * np.dot(b, b)) + 1e-20))


def rms_db(x: np.ndarray) -> np.ndarray:
    """RMS level in dBFS over the last axis."""
    return 10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2, axis=-1) + 1e-20)


def validation_set(anchors: AnchorSet, audio: AnchorAudio, n: int, seed: int, n_fft: int, hop: int,
                   min_rms_db: float = -40.0) -> dict:
    """A fixed set of 0 dB two-class mixtures from validation anchors (deterministic from ``seed``), with
    the floor (x/2) and IRM ceiling computed once on the same mixtures."""
    rng = np.random.default_rng([seed, 7])
    loud = rms_db(audio[np.arange(len(anchors))]) > min_rms_db
    by_class = {k: v[loud[v]] for k, v in anchors.by_class().items() if loud[v].any()}
    classes = sorted(by_class)
    if len(classes) < 2:
        raise DataError("the validation anchors hold fewer than 2 classes")
    mixtures, targets, ids, labels = [], [], [], []
    order: list[int] = []
    while len(mixtures) < n:
        if not order:
            order = [int(k) for k in rng.permutation(classes)]
        a = order.pop()
        b = int(rng.choice([k for k in classes if k != a]))
        ia, ib = pick_compatible(anchors, by_class, [a, b], rng, tries=50)
        sa, sb = audio[ia], audio[ib]
        if abs(correlation(sa, sb)) > 0.5:  # the same source event reached both anchors (small datasets)
            continue
        mixture, target, _ = mix_sources(np.stack([sa, sb]), augmentation="match-energy")
        scale = headroom(mixture)
        mixtures.append(mixture * scale)
        targets.append(target * scale)
        ids.append(ia)
        labels.append(a)
    out = {"mixture": np.stack(mixtures).astype(np.float32), "target": np.stack(targets).astype(np.float32),
           "anchor": np.asarray(ids), "label": np.asarray(labels)}
    refs = reference_scores(out["target"], out["mixture"], n_fft, hop)
    out["floor"] = class_aggregate(refs["trivial_sdri"], labels)
    out["irm"] = class_aggregate(refs["irm_sdri"], labels)
    return out


@torch.inference_mode()
def separate_batch(model, mixture: np.ndarray, condition: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Validation estimates: each ``(items, samples)`` mixture in one pass, through the kit's one inference path
    (:func:`ussnb.inference.apply_separator`)."""
    from .inference import apply_separator

    return apply_separator(model, mixture, condition, segment_seconds=None, batch_size=batch_size)


def score(model, val: dict, conditions: np.ndarray) -> dict:
    was = model.training
    model.eval()
    est = separate_batch(model, val["mixture"], conditions)
    model.train(was)
    values = sdri(val["target"], est, val["mixture"])
    agg = class_aggregate(values, val["label"].tolist())
    return {"sdri_mean": agg["mean"], "sdri": agg["median_then_mean"], "values": values}


def _loss(kind: str, est: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "l1":
        return (est - target).abs().mean()
    if kind == "neg-sdr":
        return -sdr_torch(target, est, eps=1e-8).mean()
    raise ConfigError(f"unknown loss {kind!r}; use 'l1' or 'neg-sdr'")


def restore_rank_rng(state: dict, sampler: "MixtureSampler", rank: int, world: int, seed: int, step: int) -> None:
    """Restore this process's RNGs from a saved state. Saved by the same number of processes: each rank gets
    its own states back (exact resume). Saved by another number (or by an old single-state file on N > 1):
    the global batch stream — the generator every rank shares — continues exactly; per-rank randomness
    (augmentation, torch) is re-seeded from (seed, rank, step), with a warning."""
    import warnings

    saved_world = int(state.get("world", 1))
    ranks = state.get("rng_ranks") or [state["rng"]]
    gens = {"sampler": sampler.rng, "local": sampler.local}
    if saved_world == world and len(ranks) == world:
        restore_rng(ranks[rank], gens)
        return
    restore_rng(ranks[0], {"sampler": sampler.rng})
    sampler.local = np.random.default_rng([seed, 1000 + rank, step])
    torch.manual_seed(seed * 1_000_003 + rank * 7919 + step)
    np.random.seed((seed * 1_000_003 + rank * 7919 + step) % 2**32)
    if rank == 0:
        warnings.warn(f"resuming a state saved by {saved_world} process(es) on {world}: the model, optimizer, "
                      "schedule and global batch stream continue; per-rank augmentation is re-seeded", stacklevel=2)


def train_separator(
    anchors_dir: str | os.PathLike,
    val_anchors_dir: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    config: TrainConfig | dict | None = None,
    *,
    query_net=None,
    progress: bool = True,
    stop_after: int | None = None,
    device: Any = None,
    precision: str | None = None,
    prefetch: int = 0,
    compile: bool = False,
) -> tuple[torch.nn.Module, list[dict]]:
    """Train a separator on a cached anchor set; resumes from ``out_dir/state.pt``.

    Writes ``out_dir/separator.pt`` (loadable with :func:`ussnb.separators.load_separator`; also records the
    condition type, the anchors' tagger and labels), ``history.json`` and ``validation.json`` (floor/IRM).
    ``stop_after`` ends this call after that many steps *without* finishing the run (for tests of resuming).
    ``device`` (auto | cpu | cuda[:N]; default ``USSNB_DEVICE`` or auto) holds the model, the query net and
    every batch; ``precision`` (fp32 | bf16 | fp16; default ``USSNB_PRECISION`` or fp32) is the autocast of the
    forward pass — weights stay fp32, the loss and the validation SDR are computed in fp32, fp16 uses a
    GradScaler (CUDA only). The saved checkpoint is device-free; a state saved on one device resumes on another.
    ``prefetch``: batches assembled ahead in a background thread (:class:`BatchStream`; same batches, same
    losses). A state saved by N processes resumes on M: with M = N exactly; otherwise the model, optimizer,
    schedule and the global batch stream continue and only the per-rank augmentation randomness is re-seeded.
    """
    from .runtime import autocast, check_precision, resolve_device
    from .progress import progress_bar

    from .separators import build_separator, save_separator

    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))
    if cfg.condition not in CONDITION_TYPES:
        raise ConfigError(f"unknown condition {cfg.condition!r}; choose from {CONDITION_TYPES}")
    if cfg.condition in LEARNABLE and query_net is None:
        raise ConfigError(f"condition '{cfg.condition}' needs a query_net (a learnable ussnb.queries.QueryNet)")
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if dist else (0, 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(device)
    precision = check_precision(precision, device)
    seed_everything(cfg.seed)
    anchors = AnchorSet(anchors_dir)
    model = build_separator(cfg.separator, cfg.separator_preset,
                            **{"condition_size": condition_size(anchors, cfg.condition, query_net),
                               **cfg.separator_config}).to(device)
    if query_net is not None:
        query_net.to(device)
    sr = int(model.sample_rate)
    audio = AnchorAudio(anchors, sr, progress=progress and rank == 0)
    if cfg.condition in LEARNABLE:
        if query_net.sample_rate != sr:
            raise ConfigError(f"learnable conditions need the separator at the tagger's rate ({query_net.sample_rate} Hz)")
        query_net.train()
    sampler = MixtureSampler(anchors, audio, cfg, rank=rank, world=world)
    params = list(model.parameters()) + ([p for p in query_net.parameters() if p.requires_grad] if query_net else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_lambda(cfg.schedule, cfg.warmup_steps, cfg.steps))
    if cfg.accumulate < 1:
        raise ConfigError(f"accumulate must be >= 1 micro-batches per step, got {cfg.accumulate}")
    if dist and cfg.sync_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index or 0] if device.type ==
                                                           "cuda" else None) if dist else model)
    if compile:  # torch.compile (inductor) of the training forward; its compile time is paid once per call
        ddp_model = torch.compile(ddp_model)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    pin = device.type == "cuda"

    def to_device(array) -> torch.Tensor:
        t = array if isinstance(array, torch.Tensor) else torch.from_numpy(array)
        return (t if t.is_pinned() or not pin else t.pin_memory()).to(device, non_blocking=pin)

    val = None
    if val_anchors_dir is not None and rank == 0:
        val_anchors = AnchorSet(val_anchors_dir)
        val_audio = AnchorAudio(val_anchors, sr, progress=progress)
        n_fft = int(getattr(model, "config", {}).get("n_fft", 2048))
        hop = int(getattr(model, "config", {}).get("hop", 320))
        val = validation_set(val_anchors, val_audio, cfg.val_mixtures, cfg.seed, n_fft, hop, cfg.min_rms_db)
        val_cond = (condition_vectors(val_anchors, val["anchor"], cfg.condition) if cfg.condition not in LEARNABLE
                    else None)
        (out / VALIDATION_FILE).write_text(json.dumps(
            {"floor_sdri": val["floor"]["median_then_mean"], "irm_sdri": val["irm"]["median_then_mean"],
             "floor_sdri_mean": val["floor"]["mean"], "irm_sdri_mean": val["irm"]["mean"],
             "n_mixtures": len(val["label"])}, indent=1))

    history: list[dict] = []
    step = 0
    state_path = out / "state.pt"
    state = resume_state(state_path, asdict(cfg))
    if state is not None:
        model.load_state_dict(state["model"])
        if query_net is not None and state.get("query_net") is not None:
            query_net.load_state_dict(state["query_net"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        history, step = state["history"], state["step"]
        restore_rank_rng(state, sampler, rank, world, cfg.seed, step)

    stream = BatchStream(sampler, prefetch=prefetch, pin=pin)

    def checkpoint():
        rng = capture_rng()
        rng["generators"] = stream.state["generators"]  # as of the last batch consumed, not the last made
        ranks = [None] * world
        if dist:
            torch.distributed.all_gather_object(ranks, rng)  # every rank's RNG: an exact resume on N processes
        else:
            ranks = [rng]
        if rank == 0:
            save_state(state_path, config=asdict(cfg), model=model.state_dict(),
                       query_net=query_net.state_dict() if query_net is not None else None,
                       optimizer=opt.state_dict(), scheduler=sched.state_dict(), sampler=stream.state["sampler"],
                       rng=ranks[0], rng_ranks=ranks, world=world, history=history, step=step)

    bar = progress_bar(total=cfg.steps, initial=step, desc=f"training {cfg.separator} ({cfg.condition})", unit="step",
               disable=not progress or rank != 0)
    model.train()
    t0, steps_this_call = time.time(), 0
    while step < cfg.steps:
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for micro in range(cfg.accumulate):  # gradient accumulation: cfg.accumulate balanced batches per step
            batch = stream.next()
            x = to_device(batch["mixture"])[:, None]
            s = to_device(batch["target"])[:, None]
            q = batch["query"]  # (items, k): the mean condition of these anchors asks for each item's target
            with autocast(device, precision):
                if cfg.condition in LEARNABLE:
                    c = query_net(to_device(audio[q.ravel()]))
                else:
                    c = to_device(condition_vectors(anchors, q.ravel(), cfg.condition))
                c = c.view(q.shape[0], q.shape[1], -1).mean(dim=1)
                est = ddp_model(x, c)
            loss = _loss(cfg.loss, est.float(), s)  # the loss in fp32 whatever the forward's precision
            loss_sum += loss.item()
            if cfg.accumulate > 1:
                loss = loss / cfg.accumulate
            # DDP all-reduces the gradients once, on the last micro-batch
            sync = contextlib.nullcontext() if not dist or micro == cfg.accumulate - 1 else ddp_model.no_sync()
            with sync:
                scaler.scale(loss).backward()
        scaler.unscale_(opt)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.tensor(0.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        step += 1
        steps_this_call += 1
        record: dict[str, Any] = {"step": step, "loss": round(loss_sum / cfg.accumulate, 6), "lr": sched.get_last_lr()[0],
                                  "grad_norm": round(float(grad_norm), 4)}
        if val is not None and (step % cfg.val_every == 0 or step == cfg.steps):
            if val_cond is None:
                with torch.inference_mode():
                    val_c = query_net(to_device(val_audio[val["anchor"]])).float().cpu().numpy()
            else:
                val_c = val_cond
            sc = score(model, val, val_c)
            record["val_sdri"] = round(sc["sdri"], 4)
            record["val_sdri_mean"] = round(sc["sdri_mean"], 4)
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", **({"val_SDRi": f"{record['val_sdri']:.2f}"} if "val_sdri" in record else {}))
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            checkpoint()
        if stop_after is not None and steps_this_call >= stop_after:
            bar.close()
            stream.close()
            return model, history
    bar.close()
    stream.close()
    if rank == 0:
        model.eval()
        extra = {"condition": cfg.condition, "labels": anchors.meta["labels"], "tagger": anchors.meta.get("tagger"),
                 "train_config": asdict(cfg), "steps": step}
        if query_net is not None:
            extra["query_net_state"] = {k: v.cpu() for k, v in query_net.state_dict().items()}
        save_separator(out / SEPARATOR_FILE, model, **extra)
        (out / HISTORY_FILE).write_text(json.dumps({"history": history,
                                                      "seconds_this_call": round(time.time() - t0, 1)}))
    return model, history


# ----------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """``python -m ussnb.train --anchors DIR [--val-anchors DIR] --out DIR [--config JSON]``; under
    ``torchrun`` every process joins a (gloo on CPU) process group first. A user mistake (unknown preset or
    setting, missing anchors, a bad value) is one ``error:`` line and exit status 2, not a traceback."""
    from .errors import UssnbError

    try:
        return _main(argv)
    except UssnbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"error: --config is neither a JSON object nor a JSON file: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ussnb.train", description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", required=True, help="cached training anchor set (stage 02 output)")
    parser.add_argument("--val-anchors", help="cached validation anchor set")
    parser.add_argument("--out", required=True, help="output folder (state.pt, separator.pt, history.json)")
    parser.add_argument("--preset", help="take the settings of stage 04 from this pipeline preset (smoke, cpu, paper "
                                         "or a YAML file); --config and -p values go on top")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, as for `ussnb pipeline -p` (repeatable)")
    parser.add_argument("--config", default="{}", help="TrainConfig fields as JSON (or a path to a JSON file)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: the cores available, shared among the local "
                             "torchrun processes)")
    parser.add_argument("--prefetch", type=int, default=0, metavar="N",
                        help="assemble N batches ahead in a background thread (same batches and losses; "
                             "default 0)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                        help="end this call after STEPS more steps, without finishing the run (a later call "
                             "resumes; also on another number of processes)")
    parser.add_argument("--compile", action="store_true",
                        help="run the training forward under torch.compile (inductor; compiles at start, "
                             "tens of seconds on 2 cores)")
    from .cli import add_device_options

    add_device_options(parser)
    args = parser.parse_args(argv)
    if args.prefetch < 0 or (args.stop_after is not None and args.stop_after < 1):
        parser.error("--prefetch must be >= 0 and --stop-after >= 1")
    text = Path(args.config).read_text() if os.path.isfile(args.config) else args.config
    from .pipeline import load_preset, parse_overrides, section_values

    extra = json.loads(text) | parse_overrides(args.param)
    unknown = sorted(set(extra) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        parser.error(f"unknown TrainConfig field(s) {unknown}; fields: {', '.join(TrainConfig.__dataclass_fields__)}")
    cfg = TrainConfig.from_params((section_values(load_preset(args.preset), "train") if args.preset else {}) | extra)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    from .runtime import available_cores, check_precision, configure_threads, resolve_device

    device = resolve_device(args.device)
    if distributed and device.type == "cuda":  # one GPU per process: torchrun's LOCAL_RANK picks it
        device = resolve_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(device)
    precision = check_precision(args.precision, device)

    threads = args.threads
    if not threads and distributed:  # N local processes share the cores
        threads = max(1, available_cores() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    configure_threads(threads)
    if distributed:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        _, history = train_separator(args.anchors, args.val_anchors, args.out, cfg,
                                     progress=int(os.environ.get("RANK", "0")) == 0, device=device,
                                     precision=precision, prefetch=args.prefetch, stop_after=args.stop_after,
                                     compile=args.compile)
        rank = int(os.environ.get("RANK", "0"))
        with torch.no_grad():
            param_sum = float(sum(p.double().sum() for p in _.parameters()))
        (Path(args.out) / f"losses_rank{rank}.json").write_text(
            json.dumps({"losses": [h["loss"] for h in history], "param_sum": param_sum}))
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

