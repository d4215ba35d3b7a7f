"""``starter-speech``: Voicebank-Demand-style noisy speech, starter test-split speech plus noise made of real
non-speech test events, at exact SNRs."""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence

import numpy as np

from ...errors import DataError
from ...io import short_hash, stable_seed
from .common import (RECIPE_VERSION, SAMPLE_RATE, Benchmark, EventLoader, benchmarks_root, finished,
                     resolve_source, starter_marker, write_benchmark)

SNRS = (0, 5, 10, 15)


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
    from ..recipes.starter import SPEAKERS

    marker = starter_marker(starter_root)
    snrs = [float(s) for s in snrs]
    params = {"recipe": "starter-speech", "version": RECIPE_VERSION, "starter": short_hash(marker),
              "n_per_snr": int(n_per_snr), "snrs": snrs, "max_seconds": float(max_seconds),
              "min_seconds": float(min_seconds), "seed": int(seed)}
    folder = benchmarks_root(root) / f"starter-speech-n{n_per_snr}-seed{seed}-{short_hash(params)}"
    if not force and finished(folder, params):
        return Benchmark(folder)
    src = resolve_source(source, starter_root, cache_dir)
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
    load = EventLoader()
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
    return write_benchmark(folder, "starter-speech", params, arrays, items,
                           {"source": {"starter": str(src.root), "marker": src.marker}})
