"""Evaluation benchmarks built from real audio, each deterministic from a seed (paper §4 test sets, offline).

================  ===========================================================================================
``starter-pairs``  FSDKaggle2018-style pairs from the starter **test** split: a target event and an interferer
                   event of a *different* class, 2 s each, the interferer scaled to the target's energy (0 dB),
                   ``n_per_class`` mixtures per target class. Plus a bank of other test segments per class (the
                   examples of the zero-shot, query-by-example evaluation).
``esc50-pairs``    the same from an ESC-50 folder (argument or ``USSNB_ESC50_DIR``), test split as the esc50
                   weak dataset makes it; without the folder :func:`prepare_esc50_pairs` returns a
                   :class:`Skipped` with a "skipped: ..." reason instead of raising.
``starter-music``  MUSDB/Slakh-style stems: Bach chorales from the music21 corpus *not used by the starter set*,
                   each SATB part rendered on its own with fluidsynth + FluidR3_GM: soprano on *Choir* (the
                   ``vocals`` stem), bass on *Double bass* (``bass``), alto and tenor on two other instruments
                   (``other``); per-part instrument labels for SDRi by class query. mixture = Σ stems exactly.
``starter-speech`` Voicebank-Demand-style: starter speech excerpts of the test-split speakers plus noise made
                   of real non-speech test events (drums, sampled instruments), at 0/5/10/15 dB SNR.
================  ===========================================================================================

**Where the pairs' events come from.** Not cut out of the composed 10 s test clips (they hold overlapping
events and a background): the recipe takes the starter's raw ``SourceEvent`` list (the recipe's own cache,
:func:`~ussnb.data.recipes.starter.collect_starter_events` with the dataset's parameters), splits it exactly as
the dataset did (:func:`~ussnb.data.recipes.starter.assign_group_splits` with its seed) and keeps the test
recordings — checked against the dataset's hidden ``events.jsonl`` (every recording placed in a test clip must
be a test recording and no train/validation clip may hold one). Each event is loaded at 32 kHz, silence-trimmed,
peak-normalised and its first 2 s taken, *tiled* when shorter (the reference FSDKaggle2018 protocol).

Layout: ``<data root>/benchmarks/<name>-<params>/`` holds ``audio.npz`` (float32 arrays at 32 kHz),
``manifest.json`` (items, parameters, a SHA-256 ``checksum`` of the arrays) and the ``.complete`` marker
(written last, holding the parameters: a second call with the same parameters returns at once).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import DataError
from .io import short_hash, stable_seed
from .paths import data_root

RECIPE_VERSION = 1
SAMPLE_RATE = 32000
BENCHMARKS = ("starter-pairs", "esc50-pairs", "starter-music", "starter-speech")
MARKER = ".complete"
SNRS = (0, 5, 10, 15)

#: music stems: name -> (chorale voices, how the instrument is chosen)
VOCALS_LABEL = "Choir"          # soprano line: FluidR3 "Choir Aahs" (sampled voices)
BASS_LABEL = "Double bass"      # bass line, an octave down
ALTO_CHOICES = ("Clarinet", "Saxophone", "French horn", "Violin, fiddle", "Trumpet")
TENOR_CHOICES = ("Cello", "Trombone", "Acoustic guitar", "Piano", "Harp")
STEMS = ("vocals", "bass", "other")
_MUSIC_GAP_SECONDS = 3.0  # silence between the pieces in one render (release tails are cut off anyway)


# ============================================================================================ containers
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
    - music: ``mixture`` ``(pieces, samples)``, ``stems`` ``(pieces, 3, samples)`` in :data:`STEMS` order,
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


_short_hash = short_hash  # benchmark folders and identities: the kit's one short hash (io.short_hash)


def _finished(folder: Path, params: dict) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == json.loads(json.dumps(params, sort_keys=True))
    except json.JSONDecodeError:
        return False


def _write_benchmark(folder: Path, name: str, params: dict, arrays: dict[str, np.ndarray], items: list[dict],
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


# ============================================================================================ events
def load_event(event, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``(samples,)`` float32: a :class:`~ussnb.data.compose.SourceEvent` excerpt, silence-trimmed, peak 1."""
    from .audio import load_audio
    from .data.compose import trim_silence

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


