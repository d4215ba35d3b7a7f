"""What the test sets share: the prepared folder (:class:`Benchmark`, its ``.complete`` marker and checksum, or
:class:`Skipped`), events loaded the one way every test set loads them (:func:`load_event`,
:func:`fixed_length`), a prepared starter set's test events (:func:`starter_source`) and energy-matched pairs
of two classes (:func:`make_pairs`).

**Where the pairs' events come from.** Not cut out of the composed 10 s test clips (they hold overlapping
events and a background): the recipe takes the starter's raw ``SourceEvent`` list (the recipe's own cache,
:func:`~ussnb.data.recipes.starter.collect_starter_events` with the dataset's parameters), splits it exactly as
the dataset did (:func:`~ussnb.data.recipes.starter.assign_group_splits` with its seed) and keeps the test
recordings — checked against the dataset's hidden ``events.jsonl`` (every recording placed in a test clip must
be a test recording and no train/validation clip may hold one). Each event is loaded at 32 kHz, silence-trimmed,
peak-normalised and its first 2 s taken, *tiled* when shorter (the reference FSDKaggle2018 protocol).

Layout: see :mod:`ussnb.data.testsets`.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError
from ...io import short_hash, stable_seed
from ...paths import data_root

RECIPE_VERSION = 1
SAMPLE_RATE = 32000
MARKER = ".complete"


@dataclass(frozen=True)
class Skipped:
    """A benchmark that could not be built here; ``reason`` starts with ``"skipped: "``."""

    name: str
    reason: str

    def to_dict(self) -> dict:
        return {"skipped": self.reason}


class Benchmark:
    """A prepared benchmark folder: ``manifest`` (dict), ``items`` (list of dicts), arrays by key.

    Arrays (all float32 at :attr:`sample_rate` unless stated):

    - pairs: ``target``, ``interferer`` ``(items, samples)`` and ``mixture`` = their sum (computed on load, not
      stored); ``examples`` ``(examples, samples)`` with ``manifest["examples"]`` (class MID, recording) per row.
    - music: ``mixture`` ``(pieces, samples)``, ``stems`` ``(pieces, 3, samples)`` in :data:`~ussnb.data.testsets.STEMS` order,
      ``parts`` ``(pieces, 4, samples)`` in S, A, T, B order.
    - speech: ``clean``, ``noise``, ``noisy`` ``(items, max samples)`` zero-padded, ``length`` ``(items,)``
      int64, ``snr`` ``(items,)``.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not (self.folder / MARKER).is_file():
            raise DataError(f"{self.folder}: not a finished benchmark (no {MARKER} marker)")
        self.manifest: dict = json.loads((self.folder / "manifest.json").read_text())
        self.name: str = self.manifest["name"]
        self.params: dict = self.manifest["params"]
        self.sample_rate: int = int(self.manifest["sample_rate"])
        self.items: list[dict] = self.manifest["items"]
        self._arrays: dict[str, np.ndarray] | None = None

    def __repr__(self) -> str:
        return f"Benchmark({self.name!r}, {len(self.items)} items, {self.folder})"

    def __len__(self) -> int:
        return len(self.items)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The stored arrays, plus a pair benchmark's ``mixture`` (= target + interferer, not stored)."""
        if self._arrays is None:
            with np.load(self.folder / "audio.npz", allow_pickle=False) as z:
                self._arrays = {k: z[k] for k in z.files}
            if "mixture" not in self._arrays and "interferer" in self._arrays:
                self._arrays["mixture"] = self._arrays["target"] + self._arrays["interferer"]
        return self._arrays

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    @property
    def checksum(self) -> str:
        return self.manifest["checksum"]

    def verify(self) -> bool:
        """Whether the arrays on disk still have the manifest's checksum."""
        with np.load(self.folder / "audio.npz", allow_pickle=False) as z:
            return array_checksum({k: z[k] for k in z.files}) == self.checksum


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes (``.npz`` files themselves carry zip
    timestamps, so the file bytes are not comparable across runs; this is)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def benchmarks_root(root: str | os.PathLike | None = None) -> Path:
    """``<data root>/benchmarks`` (``USSNB_DATA``), or ``root/benchmarks`` when given."""
    return data_root(root) / "benchmarks"


