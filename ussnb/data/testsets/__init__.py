"""Evaluation test sets ("benchmarks") built from real audio, each deterministic from a seed (paper §4, offline).

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

One module per test set (``starter_pairs``, ``esc50_pairs``, ``starter_music``, ``starter_speech``), what they
share in ``common`` (the folder and its marker, loading events, a starter set's test events, pairs);
:func:`prepare_benchmarks` makes every one a run needs. Their scoring is :mod:`ussnb.eval.protocol`.

Layout: ``<data root>/benchmarks/<name>-<params>/`` holds ``audio.npz`` (float32 arrays at 32 kHz),
``manifest.json`` (items, parameters, a SHA-256 ``checksum`` of the arrays) and the ``.complete`` marker
(written last, holding the parameters: a second call with the same parameters returns at once).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from .common import (MARKER, RECIPE_VERSION, SAMPLE_RATE, Benchmark, Skipped, StarterSource, array_checksum,
                     benchmarks_root, dataset_recipe, fixed_length, load_event, starter_source)
from .esc50_pairs import prepare_esc50_pairs
from .starter_music import STEMS, prepare_starter_music, starter_render_pieces
from .starter_pairs import prepare_starter_pairs
from .starter_speech import SNRS, prepare_starter_speech

BENCHMARKS = ("starter-pairs", "esc50-pairs", "starter-music", "starter-speech")


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


__all__ = ["BENCHMARKS", "MARKER", "RECIPE_VERSION", "SAMPLE_RATE", "Benchmark", "SNRS", "STEMS", "Skipped",
           "StarterSource", "array_checksum", "benchmarks_root", "dataset_recipe", "fixed_length", "load_event",
           "prepare_benchmarks", "prepare_esc50_pairs", "prepare_starter_music", "prepare_starter_pairs",
           "prepare_starter_speech", "starter_render_pieces", "starter_source"]