class _Loader:
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
        return _short_hash(self.marker)

    def test_events(self) -> list:
        return [e for e in self.events if self.split_of[e.recording] == "test"]


def _resolve_source(source, starter_root, cache_dir) -> StarterSource:
    """``source`` may be a :class:`StarterSource`, a zero-argument callable returning one, or None (scan)."""
    if callable(source):
        return source()
    return source if source is not None else starter_source(starter_root, cache_dir)


def _starter_marker(starter_root: str | os.PathLike) -> dict:
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
    from .data.recipes.starter import assign_group_splits, collect_starter_events

    root = Path(starter_root)
    marker = _starter_marker(root)
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


# ============================================================================================ pairs
def _make_pairs(by_class: dict[str, list], names: dict[str, str], *, n_per_class: int, seconds: float, seed: int,
                n_examples: int, tag: str) -> tuple[dict[str, np.ndarray], list[dict], list[dict]]:
    """Pairs for every class with at least one event (and at least 2 classes): see :func:`prepare_starter_pairs`."""
    classes = sorted(c for c, evs in by_class.items() if evs)
    if len(classes) < 2:
        raise DataError(f"{tag}: pairs need test events of at least 2 classes, found {len(classes)}")
    n = int(round(seconds * SAMPLE_RATE))
    load = _Loader()
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


def prepare_starter_pairs(
    starter_root: str | os.PathLike,
    *,
    n_per_class: int = 10,
    seconds: float = 2.0,
    seed: int = 0,
    n_examples: int = 4,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    source=None,
    force: bool = False,
) -> Benchmark:
    """``starter-pairs``: ``n_per_class`` 0 dB pairs per target class from the starter test split (idempotent).

    Each target class k (every class with test events): targets cycle through a seeded permutation of k's
    test events; the interferer class is drawn uniformly from the other classes and its event uniformly from
    that class's test events. Both are ``seconds`` long (first seconds, tiled if short); the interferer is
    scaled to the target's energy; the three signals share one gain so the mixture peaks at ≤ 0.9.

    Args:
        starter_root: the prepared starter folder of the run's dataset.
        n_examples: query-by-example segments kept per class (the zero-shot evaluation's examples).
        root: data root of the benchmark folder (default ``USSNB_DATA``).
        cache_dir: the starter recipe cache (see :func:`starter_source`).
        source: an already loaded :func:`starter_source`, or a callable returning one (called only when the
            benchmark has to be built).
    """
    marker = _starter_marker(starter_root)
    params = {"recipe": "starter-pairs", "version": RECIPE_VERSION, "starter": _short_hash(marker),
              "n_per_class": int(n_per_class), "seconds": float(seconds), "seed": int(seed),
              "n_examples": int(n_examples)}
    folder = benchmarks_root(root) / f"starter-pairs-n{n_per_class}-{seconds:g}s-seed{seed}-{params['starter']}"
    if not force and _finished(folder, params):
        return Benchmark(folder)
    src = _resolve_source(source, starter_root, cache_dir)
    by_class: dict[str, list] = defaultdict(list)
    names = {}
    for ev in src.test_events():
        by_class[ev.mid].append(ev)
        names[ev.mid] = ev.label
    arrays, items, ex_rows = _make_pairs(by_class, names, n_per_class=n_per_class, seconds=seconds, seed=seed,
                                         n_examples=n_examples, tag="starter-pairs")
    return _write_benchmark(folder, "starter-pairs", params, arrays, items,
                            {"examples": ex_rows, "source": {"starter": str(src.root), "marker": src.marker,
                                                             "events": "raw test-split SourceEvents"}})


