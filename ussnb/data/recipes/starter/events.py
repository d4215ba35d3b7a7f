"""The starter set's source events: every class's recordings found (samples, speech) or rendered (chorales),
cached as one event list per set of parameters; and their split, whole kits and speakers kept together."""
from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ....errors import DataError
from ....io import stable_seed
from ... import render
from ...compose import SPLITS, SourceEvent
from . import samples, speech
from .catalogue import NAME_TO_MID, RECIPE_VERSION, Candidate, select_classes
from .chorales import RENDER_SPECS, render_class
from .requirements import check_requirements


def _fingerprint(params: dict) -> str:
    """Hash of the recipe parameters, of its code (this package and the rendering) and of the installed
    files it reads."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for code in [*sorted(Path(__file__).parent.glob("*.py")), Path(render.__file__)]:  # the recipe, its rendering
        h.update(code.read_bytes())
    for root in (*samples.INSTALLED_DIRS, *speech.INSTALLED_DIRS):
        base = Path(root)
        if base.is_dir():
            for p in sorted(base.rglob("*")):
                if p.is_file():
                    h.update(f"{p}:{p.stat().st_size}\n".encode())
    if os.path.exists(render.SOUNDFONT):
        h.update(str(os.path.getsize(render.SOUNDFONT)).encode())
    try:
        import music21

        h.update(str(music21.__version__).encode())
    except Exception:  # pragma: no cover - checked by check_requirements
        pass
    return h.hexdigest()[:16]


def collect_starter_events(
    cache_dir: str | os.PathLike,
    progress: bool = True,
    *,
    classes: Iterable[str] | None = None,
    pieces_per_class: int = 30,
    max_per_speaker: int = 60,
) -> list[SourceEvent]:
    """Scan the installed packages and render the music21 parts; return the starter's source events.

    Args:
        cache_dir: where decoded speech, renders (32 kHz FLAC) and the event list are cached; a second call
            with the same arguments and the same installed packages reads the cache and returns at once.
        classes: restrict to these starter classes (display names or MIDs); default all of
            :data:`STARTER_CLASSES`.
        pieces_per_class: chorales rendered per instrument class (each = one recording, two excerpts).
        max_per_speaker: recordings kept per speaker folder.

    Returns:
        events sorted by (class order, recording, start). ``recording`` is ``"<group>::<take>"`` where the
        group is the physical source (drum kit, speaker, soundfont instrument); see :func:`recording_group`.
    """
    from ....progress import progress_iter

    check_requirements()
    names = select_classes(classes)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    params = {"version": RECIPE_VERSION, "classes": names, "pieces": pieces_per_class,
              "speakers": max_per_speaker}
    index_path = cache_dir / f"events-{_fingerprint(params)}.json"
    if index_path.is_file():
        rows = json.loads(index_path.read_text())
        if all(os.path.exists(r["path"]) for r in rows):
            return [SourceEvent(**r) for r in rows]

    wanted = set(names)
    cands: list[Candidate] = samples.sample_candidates(wanted, progress)
    speakers = [s for s in speech.SPEAKERS if s.label in wanted]
    if speakers:
        cands += speech.speech_candidates(speakers, cache_dir, max_per_speaker, progress)
    specs = [(i, s) for i, s in enumerate(RENDER_SPECS) if s.label in wanted]
    for i, spec in progress_iter(specs, desc="starter: rendering chorales", unit="class", disable=not progress):
        cands += render_class(spec, i, pieces_per_class, cache_dir, render.SOUNDFONT)

    order = {name: i for i, name in enumerate(names)}
    events: list[SourceEvent] = []
    for c in cands:
        mid = NAME_TO_MID[c.label]
        recording = f"{c.group}::{c.take}"
        for start, end in (c.excerpts or [(0.0, None)]):
            events.append(SourceEvent(path=c.path, mid=mid, label=c.label, recording=recording,
                                      source=c.source, licence=c.licence, start=float(start),
                                      end=None if end is None else float(end)))
    events.sort(key=lambda e: (order[e.label], e.recording, e.start))
    missing = [n for n in names if n not in {e.label for e in events}]
    if missing:
        raise DataError(f"no recordings found for: {', '.join(missing)} (are the starter packages complete?)")
    tmp = index_path.with_suffix(".tmp")
    tmp.write_text(json.dumps([e.__dict__ for e in events]))
    tmp.replace(index_path)
    return events


def recording_group(recording: str) -> str:
    """The physical source (kit, speaker, soundfont instrument) of a starter recording id."""
    return recording.split("::", 1)[0]


def assign_group_splits(events: Sequence[SourceEvent], seed: int = 0,
                        fractions: dict[str, float] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """Map each recording to a split, keeping whole groups (kits, speakers) together where possible.

    Per class (deterministic from ``seed``): with ≥ 3 groups, the groups are shuffled and whole groups fill
    test (≈20 % of the class's recordings), then validation (≈10 %), the rest train — a group holding more
    than half of the class stays in train. If that leaves test or validation empty (or the class has
    < 3 groups), the class falls back to a split by recording (70/10/20).

    Returns:
        (recording -> split, class name -> "by group" | "by recording").
    """
    fractions = fractions or {"train": 0.7, "validation": 0.1, "test": 0.2}
    by_class: dict[str, list[str]] = defaultdict(list)
    label_of: dict[str, str] = {}
    for ev in events:
        if ev.recording not in label_of:
            label_of[ev.recording] = ev.label
            by_class[ev.label].append(ev.recording)
    split_of: dict[str, str] = {}
    mode: dict[str, str] = {}
    for label in sorted(by_class):
        recs = sorted(r for r in by_class[label] if r not in split_of)
        groups: dict[str, list[str]] = defaultdict(list)
        for r in recs:
            groups[recording_group(r)].append(r)
        rng = np.random.default_rng(stable_seed(seed, label))
        n = len(recs)
        result: dict[str, str] | None = None
        if len(groups) >= 3:
            names = sorted(groups)
            rng.shuffle(names)
            counts = {s: 0 for s in SPLITS}
            trial = {}
            for g in names:
                size = len(groups[g])
                if size > 0.5 * n:
                    split = "train"
                elif counts["test"] < fractions["test"] * n and counts["test"] + size <= 0.35 * n:
                    split = "test"
                elif counts["validation"] < fractions["validation"] * n and \
                        counts["validation"] + size <= 0.25 * n:
                    split = "validation"
                else:
                    split = "train"
                counts[split] += size
                for r in groups[g]:
                    trial[r] = split
            if all(counts[s] > 0 for s in SPLITS):
                result = trial
        if result is None:
            mode[label] = "by recording"
            rng.shuffle(recs)
            n_val = max(1, int(round(fractions["validation"] * n))) if n >= 3 else 0
            n_test = max(1, int(round(fractions["test"] * n))) if n >= 3 else 0
            result = {r: ("test" if i < n_test else "validation" if i < n_test + n_val else "train")
                      for i, r in enumerate(recs)}
        else:
            mode[label] = "by group"
        split_of.update(result)
    return split_of, mode
