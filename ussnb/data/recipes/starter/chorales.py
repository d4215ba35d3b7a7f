"""The starter set's rendered instrument classes: music21 Bach chorale parts played on one FluidR3 GM
instrument per class (:data:`RENDER_SPECS`), rendered into one cached FLAC per class with
:mod:`ussnb.data.render`, two excerpts per chorale."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....errors import DataError
from ... import render
from .catalogue import PACKAGE_LICENCES, RECIPE_VERSION, RENDER_SOURCE, SAMPLE_RATE, Candidate


@dataclass(frozen=True)
class RenderSpec:
    """How one instrument class is rendered: GM program, which chorale voices it plays, transposition."""

    label: str
    program: int
    voices: str  # letters from "SATB"
    transpose: int = 0
    velocity: tuple[int, int] = (70, 100)


# Left out after an independent check with the EfficientAT mn04 AudioSet tagger: FluidR3's "Accordian"
# preset (program 21) playing chorales was tagged as Piano in 24 of 24 excerpts.
RENDER_SPECS: list[RenderSpec] = [
    RenderSpec("Piano", 0, "SATB"),
    RenderSpec("Harpsichord", 6, "SATB"),
    RenderSpec("Organ", 19, "SATB"),
    RenderSpec("Acoustic guitar", 24, "SATB"),
    RenderSpec("Banjo", 105, "SA"),
    RenderSpec("Harp", 46, "SATB"),
    RenderSpec("Marimba, xylophone", 12, "SA"),
    RenderSpec("Glockenspiel", 9, "S", 12),
    RenderSpec("Choir", 52, "SATB"),
    RenderSpec("Flute", 73, "S", 12),
    RenderSpec("Clarinet", 71, "S"),
    RenderSpec("Saxophone", 65, "A"),
    RenderSpec("Trumpet", 56, "S"),
    RenderSpec("Trombone", 57, "T"),
    RenderSpec("French horn", 60, "A"),
    RenderSpec("Violin, fiddle", 40, "S"),
    RenderSpec("Cello", 42, "B"),
    RenderSpec("Double bass", 43, "B", -12),
]
_WINDOW_SECONDS = 3.2   # notes starting in a window of a chorale form one excerpt (cut at its end)
_EXCERPT_SECONDS = 4.0  # the excerpt: the window + 0.8 s of release, faded out over its last 0.3 s
_SLOT_SECONDS = 5.0     # excerpts lie this far apart in the render; outside the excerpts it is zeroed


def render_class(spec: RenderSpec, class_index: int, pieces: int, cache_dir: Path,
                 soundfont: str) -> list[Candidate]:
    """Render ``pieces`` chorales for one class into one cached FLAC; 2 excerpts per chorale."""
    import pretty_midi

    from ....audio import save_audio

    pool = render.chorale_pool()
    if not pool:
        raise DataError("music21 corpus has no Bach chorales; reinstall music21 (`pip install music21`)")
    key = hashlib.sha256(json.dumps([RECIPE_VERSION, spec.__dict__, class_index, pieces, len(pool),
                                     os.path.getsize(soundfont)], sort_keys=True).encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "-", spec.label.lower()).strip("-")
    out_dir = cache_dir / "renders"
    audio_path = out_dir / f"{slug}-{key}.flac"
    manifest_path = out_dir / f"{slug}-{key}.json"
    if audio_path.is_file() and manifest_path.is_file():
        rows = json.loads(manifest_path.read_text())
    else:
        rng = np.random.default_rng(int(key, 16) % (2 ** 32))
        # one shuffled chorale list shared by all classes, each class starting 3 places further on: the
        # classes overlap in pieces (played by other instruments, at other tempi), so few files are parsed
        shared = np.random.default_rng(2023).permutation(len(pool))
        order = np.roll(shared, -3 * class_index)
        midi = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
        inst = pretty_midi.Instrument(program=spec.program, name=spec.label)
        rows = []
        t = 0.5
        for idx in order:
            if len(rows) >= pieces:
                break
            path = pool[int(idx)]
            notes = render.chorale_notes(path)
            if notes is None:
                continue
            qpm = float(rng.uniform(66.0, 100.0))
            spq = 60.0 / qpm
            velocity = int(rng.integers(*spec.velocity))
            voice_notes = sorted((on * spq, dur * spq, p + spec.transpose)
                                 for v in spec.voices for on, dur, ps in notes[v] for p in ps)
            onsets = sorted({on for on, _, _ in voice_notes})
            length = notes["length"] * spq
            middle = min(onsets, key=lambda o: abs(o - length / 2))
            piece_rows = []
            for w0 in (0.0, middle):
                w1 = w0 + _WINDOW_SECONDS
                inside = [(on, dur, p) for on, dur, p in voice_notes if w0 <= on < w1 and 0 <= p <= 127]
                if len({on for on, _, _ in inside}) < 3:
                    continue
                window = [(on - w0, min(on + dur, w1) - w0, p) for on, dur, p in inside]
                for start, end, p in render.clean_notes(window):
                    vel = int(np.clip(velocity + rng.integers(-8, 9), 30, 127))
                    inst.notes.append(pretty_midi.Note(velocity=vel, pitch=int(p), start=round(t + start, 4),
                                                       end=round(t + end, 4)))
                piece_rows.append([round(t, 4), round(t + _EXCERPT_SECONDS, 4)])
                t += _SLOT_SECONDS
            if piece_rows:
                rows.append({"piece": Path(path).stem, "excerpts": piece_rows})
        if not rows:
            raise DataError(f"no chorale could be rendered for {spec.label}")
        # all notes off two seconds after the last one, so the player never ends on a sounding voice
        inst.control_changes.append(pretty_midi.ControlChange(123, 0, t + 2.0))
        midi.instruments.append(inst)
        out_dir.mkdir(parents=True, exist_ok=True)
        wave = render.render_midi(midi, out_dir / f".{slug}-{key}", sample_rate=SAMPLE_RATE, what=spec.label,
                                  soundfont=soundfont)
        wave = wave * render.excerpt_envelope(rows, wave.shape[0], SAMPLE_RATE)
        peak = float(np.max(np.abs(wave))) or 1.0
        save_audio(audio_path, wave * (0.9 / peak), SAMPLE_RATE)
        # keep only as many pieces as asked (rows may hold fewer if chorales were rejected)
        rows = rows[:pieces]
        manifest_path.write_text(json.dumps(rows))
    rows = rows[:pieces]
    group = f"{RENDER_SOURCE}/FluidR3_GM program {spec.program}"
    return [Candidate(str(audio_path), spec.label, group, row["piece"], RENDER_SOURCE,
                      PACKAGE_LICENCES[RENDER_SOURCE], [tuple(e) for e in row["excerpts"]])
            for row in rows]