def prepare_esc50_pairs(
    esc50_dir: str | os.PathLike | None = None,
    *,
    n_per_class: int = 10,
    seconds: float = 2.0,
    seed: int = 0,
    split_seed: int = 0,
    n_examples: int = 4,
    root: str | os.PathLike | None = None,
    force: bool = False,
    holdout: Sequence[str] = (),
) -> Benchmark | Skipped:
    """``esc50-pairs``: the same pairs from ESC-50's test split (idempotent), or :class:`Skipped`.

    The split is :func:`ussnb.data.compose.assign_splits` with ``split_seed`` — the split the ``esc50`` weak
    dataset of the same seed uses, so its test recordings were never heard in training. ESC-50 clips are 5 s
    single-class recordings; each is silence-trimmed and its first ``seconds`` taken (tiled if shorter).
    ``holdout``: MIDs of classes held out of the run's training altogether; every recording of theirs was
    never heard, so all of them (not only the test split's) serve as targets and examples."""
    from .data.compose import assign_splits
    from .data.recipes.esc50 import esc50_events, find_esc50

    try:
        src = find_esc50(esc50_dir)
        events = esc50_events(src)
    except DataError as exc:
        return Skipped("esc50-pairs", f"skipped: {exc}")
    identity = {"source": str(src.resolve()), "n_clips": len(events),
                "files": _short_hash(sorted((e.path, e.mid) for e in events))}
    holdout = sorted(set(holdout) & {e.mid for e in events})
    params = {"recipe": "esc50-pairs", "version": RECIPE_VERSION, "esc50": _short_hash(identity),
              "n_per_class": int(n_per_class), "seconds": float(seconds), "seed": int(seed),
              "split_seed": int(split_seed), "n_examples": int(n_examples)}
    if holdout:
        params["holdout"] = holdout
    folder = benchmarks_root(root) / (f"esc50-pairs-n{n_per_class}-{seconds:g}s-seed{seed}-{params['esc50']}"
                                      + (f"-holdout-{_short_hash(holdout, 6)}" if holdout else ""))
    if not force and _finished(folder, params):
        return Benchmark(folder)
    split_of = assign_splits(events, seed=split_seed)
    by_class: dict[str, list] = defaultdict(list)
    names = {}
    for ev in events:
        if split_of[ev.recording] == "test" or ev.mid in holdout:
            by_class[ev.mid].append(ev)
            names[ev.mid] = ev.label
    arrays, items, ex_rows = _make_pairs(by_class, names, n_per_class=n_per_class, seconds=seconds, seed=seed,
                                         n_examples=n_examples, tag="esc50-pairs")
    return _write_benchmark(folder, "esc50-pairs", params, arrays, items,
                            {"examples": ex_rows, "source": identity | {"split_seed": split_seed}})


# ============================================================================================ music
def starter_render_pieces(source: StarterSource) -> list[str]:
    """Chorales (file stems, e.g. ``bwv10.7``) the starter set rendered for any class and any split."""
    from .data.recipes.starter import RENDER_SOURCE

    return sorted({e.recording.split("::", 1)[1] for e in source.events if e.source == RENDER_SOURCE})