def finished(folder: Path, params: dict) -> bool:
    """Whether ``folder`` is a test set already built with exactly these parameters (its ``.complete`` marker)."""
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == json.loads(json.dumps(params, sort_keys=True))
    except json.JSONDecodeError:
        return False


def write_benchmark(folder: Path, name: str, params: dict, arrays: dict[str, np.ndarray], items: list[dict],
                    extra: dict | None = None) -> Benchmark:
    """Write into a temporary sibling folder, then rename: the benchmark appears complete or not at all."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    np.savez(tmp / "audio.npz", **arrays)
    manifest = {"name": name, "recipe_version": RECIPE_VERSION, "sample_rate": SAMPLE_RATE, "params": params,
                "checksum": array_checksum(arrays), "n_items": len(items), "items": items} | (extra or {})
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    (tmp / MARKER).write_text(json.dumps(params, sort_keys=True))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return Benchmark(folder)


def load_event(event, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``(samples,)`` float32: a :class:`~ussnb.data.compose.SourceEvent` excerpt, silence-trimmed, peak 1."""
    from ...audio import load_audio
    from ..compose import trim_silence

    duration = None if event.end is None else max(0.0, event.end - event.start)
    wave = trim_silence(load_audio(event.path, sr, start=event.start, duration=duration), sr)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak <= 1e-6:
        raise DataError(f"{event.path} [{event.start}-{event.end}]: event is silent")
    return (wave / peak).astype(np.float32)


