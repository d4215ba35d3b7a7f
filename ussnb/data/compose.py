"""Lay single-class source events into AudioSet-style weakly labelled clips.

Each clip is ``clip_seconds`` long at ``sample_rate``: a quiet background, 1-3 *labelled* events at random
times (each of a different class), and — with probability ``p_unlabelled`` — one more event whose class is
*not* in the clip's tags (AudioSet's missing labels). Only the clip-level tags are written beside the audio
(``<split>/metadata.jsonl``, readable by Hugging Face ``audiofolder``); the true onsets/offsets go to a
separate ``events.jsonl`` that training code never reads, so anchor mining can be measured.

Splits are made **by source recording**: every recording (the ``recording`` field of its events) goes to
exactly one of train / validation / test, chosen per class so each class appears in every split when it
has enough recordings.
"""
from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..audio import load_audio, save_audio
from ..errors import DataError
from ..io import stable_seed

SPLITS = ("train", "validation", "test")
MARKER = ".complete"


@dataclass(frozen=True)
class SourceEvent:
    """One single-class sound event available for composing clips.

    Attributes:
        path: audio file (anything :func:`ussnb.audio.load_audio` reads).
        mid: AudioSet MID of its class, e.g. ``"/m/0bm02"``.
        label: AudioSet display name of the class.
        recording: id of the source recording; all excerpts of one recording share it (the split unit).
        source: package / dataset it comes from.
        licence: licence of the recording.
        start, end: excerpt bounds within the file, seconds (``end=None`` = to the end).
    """

    path: str
    mid: str
    label: str
    recording: str
    source: str
    licence: str
    start: float = 0.0
    end: float | None = None


def assign_splits(
    events: Sequence[SourceEvent],
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> dict[str, str]:
    """Map each recording id to a split, per class, deterministically from ``seed``.

    Per class the recordings are shuffled and cut by ``fractions`` (default 70/10/20 %), giving at least one
    recording to validation and test when the class has ≥ 3 recordings. A recording that carries several
    classes keeps the first split it was given."""
    fractions = fractions or {"train": 0.7, "validation": 0.1, "test": 0.2}
    by_class: dict[str, list[str]] = defaultdict(list)
    for ev in events:
        if ev.recording not in by_class[ev.mid]:
            by_class[ev.mid].append(ev.recording)
    assignment: dict[str, str] = {}
    for mid in sorted(by_class):
        recs = sorted(r for r in by_class[mid] if r not in assignment)
        rng = np.random.default_rng(stable_seed(seed, mid))
        rng.shuffle(recs)
        n = len(recs)
        n_val = max(1, int(round(fractions["validation"] * n))) if n >= 3 else 0
        n_test = max(1, int(round(fractions["test"] * n))) if n >= 3 else 0
        for i, rec in enumerate(recs):
            split = "test" if i < n_test else "validation" if i < n_test + n_val else "train"
            assignment[rec] = split
    return assignment


class _EventCache:
    """Loads event excerpts once (trimmed, peak-normalised to a fixed level)."""

    def __init__(self, sample_rate: int, max_seconds: float):
        self.sr = sample_rate
        self.max_seconds = max_seconds
        self._cache: dict[SourceEvent, np.ndarray] = {}

    def get(self, ev: SourceEvent) -> np.ndarray:
        wave = self._cache.get(ev)
        if wave is None:
            duration = None if ev.end is None else max(0.0, ev.end - ev.start)
            wave = load_audio(ev.path, self.sr, start=ev.start, duration=duration)
            wave = trim_silence(wave, self.sr)[: int(self.max_seconds * self.sr)]
            peak = float(np.max(np.abs(wave))) if wave.size else 0.0
            if peak <= 1e-6:
                raise DataError(f"{ev.path}: event is silent after trimming")
            wave = (wave / peak).astype(np.float32)
            self._cache[ev] = wave
        return wave


def trim_silence(wave: np.ndarray, sr: int, *, threshold_db: float = -45.0, frame: float = 0.02) -> np.ndarray:
    """Cut leading/trailing frames whose RMS is ``threshold_db`` below the loudest frame."""
    hop = max(1, int(frame * sr))
    n = wave.shape[0] // hop
    if n < 2:
        return wave
    rms = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > threshold_db)[0]
    if loud.size == 0:
        return wave
    return wave[loud[0] * hop: (loud[-1] + 1) * hop]