def prepare_starter_music(
    *,
    n_pieces: int = 4,
    seconds: float = 8.0,
    seed: int = 0,
    exclude_pieces: Iterable[str] | None = None,
    starter_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    source=None,
    root: str | os.PathLike | None = None,
    force: bool = False,
) -> Benchmark:
    """``starter-music``: ``n_pieces`` chorale excerpts of ``seconds`` rendered part by part (idempotent).

    Pieces: a seeded permutation of the music21 Bach chorale pool (the one the starter recipe renders from,
    :func:`~ussnb.data.render.chorale_pool` / :func:`~ussnb.data.render.chorale_notes`: four-part SATB
    chorales only), skipping ``exclude_pieces`` — by default every chorale the starter set at ``starter_root``
    rendered for any class, so no excerpt (in any split) shares a score with the benchmark. Per piece a tempo U(66, 100) bpm and an excerpt from its first
    note; soprano → Choir (vocals), bass → Double bass an octave down (bass), alto and tenor → one of
    :data:`ALTO_CHOICES` / :data:`TENOR_CHOICES` each (other). Instruments use the starter's GM programs
    (:data:`~ussnb.data.recipes.starter.RENDER_SPECS`), so a starter-trained model knows their timbre.
    Every part is rendered by its own fluidsynth pass (all pieces of one voice in one pass, far apart in
    time), cut to the excerpt and faded out over its last 0.3 s, and scaled so the four parts have the same
    RMS (a balanced mix: vocals and bass each ≈ −6 dB below the mixture); mixture = vocals + bass + other
    exactly.
    """
    import tempfile

    import pretty_midi

    from .data import render
    from .data.recipes.starter import RENDER_SPECS, check_requirements

    if exclude_pieces is None and starter_root is None and source is not None:
        exclude_pieces = starter_render_pieces(_resolve_source(source, None, cache_dir))
    if exclude_pieces is not None:
        exclusion = _short_hash(sorted(set(exclude_pieces)))
    elif starter_root is not None:  # identified by the starter set's parameters: no scan to find the folder
        exclusion = "starter-" + _short_hash(_starter_marker(starter_root))
    else:
        exclusion = _short_hash([])
    params = {"recipe": "starter-music", "version": RECIPE_VERSION, "n_pieces": int(n_pieces),
              "seconds": float(seconds), "seed": int(seed), "exclude": exclusion}
    folder = benchmarks_root(root) / f"starter-music-n{n_pieces}-{seconds:g}s-seed{seed}-{_short_hash(exclusion)}"
    if not force and _finished(folder, params):
        return Benchmark(folder)
    if exclude_pieces is None:
        exclude_pieces = (starter_render_pieces(_resolve_source(source, starter_root, cache_dir))
                          if starter_root is not None else [])
    exclude = sorted(set(exclude_pieces))
    check_requirements()
    specs = {s.label: s for s in RENDER_SPECS}
    mids = _starter_mids()
    pool = render.chorale_pool()
    rng = np.random.default_rng(stable_seed(seed, "starter-music"))
    chosen = []
    for idx in rng.permutation(len(pool)):
        if len(chosen) >= n_pieces:
            break
        path = pool[int(idx)]
        stem = Path(path).stem
        if stem in exclude:
            continue
        notes = render.chorale_notes(path)
        if notes is None:
            continue
        qpm = float(rng.uniform(66.0, 100.0))
        spq = 60.0 / qpm
        first = min(on for v in "SATB" for on, _, _ in notes[v])
        window = {v: [(on * spq - first * spq, dur * spq, ps) for on, dur, ps in notes[v]
                      if 0 <= on * spq - first * spq < seconds] for v in "SATB"}
        if any(len({on for on, _, _ in window[v]}) < 3 for v in "SATB"):
            continue  # a part (nearly) silent in the excerpt
        alto = ALTO_CHOICES[int(rng.integers(len(ALTO_CHOICES)))]
        tenor = TENOR_CHOICES[int(rng.integers(len(TENOR_CHOICES)))]
        velocity = {v: int(rng.integers(70, 100)) for v in "SATB"}
        chosen.append({"piece": stem, "qpm": round(qpm, 3), "window": window, "velocity": velocity,
                       "labels": {"S": VOCALS_LABEL, "A": alto, "T": tenor, "B": BASS_LABEL}})
    if len(chosen) < n_pieces:
        raise DataError(f"only {len(chosen)} chorales left for the music benchmark after excluding "
                        f"{len(exclude)} used by the starter set; ask for fewer pieces")
    slot = seconds + _MUSIC_GAP_SECONDS
    n = int(round(seconds * SAMPLE_RATE))
    rows = [{"excerpts": [[0.5 + p * slot, 0.5 + p * slot + seconds]]} for p in range(len(chosen))]
    parts = np.zeros((len(chosen), 4, n), np.float32)
    with tempfile.TemporaryDirectory(prefix="ussnb-music-") as tmp:
        for vi, voice in enumerate("SATB"):
            midi = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
            by_program: dict[int, pretty_midi.Instrument] = {}
            t_end = 0.0
            for p, piece in enumerate(chosen):
                spec = specs[piece["labels"][voice]]
                transpose = -12 if voice == "B" else 0
                inst = by_program.setdefault(spec.program, pretty_midi.Instrument(program=spec.program,
                                                                                  name=spec.label))
                t0 = 0.5 + p * slot
                flat = [(on, min(on + dur, seconds), q + transpose) for on, dur, ps in piece["window"][voice]
                        for q in ps]
                for start, end, q in render.clean_notes(flat):
                    if 0 <= q <= 127:
                        inst.notes.append(pretty_midi.Note(velocity=piece["velocity"][voice], pitch=int(q),
                                                           start=round(t0 + start, 4), end=round(t0 + end, 4)))
                t_end = t0 + seconds
            for inst in by_program.values():
                inst.control_changes.append(pretty_midi.ControlChange(123, 0, t_end + 2.0))
                midi.instruments.append(inst)
            wave = render.render_midi(midi, Path(tmp) / f"voice-{voice}", sample_rate=SAMPLE_RATE,
                                      what="the music benchmark")
            total = int(round((0.5 + len(chosen) * slot + 1.0) * SAMPLE_RATE))
            wave = np.pad(wave, (0, max(0, total - wave.shape[0])))
            wave = wave * render.excerpt_envelope(rows, wave.shape[0], SAMPLE_RATE)
            for p in range(len(chosen)):
                a = int(round((0.5 + p * slot) * SAMPLE_RATE))
                parts[p, vi] = wave[a:a + n]
    # a balanced mix: every part at the same RMS over the excerpt (fluidsynth's patches differ by > 10 dB)
    rms = np.sqrt(np.mean(parts.astype(np.float64) ** 2, axis=2))
    silent = [(chosen[p]["piece"], "SATB"[v]) for p in range(len(chosen)) for v in range(4) if rms[p, v] < 1e-4]
    if silent:
        raise DataError(f"fluidsynth rendered silent parts: {silent}")
    parts *= (0.1 / np.maximum(rms, 1e-9))[:, :, None].astype(np.float32)
    peaks = np.max(np.abs(parts.sum(axis=1)), axis=1)
    parts *= np.minimum(1.0, 0.9 / np.maximum(peaks, 1e-9))[:, None, None].astype(np.float32)
    stems = np.stack([parts[:, 0], parts[:, 3], parts[:, 1] + parts[:, 2]], axis=1)  # vocals, bass, other
    mixture = stems.sum(axis=1)
    items = []
    for p, piece in enumerate(chosen):
        labels = piece["labels"]
        items.append({
            "index": p, "piece": piece["piece"], "qpm": piece["qpm"],
            "parts": [{"voice": v, "label": labels[v], "mid": mids[labels[v]], "program": specs[labels[v]].program,
                       "stem": {"S": "vocals", "B": "bass"}.get(v, "other")} for v in "SATB"],
            "stems": {"vocals": [mids[labels["S"]]], "bass": [mids[labels["B"]]],
                      "other": [mids[labels["A"]], mids[labels["T"]]]},
        })
    return _write_benchmark(folder, "starter-music", params, {"mixture": mixture, "stems": stems, "parts": parts},
                            items, {"stems": list(STEMS), "parts_order": "SATB", "excluded_pieces": exclude,
                                    "render": "music21 Bach chorales, fluidsynth + FluidR3_GM, one pass per voice"})


