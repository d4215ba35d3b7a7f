"""Anchor mining, mixtures and the cached anchor set (paper §3.3, Algorithm 1, eq. 3-4).

Anchor score (eq. 3): for the sampled class k, the area under the SED frame probabilities over a window of
τ seconds centred at t,  q_k(t) = Σ_{|t'-t| ≤ τ/2} p_SED(t', k);  anchor centre (eq. 4): t* = argmax_t q_k(t),
clamped so the τ-second segment lies inside the clip. The scoring window may differ from τ (``score_window``
seconds): the 2021 zero-shot system sums HTS-AT's frame outputs over a fixed 200-frame window (200 of its 1024
frames per 10 s = 1.953 s) and crops the anchor around that window's centre. Strategies:

- ``sed``: the above.
- ``in-clip-random``: random segments of the clip; the *mixture partner* is another random segment of the
  *same* clip (the paper's weakest baseline: both segments share the clip's classes).
- ``out-clip-random``: a random segment of the clip, mixed with a random segment of *another* clip.

Mixtures (Algorithm 1): anchors of B distinct classes (balanced sampling) are mixed J at a time
(x = s_i + Σ_j r_j s_j); the optional step 3 re-pairs them so no two mixed anchors share a class the
tagger detects above θ. The cached anchor set stores, per (clip, tag), the anchor start, its score and its
condition vectors, so training never runs the tagger.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import soundfile as sf

from .errors import ConfigError, DataError
from .io import atomic_path, atomic_write_text

STRATEGIES = ("sed", "in-clip-random", "out-clip-random")
AUGMENTATIONS = ("none", "random-gain", "match-energy")
EPS = 1e-10
HTSAT_2021_WINDOW = 200 * 10.0 / 1024  # the 2021 repo's 200-frame window of HTS-AT's 1024 frames per 10 s (s)


# ----------------------------------------------------------------------------------------------- eq. 3-4
def window_frames(duration: float, frame_rate: float) -> int:
    """Frames in a τ-second window (odd, so it has a centre frame)."""
    n = int(round(duration * frame_rate))
    return n + 1 if n % 2 == 0 else n


def anchor_scores(probs: np.ndarray, duration: float, frame_rate: float = 100.0) -> np.ndarray:
    """Eq. 3: the area under ``probs`` ``(frames,)`` over a τ-second window centred at each frame.

    The curve is edge-padded (replicate) by half a window on each side, as the reference does, so the
    score is defined at every frame; clamping (eq. 4) keeps the chosen segment inside the clip."""
    probs = np.asarray(probs, dtype=np.float64)
    w = window_frames(duration, frame_rate)
    half = w // 2
    padded = np.pad(probs, half, mode="edge")
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    return (csum[w:] - csum[:-w]) / frame_rate  # seconds × probability


def sed_anchor(
    probs: np.ndarray,
    duration: float,
    clip_samples: int,
    sample_rate: int,
    frame_rate: float = 100.0,
    score_window: float | None = None,
) -> tuple[int, float]:
    """Eq. 4: start sample and score of the τ-second anchor for one class's frame probabilities.

    ``score_window``: seconds of the window whose area is maximised (default τ, the paper's eq. 3; the 2021
    system: 200 HTS-AT frames = 1.953 s, :data:`HTSAT_2021_WINDOW`). The anchor is τ seconds centred there.
    Returns ``(start, score)`` with ``0 ≤ start ≤ clip_samples − τ·sr`` (the whole clip if it is shorter)."""
    if not 0.0 < duration:
        raise ConfigError(f"anchor duration must be positive, got {duration}")
    if score_window is not None and not 0.0 < score_window <= 10.0:
        raise ConfigError(f"the anchor scoring window must be within (0, 10] s, got {score_window}")
    scores = anchor_scores(probs, score_window or duration, frame_rate)
    # argmax; on a plateau (an event shorter than τ gives one) take its middle, centring the event
    best = np.flatnonzero(scores >= scores.max() - 1e-9)
    centre_frame = int(best[len(best) // 2])
    seg = int(round(duration * sample_rate))
    start = int(round(centre_frame / frame_rate * sample_rate)) - seg // 2
    return clamp_start(start, seg, clip_samples), float(scores[centre_frame])


def clamp_start(start: int, segment: int, clip_samples: int) -> int:
    """Clamp so ``[start, start + segment)`` lies inside ``[0, clip_samples)`` (start 0 if it cannot)."""
    return int(min(max(start, 0), max(clip_samples - segment, 0)))


def random_start(segment: int, clip_samples: int, rng: np.random.Generator) -> int:
    """Uniform start of a segment anywhere in the clip (unlike the reference's first-3-s bug)."""
    return int(rng.integers(0, max(clip_samples - segment, 0) + 1))


def partner_start(start: int, segment: int, clip_samples: int, rng: np.random.Generator) -> int:
    """``in-clip-random``'s mixture partner: the start of another uniformly random segment of the *same* clip
    that does not overlap the anchor ``[start, start + segment)`` — when the clip has room for both; in a clip
    shorter than two segments any other start (or the same one, for a clip no longer than one segment)."""
    last = max(clip_samples - segment, 0)
    before = max(start - segment + 1, 0)  # starts 0 … start − segment
    after = max(last - (start + segment) + 1, 0)  # starts start + segment … last
    if before + after == 0:
        others = [s for s in range(last + 1) if s != start]
        return int(rng.choice(others)) if others else int(start)
    i = int(rng.integers(before + after))
    return i if i < before else start + segment + (i - before)


def segment_precision(start_s: float, duration: float, events: Sequence[tuple[float, float]],
                      min_fraction: float = 0.5) -> bool:
    """True if the segment overlaps the class's true events by at least ``min_fraction`` of the shorter of
    (segment, event) — so a 2 s anchor holding a 0.3 s drum hit entirely counts, as does a 2 s anchor that
    lies inside a long event. Overlaps with several events of the class are added up."""
    end_s = start_s + duration
    overlap = sum(max(0.0, min(end_s, off) - max(start_s, on)) for on, off in events)
    shortest = min(duration, sum(off - on for on, off in events)) if events else duration
    return overlap >= min_fraction * shortest - 1e-9


# ----------------------------------------------------------------------------------------------- anchors
@dataclass
class Anchor:
    """One mined anchor: a τ-second segment of a clip for one of its tags."""

    clip: int  # clip position in its split
    label: int  # class column
    start: int  # sample offset in the clip
    score: float  # eq. 3 area (NaN for random strategies)


def mine_clip(
    strategy: str,
    labels: Sequence[int],
    clip_samples: int,
    sample_rate: int,
    duration: float,
    rng: np.random.Generator,
    frames: np.ndarray | None = None,
    frame_rate: float = 100.0,
    clip: int = 0,
    score_window: float | None = None,
) -> list[Anchor]:
    """Anchors of one clip for each of ``labels``. ``frames`` ``(frames, classes)`` is needed for ``sed``;
    ``score_window`` as in :func:`sed_anchor`."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown anchor strategy {strategy!r}; choose from {STRATEGIES}")
    if not 0.5 <= duration <= 10.0:
        raise ConfigError(f"anchor duration τ must be within 0.5 … 10 s, got {duration}")
    segment = int(round(duration * sample_rate))
    out = []
    for k in labels:
        if strategy == "sed":
            if frames is None:
                raise ValueError("the 'sed' strategy needs frame probabilities")
            start, score = sed_anchor(frames[:, k], duration, clip_samples, sample_rate, frame_rate, score_window)
        else:
            start, score = random_start(segment, clip_samples, rng), float("nan")
        out.append(Anchor(clip, int(k), start, score))
    return out


def mining_precision(
    dataset,
    split: str,
    frames: dict[str, np.ndarray] | None,
    *,
    strategies: Sequence[str] = STRATEGIES,
    durations: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    frame_rate: float = 100.0,
    seed: int = 0,
    random_draws: int = 5,
) -> dict[str, dict[str, float]]:
    """Fraction of anchors whose segment overlaps a true event of their class (:func:`segment_precision`),
    per strategy and τ, over every (clip, tag) of ``split``. Needs the dataset's hidden true event times.

    ``frames`` maps clip id → ``(frames, classes)`` SED probabilities (needed for ``sed``). The random
    strategies draw ``random_draws`` segments per (clip, tag) and average; ``in-clip-random`` and
    ``out-clip-random`` pick the *anchor* the same way (they differ in the mixture partner), so their
    precision agrees up to sampling noise."""
    truth = dataset.true_events(split)
    sr = dataset.sample_rate
    clip_samples = int(round(dataset.clip_seconds * sr))
    out: dict[str, dict[str, float]] = {}
    for strategy in strategies:
        out[strategy] = {}
        for duration in durations:
            rng = np.random.default_rng([seed, STRATEGIES.index(strategy), int(duration * 1000)])
            hits, total = 0.0, 0
            for clip in dataset.clips(split):
                events = truth.get(clip.clip_id, [])
                for mid in clip.labels:
                    k = dataset.label_index[mid]
                    spans = [(e["onset"], e["offset"]) for e in events if e["mid"] == mid]
                    if strategy == "sed":
                        start, _ = sed_anchor(frames[clip.clip_id][:, k], duration, clip_samples, sr, frame_rate)
                        hits += segment_precision(start / sr, duration, spans)
                    else:
                        seg = int(round(duration * sr))
                        hits += np.mean([segment_precision(random_start(seg, clip_samples, rng) / sr, duration, spans)
                                         for _ in range(random_draws)])
                    total += 1
            out[strategy][str(float(duration))] = round(hits / max(total, 1), 4)
    return out


# ----------------------------------------------------------------------------------------------- mixing
def energy(x: np.ndarray) -> np.ndarray:
    return np.sum(np.asarray(x, dtype=np.float64) ** 2, axis=-1)


def mix_sources(
    sources: np.ndarray,
    *,
    n_targets: int = 1,
    augmentation: str = "match-energy",
    rng: np.random.Generator | None = None,
    clamp: tuple[float, float] = (0.02, 50.0),
    gain_db: float = 20.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mix J sources into one mixture whose target is the sum of the first ``n_targets``.

    Args:
        sources: ``(J, samples)`` anchors; J = 2, 3 or 4.
        augmentation: ``none`` (plain sum), ``random-gain`` (each source scaled by U(±gain_db) dB) or
            ``match-energy`` (each interferer j scaled by r = sqrt(E_target / E_j), clamped to ``clamp``:
            0 dB mixtures, the paper's choice).

    Returns:
        ``(mixture (samples,), target (samples,), gains (J,))``. Silent interferers keep gain 0 rather than
        dividing by zero; a silent target raises ``ValueError`` (callers skip such anchors beforehand).
    """
    sources = np.asarray(sources, dtype=np.float32)
    J = sources.shape[0]
    if not 2 <= J <= 4:
        raise ConfigError(f"mix 2, 3 or 4 sources, got {J}")
    if not 1 <= n_targets < J:
        raise ConfigError(f"n_targets must be in 1 … J-1 = {J - 1}, got {n_targets}")
    if augmentation not in AUGMENTATIONS:
        raise ConfigError(f"unknown augmentation {augmentation!r}; choose from {AUGMENTATIONS}")
    e = energy(sources)
    if e[:n_targets].sum() <= EPS:
        raise ValueError("the target anchor is silent")
    gains = np.ones(J, dtype=np.float64)
    if augmentation == "random-gain":
        rng = rng or np.random.default_rng()
        gains = 10 ** (rng.uniform(-gain_db, gain_db, size=J) / 20)
    elif augmentation == "match-energy":
        e_target = energy(sources[:n_targets].sum(axis=0))
        for j in range(n_targets, J):
            gains[j] = 0.0 if e[j] <= EPS else float(np.clip(math.sqrt(e_target / e[j]), *clamp))
    scaled = sources * gains[:, None].astype(np.float32)
    target = scaled[:n_targets].sum(axis=0)
    mixture = scaled.sum(axis=0)
    return mixture, target, gains


def detected_sets(probs: np.ndarray, labels: Sequence[int], threshold: float) -> list[set[int]]:
    """Classes the tagger detects (≥ θ) in each anchor, plus the anchor's own class."""
    return [set(np.nonzero(p >= threshold)[0].tolist()) | {int(k)} for p, k in zip(probs, labels)]


def group_disjoint(sets: Sequence[set[int]], n_sources: int, rng: np.random.Generator | None = None,
                   ) -> list[list[int]]:
    """Algorithm 1 step 3: for each anchor i (as target) pick ``n_sources − 1`` partners such that no two
    anchors in the group share a detected class. Anchors without enough compatible partners are dropped.
    Returns groups of anchor positions, target first."""
    n = len(sets)
    groups = []
    for i in range(n):
        order = [(i + d) % n for d in range(1, n)]
        if rng is not None:
            rng.shuffle(order)
        group, used = [i], set(sets[i])
        for j in order:
            if len(group) == n_sources:
                break
            if not (sets[j] & used):
                group.append(j)
                used |= sets[j]
        if len(group) == n_sources:
            groups.append(group)
    return groups


def roll_groups(n: int, n_sources: int) -> list[list[int]]:
    """The reference pairing without step 3: anchor i mixed with i+1 … i+J−1 (mod B)."""
    return [[(i + d) % n for d in range(n_sources)] for i in range(n)]


# ----------------------------------------------------------------------------------------------- cache
SED_FRAMES_VERSION = 1


def tag_frames(tagger, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Frame probabilities ``(frames, classes)`` of each wave, tagged in one forward pass (zero-padded to the
    longest, each cut back to its own frame count)."""
    n = max(w.shape[0] for w in waves)
    frames = tagger.tag(np.stack([np.pad(w, (0, n - w.shape[0])) for w in waves])).frames.cpu().numpy()
    return [frames[j, : tagger.num_frames(w.shape[0])] for j, w in enumerate(waves)]


class SedFrames:
    """The run tagger's frame probabilities ``p_SED(t, k)`` of one split's clips for *each clip's tagged classes*
    (all that mining reads: eq. 3 scores the clip's own tags), written once by stage 01 so every anchor mining of
    the run — every arm of a sweep, whatever its τ or strategy — reads them instead of tagging the clips again.

    ``SedFrames.write(path, tagger, dataset, split)`` tags the split (float32, ``batch_size`` clips per forward
    pass); ``SedFrames.load(path, dataset, split, tagger_name)`` returns them, or ``None`` (with the reason in
    ``SedFrames.why_not``) when the file is missing or was written for other clips or another tagger. ``frames
    [clip_id]`` is a ``(frames, classes)`` float32 array whose untagged columns are zero."""

    why_not = ""

    def __init__(self, arrays: dict, n_classes: int, clip_ids: Sequence[str]):
        self.arrays, self.n_classes = arrays, int(n_classes)
        self.row = {c: i for i, c in enumerate(clip_ids)}

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self.row

    def __len__(self) -> int:
        return len(self.row)

    def __getitem__(self, clip_id: str) -> np.ndarray:
        i = self.row[clip_id]
        n = int(self.arrays["lengths"][i])
        out = np.zeros((n, self.n_classes), dtype=np.float32)
        for j, k in enumerate(self.arrays["classes"][i]):
            if k >= 0:
                out[:, k] = self.arrays["frames"][i, :n, j]
        return out

    @staticmethod
    def _identity(dataset, split: str, tagger_name: str) -> dict:
        return {"version": SED_FRAMES_VERSION, "dataset": str(dataset.root), "split": split, "tagger": tagger_name,
                "labels": list(dataset.labels), "clip_ids": [c.clip_id for c in dataset.clips(split)]}

    @classmethod
    def write(cls, path: str | os.PathLike, tagger, dataset, split: str, *, batch_size: int = 8,
              progress: bool = True) -> Path:
        import torch
        from .progress import progress_bar

        clips = dataset.clips(split)
        width = max([len(c.labels) for c in clips] + [1])
        cols = np.full((len(clips), width), -1, dtype=np.int32)
        lengths = np.zeros(len(clips), dtype=np.int64)
        chunks: list[np.ndarray] = []
        bar = progress_bar(total=len(clips), desc=f"SED frames ({split})", unit="clip", disable=not progress)
        for lo in range(0, len(clips), batch_size):
            group = clips[lo:lo + batch_size]
            waves = [dataset.load(c) for c in group]
            with torch.inference_mode():
                frames = tag_frames(tagger, waves)
            for j, (c, f) in enumerate(zip(group, frames)):
                i = lo + j
                ks = [dataset.label_index[m] for m in c.labels]
                lengths[i] = f.shape[0]
                cols[i, :len(ks)] = ks
                block = np.zeros((f.shape[0], width), dtype=np.float32)
                block[:, :len(ks)] = f[:, ks]
                chunks.append(block)
            bar.update(len(group))
        bar.close()
        T = max([c.shape[0] for c in chunks] + [1])
        stacked = np.stack([np.pad(c, ((0, T - c.shape[0]), (0, 0))) for c in chunks]) if chunks else \
            np.zeros((0, 1, width), np.float32)
        identity = cls._identity(dataset, split, getattr(tagger, "name", type(tagger).__name__))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(Path(path)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, frames=stacked, classes=cols, lengths=lengths, identity=np.array(json.dumps(identity)))
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, dataset, split: str, tagger_name: str) -> "SedFrames | None":
        path = Path(path)
        if not path.is_file():
            cls.why_not = f"{path.name} not found"
            return None
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("frames", "classes", "lengths")}
            identity = json.loads(str(z["identity"]))
        want = cls._identity(dataset, split, tagger_name)
        if identity != want:
            differ = sorted(k for k in want if identity.get(k) != want[k])
            cls.why_not = f"{path.name} was written for another {' / '.join(differ)}"
            return None
        cls.why_not = ""
        return cls(arrays, len(dataset.labels), want["clip_ids"])


class AnchorSet:
    """A cached anchor set: one anchor per (clip, tag) of a split, with its condition vectors.

    Files in ``folder``: ``anchors.npz`` (``clip``, ``label``, ``start``, ``score`` and one array per
    condition type, e.g. ``cond_soft`` ``(anchors, classes)``, ``cond_embedding`` ``(anchors, H)``) and
    ``anchors.json`` (dataset path, split, strategy, duration, sample rate, tagger, label list).
    While mining, finished parts are kept in ``parts/`` so an interrupted run resumes where it stopped.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        meta_path = self.folder / "anchors.json"
        if not meta_path.is_file():
            raise DataError(f"{self.folder}: no cached anchor set (anchors.json); mine one first")
        self.meta = json.loads(meta_path.read_text())
        with np.load(self.folder / "anchors.npz") as z:
            self.arrays = {k: z[k] for k in z.files}
        self.clip = self.arrays["clip"]
        self.label = self.arrays["label"]
        self.start = self.arrays["start"]
        self.score = self.arrays["score"]
        self.partner = self.arrays.get("partner")  # in-clip-random: each anchor's mixture partner (start, same clip)
        self.paths: list[str] = self.meta["clip_paths"]
        self.sample_rate = int(self.meta["sample_rate"])
        self.segment = int(round(self.meta["duration"] * self.sample_rate))
        self._files: dict[int, sf.SoundFile] = {}

    def __len__(self) -> int:
        return int(self.clip.shape[0])

    @property
    def condition_types(self) -> list[str]:
        return [k[5:] for k in self.arrays if k.startswith("cond_")]

    def conditions(self, kind: str) -> np.ndarray:
        if f"cond_{kind}" not in self.arrays:
            raise DataError(f"anchor set has no '{kind}' conditions (has: {', '.join(self.condition_types)})")
        return self.arrays[f"cond_{kind}"]

    def by_class(self) -> dict[int, np.ndarray]:
        return {int(k): np.nonzero(self.label == k)[0] for k in np.unique(self.label)}

    def segment_audio(self, i: int, partner: bool = False) -> np.ndarray:
        """``(segment,)`` float32 audio of anchor ``i`` (or, with ``partner``, of its in-clip mixture partner),
        read from its clip file (no decoding of the rest)."""
        if partner and self.partner is None:
            raise DataError(f"{self.folder}: anchors mined with {self.meta.get('strategy')!r} have no in-clip partner")
        path = self.paths[int(self.clip[i])]
        with sf.SoundFile(path) as f:
            if f.samplerate != self.sample_rate:
                raise DataError(f"{path}: {f.samplerate} Hz, the anchor set expects {self.sample_rate} Hz")
            f.seek(int((self.partner if partner else self.start)[i]))
            x = f.read(self.segment, dtype="float32", always_2d=True).mean(axis=1)
        if x.shape[0] < self.segment:
            x = np.pad(x, (0, self.segment - x.shape[0]))
        return x


def mine_anchor_set(
    dataset,
    split: str,
    out_dir: str | os.PathLike,
    *,
    strategy: str = "sed",
    duration: float = 2.0,
    tagger=None,
    condition_types: Sequence[str] = ("soft", "embedding"),
    seed: int = 0,
    part_size: int = 64,
    exclude_classes: Sequence[str] = (),
    progress: bool = True,
    tag_batch: int = 8,
    frames_out: dict | None = None,
    score_window: float | None = None,
    frames_in: "SedFrames | Mapping[str, np.ndarray] | None" = None,
) -> AnchorSet:
    """Mine one anchor per (clip, tag) over a split and store it with its conditions (resumable).

    ``tagger`` (a :class:`ussnb.taggers.Tagger` at the dataset's rate) gives the frame probabilities for
    ``sed`` and the ``soft`` / ``embedding`` conditions of each anchor segment. ``exclude_classes`` (MIDs)
    are left out entirely (zero-shot training holds them out). ``tag_batch`` clips are tagged per forward
    pass (frames), and all their anchors in one more (conditions); results do not depend on it beyond float
    rounding. ``frames_out``: a dict that receives ``{clip_id: (frames, classes) float16}`` of every clip tagged
    by this call (parts already on disk are not tagged again), so a caller need not tag the split twice.
    ``score_window``: seconds of the ``sed`` scoring window (default τ; see :func:`sed_anchor`). ``frames_in``:
    frame probabilities already computed (stage 01's :class:`SedFrames`, or ``{clip_id: (frames, classes)}``);
    clips found there are not tagged again (the tagger still computes the anchors' conditions)."""
    import torch
    from .progress import progress_bar

    out = Path(out_dir)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    clips = dataset.clips(split)
    excluded = {dataset.label_index[m] for m in exclude_classes if m in dataset.label_index}
    if tagger is None and (strategy == "sed" or condition_types):
        raise ValueError("a tagger is needed for the 'sed' strategy and for condition vectors")
    sr = dataset.sample_rate
    if tagger is not None and tagger.sample_rate != sr:
        raise DataError(f"tagger runs at {tagger.sample_rate} Hz, the dataset at {sr} Hz")
    settings = {"dataset": str(dataset.root), "split": split, "strategy": strategy, "duration": duration,
                "seed": seed, "conditions": list(condition_types), "exclude": sorted(exclude_classes),
                "tagger": getattr(tagger, "name", type(tagger).__name__) if tagger is not None else None}
    if score_window:  # recorded only when set, so runs mined with the paper's window keep their settings
        settings["score_window"] = float(score_window)
    if strategy == "in-clip-random":  # sets mined before the in-clip partner existed are mined again
        settings["partner"] = "in-clip"
    settings_path = out / "settings.json"
    if settings_path.is_file() and json.loads(settings_path.read_text()) != settings:
        for p in parts.glob("*.npz"):  # different settings: start over
            p.unlink()
    settings_path.write_text(json.dumps(settings, indent=1))
    n_parts = math.ceil(len(clips) / part_size)
    bar = progress_bar(total=len(clips), desc=f"mining anchors ({strategy}, τ={duration:g}s)", unit="clip",
               disable=not progress)
    for p in range(n_parts):
        part_path = parts / f"part-{p:05d}.npz"
        lo, hi = p * part_size, min(len(clips), (p + 1) * part_size)
        if part_path.is_file():
            bar.update(hi - lo)
            continue
        rng = np.random.default_rng([seed, p])
        partner_rng = np.random.default_rng([seed, p, 1])  # its own stream: in-clip and out-clip anchors agree
        rows: dict[str, list] = {"clip": [], "label": [], "start": [], "score": []}
        if strategy == "in-clip-random":
            rows["partner"] = []
        conds: dict[str, list] = {c: [] for c in condition_types}
        for g in range(lo, hi, tag_batch):  # clips are tagged in batches: one forward pass per batch
            group = []
            for ci in range(g, min(hi, g + tag_batch)):
                labels = [dataset.label_index[m] for m in clips[ci].labels if dataset.label_index[m] not in excluded]
                if labels:
                    group.append((ci, labels, dataset.load(clips[ci])))
            frames_of: list = [None] * len(group)
            if strategy == "sed" and group:
                known = frames_in if frames_in is not None else {}
                todo = [j for j, (ci, _, _) in enumerate(group) if clips[ci].clip_id not in known]
                for j, (ci, _, _) in enumerate(group):
                    if j not in todo:
                        frames_of[j] = known[clips[ci].clip_id]
                for j, f in zip(todo, tag_frames(tagger, [group[j][2] for j in todo]) if todo else []):
                    frames_of[j] = f
                if frames_out is not None:
                    for (ci, _, _), f in zip(group, frames_of):
                        frames_out[clips[ci].clip_id] = f.astype(np.float16)
            found, segs, partners = [], [], []
            for (ci, labels, wave), frames in zip(group, frames_of):
                anchors = mine_clip(strategy, labels, wave.shape[0], sr, duration, rng, frames,
                                    getattr(tagger, "frame_rate", 100.0), clip=ci, score_window=score_window or None)
                seg = int(round(duration * sr))
                for a in anchors:
                    found.append(a)
                    segs.append(_crop(wave, a.start, seg))
                    if "partner" in rows:
                        partners.append(partner_start(a.start, seg, wave.shape[0], partner_rng))
            if found:
                segs_a = np.stack(segs)
                keep = energy(segs_a) > EPS  # silent anchors are skipped
                if condition_types and keep.any():
                    with torch.inference_mode():
                        tags = tagger.tag(segs_a[keep], frames=False)
                    for c in condition_types:
                        conds[c].append(_condition_from_tags(tags, c))
                for i, (a, ok) in enumerate(zip(found, keep)):
                    if ok:
                        rows["clip"].append(a.clip)
                        rows["label"].append(a.label)
                        rows["start"].append(a.start)
                        rows["score"].append(a.score)
                        if "partner" in rows:
                            rows["partner"].append(partners[i])
            bar.update(min(hi, g + tag_batch) - g)
        arrays = {k: np.asarray(v) for k, v in rows.items()}
        for c in condition_types:
            arrays[f"cond_{c}"] = np.concatenate(conds[c]).astype(np.float32) if conds[c] else np.zeros((0, 0), np.float32)
        with atomic_path(part_path) as tmp:
            np.savez(tmp, **arrays)
    bar.close()
    merged: dict[str, list] = {}
    for p in range(n_parts):
        with np.load(parts / f"part-{p:05d}.npz") as z:
            for k in z.files:
                if z[k].size or k in ("clip", "label", "start", "score", "partner"):
                    merged.setdefault(k, []).append(z[k])
    arrays = {k: np.concatenate(v) for k, v in merged.items()}
    arrays["clip"] = arrays["clip"].astype(np.int64)
    arrays["label"] = arrays["label"].astype(np.int64)
    arrays["start"] = arrays["start"].astype(np.int64)
    if "partner" in arrays:
        arrays["partner"] = arrays["partner"].astype(np.int64)
    arrays["score"] = arrays["score"].astype(np.float32)
    with atomic_path(out / "anchors.npz") as tmp:
        np.savez(tmp, **arrays)
    meta = settings | {"sample_rate": sr, "labels": dataset.labels, "clip_paths": [str(c.path) for c in clips],
                       "clip_ids": [c.clip_id for c in clips], "n_anchors": int(arrays["clip"].shape[0]),
                       "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(out / "anchors.json", json.dumps(meta))
    return AnchorSet(out)


def _crop(wave: np.ndarray, start: int, seg: int) -> np.ndarray:
    x = wave[start:start + seg]
    return np.pad(x, (0, seg - x.shape[0])) if x.shape[0] < seg else x


def _condition_from_tags(tags, kind: str) -> np.ndarray:
    if kind == "soft":
        return tags.clip.detach().cpu().numpy()
    if kind == "embedding":
        return tags.embedding.detach().cpu().numpy()
    raise ValueError(f"cannot cache condition type {kind!r} (cache 'soft' or 'embedding')")


# ----------------------------------------------------------------------------------------------- batches
@dataclass
class MixtureBatch:
    """A training batch: ``mixture`` and ``target`` ``(batch, samples)``, the target's class ``label``
    ``(batch,)`` and ``condition`` ``(batch, dim)`` (the oracle condition of the target anchor)."""

    mixture: np.ndarray
    target: np.ndarray
    label: np.ndarray
    condition: np.ndarray | None
    sources: np.ndarray | None = None


def batch_from_cache(
    anchors: AnchorSet,
    picks: Sequence[int],
    *,
    n_sources: int = 2,
    augmentation: str = "match-energy",
    condition: str | None = "soft",
    rng: np.random.Generator | None = None,
    step3_threshold: float | None = None,
) -> MixtureBatch:
    """Assemble mixtures from cached anchors ``picks`` (distinct classes, e.g. from a balanced sampler):
    read the segments, group them (rolling, or disjoint detected classes when ``step3_threshold`` is set
    — using the cached ``soft`` tags), mix. Silent anchors and anchors without partners are skipped."""
    rng = rng or np.random.default_rng()
    segs = np.stack([anchors.segment_audio(i) for i in picks])
    labels = anchors.label[list(picks)]
    ok = energy(segs) > EPS
    segs, labels, idx = segs[ok], labels[ok], np.asarray(picks)[ok]
    if step3_threshold is not None:
        sets = detected_sets(anchors.conditions("soft")[idx], labels, step3_threshold)
        groups = group_disjoint(sets, n_sources, rng)
    else:
        groups = roll_groups(len(idx), n_sources) if len(idx) >= n_sources else []
    mixes, targets, labs, conds = [], [], [], []
    for g in groups:
        m, t, _ = mix_sources(segs[g], augmentation=augmentation, rng=rng)
        mixes.append(m)
        targets.append(t)
        labs.append(labels[g[0]])
        if condition is not None:
            conds.append(anchors.conditions(condition)[idx[g[0]]] if condition != "onehot"
                         else np.eye(len(anchors.meta["labels"]), dtype=np.float32)[labels[g[0]]])
    if not mixes:
        raise DataError("no mixture could be formed from this batch (all silent or no disjoint partners)")
    return MixtureBatch(np.stack(mixes), np.stack(targets), np.asarray(labs),
                        np.stack(conds) if conds else None)


def batch_on_the_fly(
    dataset,
    split: str,
    picks: Sequence[tuple[int, int]],
    tagger,
    *,
    duration: float = 2.0,
    strategy: str = "sed",
    n_sources: int = 2,
    augmentation: str = "match-energy",
    condition: str = "soft",
    rng: np.random.Generator | None = None,
) -> MixtureBatch:
    """Algorithm 1 without a cache: load the sampled clips, run the tagger for frame probabilities, mine,
    tag the anchors for their conditions, mix. ``picks`` are ``(class, clip)`` pairs of a balanced sampler."""
    import torch

    rng = rng or np.random.default_rng()
    clips = dataset.clips(split)
    waves = [dataset.load(clips[c]) for _, c in picks]
    sr = dataset.sample_rate
    seg = int(round(duration * sr))
    frames = None
    if strategy == "sed":
        with torch.inference_mode():
            frames = tagger.tag(np.stack(waves)).frames.cpu().numpy()
    segs = []
    for b, ((k, c), wave) in enumerate(zip(picks, waves)):
        a = mine_clip(strategy, [k], wave.shape[0], sr, duration, rng, None if frames is None else frames[b],
                      tagger.frame_rate, clip=c)[0]
        segs.append(_crop(wave, a.start, seg))
    segs = np.stack(segs)
    with torch.inference_mode():
        tags = tagger.tag(segs, frames=False)
    conds = _condition_from_tags(tags, condition)
    labels = np.asarray([k for k, _ in picks])
    mixes, targets = [], []
    for g in roll_groups(len(picks), n_sources):
        m, t, _ = mix_sources(segs[g], augmentation=augmentation, rng=rng)
        mixes.append(m)
        targets.append(t)
    return MixtureBatch(np.stack(mixes), np.stack(targets), labels, conds)


__all__ = [
    "AUGMENTATIONS", "Anchor", "AnchorSet", "MixtureBatch", "STRATEGIES", "SedFrames", "anchor_scores", "batch_from_cache",
    "batch_on_the_fly", "clamp_start", "detected_sets", "group_disjoint", "mine_anchor_set", "mine_clip",
    "mix_sources", "random_start", "roll_groups", "sed_anchor", "segment_precision",
]



def measure_cache_speedup(dataset, split: str, anchors: AnchorSet, tagger, *, batches: int = 3,
                          batch_size: int = 16, duration: float = 2.0, condition: str = "soft",
                          seed: int = 0) -> dict[str, float]:
    """Time assembling training batches on the fly (load clips, run the tagger, mine, tag anchors, mix)
    against reading them from the cached anchor set; both measured here, one after the other, in this run.
    Returns seconds per batch for each and ``speedup`` = on-the-fly / cached."""
    from .data.weak import BalancedSampler

    targets = dataset.targets(split)
    b = min(batch_size, int((targets.sum(0) > 0).sum()))
    sampler = BalancedSampler(targets, b, seed=seed)
    rng = np.random.default_rng(seed)
    by_class = anchors.by_class()
    classes = sorted(by_class)
    # one warm-up of each path so file caches and lazy initialisation do not count
    batch_on_the_fly(dataset, split, sampler.next_batch(), tagger, duration=duration, rng=rng, condition=condition)
    t0 = time.perf_counter()
    for _ in range(batches):
        batch_on_the_fly(dataset, split, sampler.next_batch(), tagger, duration=duration, rng=rng, condition=condition)
    fly = (time.perf_counter() - t0) / batches

    def cached_picks():
        ks = rng.choice(classes, size=min(b, len(classes)), replace=False)
        return [int(by_class[k][rng.integers(len(by_class[k]))]) for k in ks]

    batch_from_cache(anchors, cached_picks(), rng=rng, condition=condition)
    t0 = time.perf_counter()
    for _ in range(batches):
        batch_from_cache(anchors, cached_picks(), rng=rng, condition=condition)
    cached = (time.perf_counter() - t0) / batches
    return {"on_the_fly_seconds": fly, "cached_seconds": cached, "speedup": fly / cached}
