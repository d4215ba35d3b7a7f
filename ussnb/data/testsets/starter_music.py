"""``starter-music``: MUSDB/Slakh-style stems, Bach chorales the starter set did not use, each SATB part
rendered on its own (:mod:`ussnb.data.render`) on an instrument the starter set has."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import DataError
from ...io import short_hash, stable_seed
from .common import (RECIPE_VERSION, SAMPLE_RATE, Benchmark, StarterSource, benchmarks_root, finished,
                     resolve_source, starter_marker, write_benchmark)

#: music stems: name -> (chorale voices, how the instrument is chosen)
VOCALS_LABEL = "Choir"          # soprano line: FluidR3 "Choir Aahs" (sampled voices)
BASS_LABEL = "Double bass"      # bass line, an octave down
ALTO_CHOICES = ("Clarinet", "Saxophone", "French horn", "Violin, fiddle", "Trumpet")
TENOR_CHOICES = ("Cello", "Trombone", "Acoustic guitar", "Piano", "Harp")
STEMS = ("vocals", "bass", "other")
_MUSIC_GAP_SECONDS = 3.0  # silence between the pieces in one render (release tails are cut off anyway)


def starter_render_pieces(source: StarterSource) -> list[str]:
    """Chorales (file stems, e.g. ``bwv10.7``) the starter set rendered for any class and any split."""
    from ..recipes.starter import RENDER_SOURCE

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

    from .. import render
    from ..recipes.starter import RENDER_SPECS, check_requirements

    if exclude_pieces is None and starter_root is None and source is not None:
        exclude_pieces = starter_render_pieces(resolve_source(source, None, cache_dir))
    if exclude_pieces is not None:
        exclusion = short_hash(sorted(set(exclude_pieces)))
    elif starter_root is not None:  # identified by the starter set's parameters: no scan to find the folder
        exclusion = "starter-" + short_hash(starter_marker(starter_root))
    else:
        exclusion = short_hash([])
    params = {"recipe": "starter-music", "version": RECIPE_VERSION, "n_pieces": int(n_pieces),
              "seconds": float(seconds), "seed": int(seed), "exclude": exclusion}
    folder = benchmarks_root(root) / f"starter-music-n{n_pieces}-{seconds:g}s-seed{seed}-{short_hash(exclusion)}"
    if not force and finished(folder, params):
        return Benchmark(folder)
    if exclude_pieces is None:
        exclude_pieces = (starter_render_pieces(resolve_source(source, starter_root, cache_dir))
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
    return write_benchmark(folder, "starter-music", params, {"mixture": mixture, "stems": stems, "parts": parts},
                           items, {"stems": list(STEMS), "parts_order": "SATB", "excluded_pieces": exclude,
                                    "render": "music21 Bach chorales, fluidsynth + FluidR3_GM, one pass per voice"})


def _starter_mids() -> dict[str, str]:
    from ..recipes.starter import STARTER_CLASSES

    return {name: mid for mid, name in STARTER_CLASSES}