def _starter_mids() -> dict[str, str]:
    from .data.recipes.starter import STARTER_CLASSES

    return {name: mid for mid, name in STARTER_CLASSES}


# ============================================================================================ speech
def prepare_starter_speech(
    starter_root: str | os.PathLike,
    *,
    n_per_snr: int = 6,
    snrs: Sequence[float] = SNRS,
    max_seconds: float = 4.0,
    min_seconds: float = 1.0,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    source=None,
    force: bool = False,
) -> Benchmark:
    """``starter-speech``: ``n_per_snr`` noisy utterances per SNR (idempotent).

    Clean speech: test-split speech excerpts of the starter set (speakers never heard in training when the
    class had ≥ 3 speakers; see the starter's SOURCES.md), silence-trimmed, ≥ ``min_seconds`` and cut to
    ``max_seconds``, spread over speakers. Noise: per item one non-speech test class (drums, sampled
    instruments), its test events concatenated with 0-0.1 s gaps up to the utterance's length; scaled so
    10·log10(‖speech‖² / ‖noise‖²) equals the item's SNR exactly. Items are variable-length (``length``)."""
    from .data.recipes.starter import SPEAKERS

    marker = _starter_marker(starter_root)
    snrs = [float(s) for s in snrs]
    params = {"recipe": "starter-speech", "version": RECIPE_VERSION, "starter": _short_hash(marker),
              "n_per_snr": int(n_per_snr), "snrs": snrs, "max_seconds": float(max_seconds),
              "min_seconds": float(min_seconds), "seed": int(seed)}
    folder = benchmarks_root(root) / f"starter-speech-n{n_per_snr}-seed{seed}-{_short_hash(params)}"
    if not force and _finished(folder, params):
        return Benchmark(folder)
    src = _resolve_source(source, starter_root, cache_dir)
    speech_labels = {s.label for s in SPEAKERS}
    test = src.test_events()
    speech = sorted((e for e in test if e.label in speech_labels), key=lambda e: (e.recording, e.start))
    noise_by_class: dict[str, list] = defaultdict(list)
    for e in test:
        if e.label not in speech_labels:
            noise_by_class[e.label].append(e)
    if not speech:
        raise DataError(f"{src.root}: no speech in the test split (the set has no speech class?)")
    if not noise_by_class:
        raise DataError(f"{src.root}: no non-speech test events to make noise from")
    load = _Loader()
    rng = np.random.default_rng(stable_seed(seed, "starter-speech"))
    # spread over speakers: round-robin over speaker groups, each group in a seeded order
    groups: dict[str, list] = defaultdict(list)
    for e in speech:
        groups[e.recording.split("::", 1)[0]].append(e)
    queues = {g: [evs[int(j)] for j in rng.permutation(len(evs))] for g, evs in sorted(groups.items())}
    order = []
    while any(queues.values()):
        for g in sorted(queues):
            if queues[g]:
                order.append(queues[g].pop(0))
    need = n_per_snr * len(snrs)
    utterances = []
    for ev in order:
        wave = load(ev)[: int(max_seconds * SAMPLE_RATE)]
        if wave.shape[0] >= min_seconds * SAMPLE_RATE:
            utterances.append((ev, wave))
        if len(utterances) >= need:
            break
    if not utterances:
        raise DataError(f"no test speech excerpt of at least {min_seconds} s")
    noise_classes = sorted(noise_by_class)
    items, cleans, noises = [], [], []
    for i in range(need):
        ev, s = utterances[i % len(utterances)]
        snr = snrs[i % len(snrs)]
        cls = noise_classes[int(rng.integers(len(noise_classes)))]
        pool = sorted(noise_by_class[cls], key=lambda e: (e.recording, e.start))
        pieces, used, total = [], [], 0
        while total < s.shape[0]:
            nev = pool[int(rng.integers(len(pool)))]
            w = load(nev)
            gap = np.zeros(int(rng.uniform(0.0, 0.1) * SAMPLE_RATE), np.float32)
            pieces += [w, gap]
            used.append(nev.recording)
            total += w.shape[0] + gap.shape[0]
        noise = np.concatenate(pieces)[: s.shape[0]]
        es, en = float(np.sum(s.astype(np.float64) ** 2)), float(np.sum(noise.astype(np.float64) ** 2))
        noise = (noise * np.sqrt(es / (en * 10 ** (snr / 10)))).astype(np.float32)
        scale = min(1.0, 0.9 / float(np.max(np.abs(s + noise))))
        cleans.append((s * scale).astype(np.float32))
        noises.append((noise * scale).astype(np.float32))
        items.append({"index": i, "snr": snr, "speech_mid": ev.mid, "speech": ev.label,
                      "speaker": ev.recording.split("::", 1)[0], "recording": ev.recording,
                      "noise": cls, "noise_mid": pool[0].mid, "noise_recordings": sorted(set(used)),
                      "seconds": round(s.shape[0] / SAMPLE_RATE, 4)})
    width = max(c.shape[0] for c in cleans)
    pad = lambda x: np.pad(x, (0, width - x.shape[0]))  # noqa: E731
    clean = np.stack([pad(c) for c in cleans])
    noise = np.stack([pad(x) for x in noises])
    arrays = {"clean": clean, "noise": noise, "noisy": (clean + noise).astype(np.float32),
              "length": np.asarray([c.shape[0] for c in cleans], np.int64),
              "snr": np.asarray([it["snr"] for it in items], np.float32)}
    return _write_benchmark(folder, "starter-speech", params, arrays, items,
                            {"source": {"starter": str(src.root), "marker": src.marker}})