def quiet_background(n: int, rng: np.random.Generator, level_db: tuple[float, float] = (-55.0, -40.0)) -> np.ndarray:
    """Low-level coloured (1/f-ish) noise, RMS drawn in ``level_db`` dBFS."""
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(white)
    f = np.arange(spectrum.shape[0], dtype=np.float64)
    spectrum /= np.sqrt(np.maximum(f, 1.0))
    noise = np.fft.irfft(spectrum, n)
    noise /= np.sqrt(np.mean(noise ** 2)) + 1e-12
    return (noise * 10 ** (rng.uniform(*level_db) / 20)).astype(np.float32)


def compose_weak_dataset(
    events: Sequence[SourceEvent],
    out_dir: str | Path,
    *,
    name: str,
    n_clips: dict[str, int],
    seed: int = 0,
    sample_rate: int = 32000,
    clip_seconds: float = 10.0,
    events_per_clip: tuple[int, int] = (1, 3),
    p_unlabelled: float = 0.2,
    max_event_seconds: float = 4.0,
    event_gain_db: tuple[float, float] = (-16.0, -4.0),
    split_of: dict[str, str] | None = None,
    extra_info: dict | None = None,
    marker_params: dict | None = None,
    progress: bool = True,
) -> Path:
    """Write a weakly labelled dataset of composed clips to ``out_dir`` and return it.

    Layout::

        out_dir/
          train/ validation/ test/      <clip_id>.flac (16-bit, mono, sample_rate) + metadata.jsonl
                                        ({"file_name", "clip_id", "labels": [MIDs]})
          events.jsonl                  hidden truth: {"clip_id", "split", "events": [{"mid", "label",
                                        "onset", "offset", "labelled", "recording", "source"}]}
          info.json                     classes, counts per split, hours, sources, parameters
          .complete                     marker (written last)

    Deterministic: the same events, parameters and ``seed`` give the same clips, byte for byte.
    ``split_of`` maps recordings to splits (default: :func:`assign_splits`). ``marker_params`` is stored in
    the completion marker so a recipe can tell whether an existing folder was made with its parameters
    (:func:`is_complete`); it defaults to the composition parameters.
    """
    from ..progress import progress_bar

    out_dir = Path(out_dir)
    if not events:
        raise DataError("no source events to compose clips from")
    split_of = split_of or assign_splits(events, seed=seed)
    pools: dict[str, dict[str, list[SourceEvent]]] = {s: defaultdict(list) for s in SPLITS}
    for ev in events:
        pools[split_of[ev.recording]][ev.mid].append(ev)
    labels = {ev.mid: ev.label for ev in events}

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    cache = _EventCache(sample_rate, max_event_seconds)
    n_samples = int(round(clip_seconds * sample_rate))
    truth_lines = []
    total = sum(n_clips.get(s, 0) for s in SPLITS)
    bar = progress_bar(total=total, desc=f"composing {name}", unit="clip", disable=not progress)
    for split in SPLITS:
        count = n_clips.get(split, 0)
        if count == 0:
            continue
        classes = sorted(pools[split])
        if len(classes) < 2:
            raise DataError(f"split '{split}' has {len(classes)} class(es); need at least 2 to compose clips")
        split_dir = out_dir / split
        split_dir.mkdir()
        rng = np.random.default_rng(stable_seed(seed, "clips", split))
        # balanced class order: every class leads equally often
        order: list[str] = []
        meta_lines = []
        for i in range(count):
            if not order:
                order = list(rng.permutation(classes))
            lead = order.pop()
            k = int(rng.integers(events_per_clip[0], events_per_clip[1] + 1))
            others = [c for c in classes if c != lead]
            chosen = [lead] + list(rng.choice(others, size=min(k - 1, len(others)), replace=False))
            unlabelled = None
            rest = [c for c in classes if c not in chosen]
            if rest and rng.random() < p_unlabelled:
                unlabelled = str(rng.choice(rest))
            mix = quiet_background(n_samples, rng)
            placed = []
            for cls, is_labelled in [(c, True) for c in chosen] + ([(unlabelled, False)] if unlabelled else []):
                pool = pools[split][cls]
                ev = pool[int(rng.integers(len(pool)))]
                wave = cache.get(ev)
                length = min(wave.shape[0], n_samples)
                onset = int(rng.integers(0, n_samples - length + 1))
                gain = 10 ** (rng.uniform(*event_gain_db) / 20)
                mix[onset:onset + length] += gain * wave[:length]
                placed.append({
                    "mid": cls, "label": labels[cls], "onset": round(onset / sample_rate, 5),
                    "offset": round((onset + length) / sample_rate, 5), "labelled": is_labelled,
                    "recording": ev.recording, "source": ev.source,
                })
            peak = float(np.max(np.abs(mix)))
            if peak > 0.99:
                mix *= 0.99 / peak
            clip_id = f"{name}-{split}-{i:05d}"
            save_audio(split_dir / f"{clip_id}.flac", mix, sample_rate)
            tags = sorted({p["mid"] for p in placed if p["labelled"]})
            meta_lines.append({"file_name": f"{clip_id}.flac", "clip_id": clip_id, "labels": tags})
            truth_lines.append({"clip_id": clip_id, "split": split, "events": placed})
            bar.update(1)
        write_jsonl(split_dir / "metadata.jsonl", meta_lines)
    bar.close()
    write_jsonl(out_dir / "events.jsonl", truth_lines)

    info = summarise_events(events, split_of)
    info.update({
        "name": name, "sample_rate": sample_rate, "clip_seconds": clip_seconds,
        "n_clips": {s: n_clips.get(s, 0) for s in SPLITS},
        "hours": round(total * clip_seconds / 3600, 4),
        "params": {"seed": seed, "events_per_clip": list(events_per_clip), "p_unlabelled": p_unlabelled,
                   "max_event_seconds": max_event_seconds, "event_gain_db": list(event_gain_db)},
    })
    if extra_info:
        info.update(extra_info)
    (out_dir / "info.json").write_text(json.dumps(info, indent=1))
    if marker_params is None:
        marker_params = info["params"] | {"n_clips": info["n_clips"]}
    (out_dir / MARKER).write_text(json.dumps(marker_params))
    return out_dir