def fixed_length(wave: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` samples, tiled (repeated) when shorter — the FSDKaggle2018 evaluation protocol."""
    reps = int(np.ceil(n / max(1, wave.shape[0])))
    return np.tile(wave, reps)[:n].astype(np.float32)


class EventLoader:
    """:func:`load_event`, each event loaded once (a test set draws the same event for several items)."""

    def __init__(self, sr: int = SAMPLE_RATE):
        self.sr, self.cache = sr, {}

    def __call__(self, event) -> np.ndarray:
        if event not in self.cache:
            self.cache[event] = load_event(event, self.sr)
        return self.cache[event]


@dataclass
class StarterSource:
    """A prepared starter set's source events and the split it used (see the module docstring)."""

    root: Path
    marker: dict
    events: list
    split_of: dict[str, str]

    @property
    def fingerprint(self) -> str:
        return short_hash(self.marker)

    def test_events(self) -> list:
        return [e for e in self.events if self.split_of[e.recording] == "test"]


def resolve_source(source, starter_root, cache_dir) -> StarterSource:
    """``source`` may be a :class:`StarterSource`, a zero-argument callable returning one, or None (scan)."""
    if callable(source):
        return source()
    return source if source is not None else starter_source(starter_root, cache_dir)


def starter_marker(starter_root: str | os.PathLike) -> dict:
    """The completion marker (the recipe's parameters) of a prepared starter set; :class:`DataError` otherwise."""
    root = Path(starter_root)
    marker_path = root / MARKER
    if not marker_path.is_file():
        raise DataError(f"{root}: not a prepared starter set (no {MARKER}); run `ussnb data prepare starter`")
    marker = json.loads(marker_path.read_text())
    if marker.get("recipe") != "starter":
        raise DataError(f"{root} is a {marker.get('recipe', 'non-starter')!r} dataset; starter benchmarks need "
                        "the starter set")
    return marker


def starter_source(starter_root: str | os.PathLike, cache_dir: str | os.PathLike | None = None, *,
                   check: bool = True) -> StarterSource:
    """Source events of a prepared starter set, split as the set was (test recordings are its test split).

    Args:
        starter_root: the prepared ``starter`` folder (with ``.complete``, ``events.jsonl``).
        cache_dir: the starter recipe's cache (renders, decoded speech, event index); default
            ``<USSNB_DATA>/.cache/starter`` as :func:`~ussnb.data.recipes.starter.prepare_starter` uses.
        check: compare the recomputed split with the dataset's hidden ``events.jsonl`` and raise
            :class:`DataError` on any disagreement.
    """
    from ..recipes.starter import assign_group_splits, collect_starter_events

    root = Path(starter_root)
    marker = starter_marker(root)
    cache = Path(cache_dir) if cache_dir is not None else data_root() / ".cache" / "starter"
    events = collect_starter_events(cache, False, classes=marker["classes"],
                                    pieces_per_class=marker["pieces_per_class"],
                                    max_per_speaker=marker["max_per_speaker"])
    split_of, _ = assign_group_splits(events, seed=marker["seed"])
    if check and (root / "events.jsonl").is_file():
        bad = []
        for line in (root / "events.jsonl").read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            for ev in row["events"]:
                if split_of.get(ev["recording"]) != row["split"]:
                    bad.append((row["clip_id"], ev["recording"], split_of.get(ev["recording"])))
        if bad:
            raise DataError(f"{root}: the recomputed split disagrees with the dataset's events.jsonl for "
                            f"{len(bad)} events (first: {bad[0]}); was the starter recipe or its packages "
                            "changed since the set was prepared? Re-prepare it with force=True")
    return StarterSource(root, marker, events, split_of)


def make_pairs(by_class: dict[str, list], names: dict[str, str], *, n_per_class: int, seconds: float, seed: int,
               n_examples: int, tag: str) -> tuple[dict[str, np.ndarray], list[dict], list[dict]]:
    """Pairs for every class with at least one event (and at least 2 classes): see
    :func:`~ussnb.data.testsets.starter_pairs.prepare_starter_pairs`. Returns (arrays, items, example rows)."""
    classes = sorted(c for c, evs in by_class.items() if evs)
    if len(classes) < 2:
        raise DataError(f"{tag}: pairs need test events of at least 2 classes, found {len(classes)}")
    n = int(round(seconds * SAMPLE_RATE))
    load = EventLoader()
    targets, interferers, items = [], [], []
    for mid in classes:
        rng = np.random.default_rng(stable_seed(seed, tag, "pairs", mid))
        evs = sorted(by_class[mid], key=lambda e: (e.recording, e.start, e.path))
        order = rng.permutation(len(evs))
        others = [c for c in classes if c != mid]
        for i in range(n_per_class):
            t_ev = evs[int(order[i % len(evs)])]
            other = others[int(rng.integers(len(others)))]
            pool = sorted(by_class[other], key=lambda e: (e.recording, e.start, e.path))
            i_ev = pool[int(rng.integers(len(pool)))]
            s = fixed_length(load(t_ev), n)
            r = fixed_length(load(i_ev), n)
            es, er = float(np.sum(s.astype(np.float64) ** 2)), float(np.sum(r.astype(np.float64) ** 2))
            if es <= 1e-8 or er <= 1e-8:
                continue
            r = (r * np.sqrt(es / er)).astype(np.float32)  # 0 dB: energy of the interferer = the target's
            mix = s + r
            scale = min(1.0, 0.9 / float(np.max(np.abs(mix))))
            s, r = (s * scale).astype(np.float32), (r * scale).astype(np.float32)
            targets.append(s)
            interferers.append(r)
            items.append({"index": len(items), "target_mid": mid, "target": names[mid],
                          "interferer_mid": other, "interferer": names[other],
                          "target_recording": t_ev.recording, "target_start": t_ev.start,
                          "interferer_recording": i_ev.recording})
    # the example bank for query by example: up to n_examples segments per class, distinct recordings first
    examples, ex_rows = [], []
    for mid in classes:
        rng = np.random.default_rng(stable_seed(seed, tag, "examples", mid))
        evs = sorted(by_class[mid], key=lambda e: (e.recording, e.start, e.path))
        order = [evs[int(j)] for j in rng.permutation(len(evs))]
        seen: set[str] = set()
        first = [e for e in order if not (e.recording in seen or seen.add(e.recording))]
        chosen = (first + [e for e in order if e not in first])[:n_examples]
        for ev in chosen:
            examples.append(fixed_length(load(ev), n))
            ex_rows.append({"mid": mid, "name": names[mid], "recording": ev.recording, "start": ev.start})
    # the mixture is target + interferer exactly (float32): not stored, Benchmark.arrays adds it on load
    arrays = {"target": np.stack(targets), "interferer": np.stack(interferers),
              "examples": np.stack(examples) if examples else np.zeros((0, n), np.float32)}
    return arrays, items, ex_rows


def dataset_recipe(dataset_root: str | os.PathLike) -> dict:
    """The completion marker of a prepared dataset (``recipe``, ``seed``, ...); {} when it has none."""
    marker = Path(dataset_root) / MARKER
    try:
        return json.loads(marker.read_text()) if marker.is_file() else {}
    except json.JSONDecodeError:
        return {}