# ============================================================================================ all of them
def dataset_recipe(dataset_root: str | os.PathLike) -> dict:
    """The completion marker of a prepared dataset (``recipe``, ``seed``, ...); {} when it has none."""
    marker = Path(dataset_root) / MARKER
    try:
        return json.loads(marker.read_text()) if marker.is_file() else {}
    except json.JSONDecodeError:
        return {}


def prepare_benchmarks(
    dataset_root: str | os.PathLike,
    *,
    pairs_per_class: int = 10,
    pair_examples: int = 4,
    music_pieces: int = 4,
    music_seconds: float = 8.0,
    speech_per_snr: int = 6,
    seed: int = 0,
    esc50_dir: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    holdout: Sequence[str] = (),
) -> dict[str, Benchmark | Skipped]:
    """Every benchmark for a run whose dataset is at ``dataset_root`` (idempotent; :data:`BENCHMARKS` order).

    The starter benchmarks need the run's dataset to be a starter set, or a combination with one (they use its
    test split); otherwise they are :class:`Skipped`. ``esc50-pairs`` uses the ESC-50 folder (``esc50_dir`` or
    ``USSNB_ESC50_DIR``) and, for a run on ``esc50`` (alone or combined), that dataset's split seed;
    ``holdout`` (MIDs held out of training) lets it use every recording of those classes."""
    members = [Path(dataset_root)]
    info_path = Path(dataset_root) / "info.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        members = [Path(m["path"]) for m in info.get("members", [])] or members
    starter_roots = [m for m in members if dataset_recipe(m).get("recipe") == "starter"]
    esc_roots = [m for m in members if dataset_recipe(m).get("recipe") == "esc50"]
    split_seed = int(dataset_recipe(esc_roots[0]).get("seed", 0)) if esc_roots else 0
    marker = dataset_recipe(starter_roots[0] if starter_roots else dataset_root)
    dataset_root = starter_roots[0] if starter_roots else dataset_root
    out: dict[str, Benchmark | Skipped] = {}
    if marker.get("recipe") == "starter":
        cached: list[StarterSource] = []

        def source() -> StarterSource:  # scanned once, and only if a benchmark has to be built
            if not cached:
                cached.append(starter_source(dataset_root, cache_dir))
            return cached[0]

        out["starter-pairs"] = prepare_starter_pairs(dataset_root, n_per_class=pairs_per_class, seed=seed,
                                                     n_examples=pair_examples, root=root, source=source)
        out["esc50-pairs"] = prepare_esc50_pairs(esc50_dir, n_per_class=pairs_per_class, seed=seed,
                                                 split_seed=split_seed, n_examples=pair_examples, root=root,
                                                 holdout=holdout)
        out["starter-music"] = prepare_starter_music(n_pieces=music_pieces, seconds=music_seconds, seed=seed,
                                                     starter_root=dataset_root, source=source, root=root)
        out["starter-speech"] = prepare_starter_speech(dataset_root, n_per_snr=speech_per_snr, seed=seed,
                                                       root=root, source=source)
    else:
        why = (f"skipped: the run's dataset is {marker.get('recipe', Path(dataset_root).name)!r}, not the starter "
               "set; the starter benchmarks use the starter's test split (and its instrument/speech classes)")
        out["starter-pairs"] = Skipped("starter-pairs", why)
        out["esc50-pairs"] = prepare_esc50_pairs(esc50_dir, n_per_class=pairs_per_class, seed=seed,
                                                 split_seed=split_seed, n_examples=pair_examples, root=root,
                                                 holdout=holdout)
        out["starter-music"] = Skipped("starter-music", why)
        out["starter-speech"] = Skipped("starter-speech", why)
    return {name: out[name] for name in BENCHMARKS}


__all__ = ["BENCHMARKS", "Benchmark", "SNRS", "STEMS", "Skipped", "StarterSource", "array_checksum",
           "benchmarks_root", "dataset_recipe", "fixed_length", "prepare_benchmarks", "load_event", "prepare_esc50_pairs", "prepare_starter_music",
           "prepare_starter_pairs", "prepare_starter_speech", "starter_render_pieces", "starter_source"]