def summarise_events(events: Iterable[SourceEvent], split_of: dict[str, str]) -> dict:
    """Per-class and per-source counts of recordings and events."""
    classes: dict[str, dict] = {}
    sources: dict[str, dict] = {}
    for ev in events:
        c = classes.setdefault(ev.mid, {"mid": ev.mid, "name": ev.label, "recordings": set(), "events": 0,
                                        "sources": set(), "splits": defaultdict(set)})
        c["recordings"].add(ev.recording)
        c["events"] += 1
        c["sources"].add(ev.source)
        c["splits"][split_of[ev.recording]].add(ev.recording)
        s = sources.setdefault(ev.source, {"source": ev.source, "licences": set(), "events": 0,
                                           "recordings": set(), "classes": set()})
        s["licences"].add(ev.licence)
        s["events"] += 1
        s["recordings"].add(ev.recording)
        s["classes"].add(ev.mid)
    class_rows = [
        {"mid": c["mid"], "name": c["name"], "n_recordings": len(c["recordings"]), "n_events": c["events"],
         "sources": sorted(c["sources"]),
         "recordings_per_split": {s: len(c["splits"].get(s, ())) for s in SPLITS}}
        for c in sorted(classes.values(), key=lambda c: c["name"].lower())
    ]
    source_rows = [
        {"source": s["source"], "licences": sorted(s["licences"]), "n_events": s["events"],
         "n_recordings": len(s["recordings"]), "n_classes": len(s["classes"])}
        for s in sorted(sources.values(), key=lambda s: s["source"])
    ]
    return {
        "n_classes": len(class_rows),
        "classes": class_rows,
        "labels": [c["mid"] for c in class_rows],
        "sources": source_rows,
        "n_packages": len(source_rows),
        "min_recordings_per_class": min((c["n_recordings"] for c in class_rows), default=0),
    }


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Write rows as JSON lines atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def is_complete(out_dir: str | Path, params: dict | None = None) -> bool:
    """True if ``out_dir`` holds a finished dataset (and, if given, made with ``params``)."""
    marker = Path(out_dir) / MARKER
    if not marker.is_file():
        return False
    if params is None:
        return True
    try:
        return json.loads(marker.read_text()) == json.loads(json.dumps(params))
    except json.JSONDecodeError:
        return False


__all__ = ["SourceEvent", "SPLITS", "assign_splits", "compose_weak_dataset", "is_complete",
           "quiet_background", "trim_silence", "summarise_events"]
