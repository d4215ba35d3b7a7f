"""Music rendered with fluidsynth: Bach chorales from the music21 corpus as notes, the notes made safe for the
synthesiser, the render itself and the envelope that keeps only the wanted excerpts of it.

Used by the starter recipe (its rendered instrument classes, :mod:`ussnb.data.recipes.starter`) and by the
``starter-music`` test set, so both hear the same instruments played the same way: FluidR3_GM
(``fluid-soundfont-gm``), gain 0.6, no reverb, no chorus.
"""
from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import DataError

#: The General MIDI soundfont of Debian's ``fluid-soundfont-gm`` (recorded instrument samples, MIT).
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

_CHORALE_CACHE: dict[str, dict | None] = {}


def chorale_pool() -> list[str]:
    """Paths of the music21 corpus's Bach scores (``.mxl``), sorted; :func:`chorale_notes` keeps the SATB ones."""
    from music21 import corpus

    paths = sorted(str(p) for p in corpus.getComposer("bach") if str(p).endswith(".mxl"))
    return paths


def chorale_notes(path: str) -> dict | None:
    """{'S': [(onset_q, dur_q, [midi...]), ...], 'A': ..., 'T': ..., 'B': ..., 'length': q} or None."""
    if path in _CHORALE_CACHE:
        return _CHORALE_CACHE[path]
    from music21 import corpus

    result = None
    try:
        score = corpus.parse(path)
        parts = list(score.parts)
        names = [(p.partName or "").strip().lower() for p in parts]
        want = {"soprano": "S", "alto": "A", "tenor": "T", "bass": "B"}
        if len(parts) == 4 and sorted(names) == sorted(want):
            result = {"length": float(score.highestTime)}
            for part, name in zip(parts, names):
                notes = []
                for n in part.stripTies().flatten().notes:
                    pitches = [p.midi for p in n.pitches]
                    if pitches and float(n.quarterLength) > 0:
                        notes.append((float(n.offset), float(n.quarterLength), pitches))
                result[want[name]] = notes
            if any(len(result[v]) < 8 for v in "SATB"):
                result = None
    except Exception:
        result = None
    _CHORALE_CACHE[path] = result
    return result


def clean_notes(notes: list[tuple[float, float, int]], gap: float = 0.01) -> list[tuple[float, float, int]]:
    """Merge same-pitch notes that overlap (unisons between voices) and shorten a note that ends where the
    next one of its pitch starts, so no MIDI note-on/off pair of one key shares a tick (fluidsynth then
    may keep a voice sounding for ever)."""
    by_pitch: dict[int, list[list[float]]] = defaultdict(list)
    for start, end, p in sorted(notes):
        runs = by_pitch[p]
        if runs and start < runs[-1][1] + gap:
            if start - runs[-1][0] >= 2 * gap and start >= runs[-1][1]:
                runs[-1][1] = start - gap          # touching: end the earlier note just before
                runs.append([start, end])
            else:
                runs[-1][1] = max(runs[-1][1], end)  # overlapping unison: one longer note
        else:
            runs.append([start, end])
    return sorted((s, e, p) for p, runs in by_pitch.items() for s, e in runs if e - s >= gap)


def excerpt_envelope(rows: list[dict], n: int, sr: int, fade: float = 0.3) -> np.ndarray:
    """1 inside each excerpt, a linear fade-out over its last ``fade`` s, 0 between excerpts (release tails
    and anything else the synthesiser left there)."""
    env = np.zeros(n, dtype=np.float32)
    for row in rows:
        for start, end in row["excerpts"]:
            a, b = int(round(start * sr)), min(n, int(round(end * sr)))
            f = min(int(fade * sr), max(0, b - a))
            env[a:b] = 1.0
            if f:
                env[b - f:b] = np.linspace(1.0, 0.0, f, dtype=np.float32)
    return env


def render_midi(midi, scratch: str | Path, *, sample_rate: int, what: str, soundfont: str = SOUNDFONT,
                timeout: float = 300.0) -> np.ndarray:
    """Render a ``pretty_midi.PrettyMIDI`` with fluidsynth; ``(samples,)`` float32 at ``sample_rate`` (channels
    averaged).

    The MIDI file and the render are written beside ``scratch`` (``scratch.mid``, ``scratch.wav``) and removed
    afterwards. An hour of audio renders in well under a minute; a stuck voice would render for ever, so after
    ``timeout`` s it is a :class:`DataError`, as is a failed render (``what`` names the render in the message).
    """
    import soundfile as sf

    scratch = Path(scratch)
    mid, wav = scratch.with_suffix(".mid"), scratch.with_suffix(".wav")
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-R", "0", "-C", "0", "-r", str(sample_rate),
           "-O", "float", "-T", "wav", "-F", str(wav), soundfont, str(mid)]
    try:
        midi.write(str(mid))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DataError(f"fluidsynth did not finish rendering {what} within {timeout:g} s") from exc
        if proc.returncode != 0 or not wav.is_file():
            raise DataError(f"fluidsynth failed rendering {what}: {proc.stderr.strip()[-300:]}")
        wave, _ = sf.read(str(wav), dtype="float32", always_2d=True)
        return wave.mean(axis=1)
    finally:
        mid.unlink(missing_ok=True)
        wav.unlink(missing_ok=True)


__all__ = ["SOUNDFONT", "chorale_notes", "chorale_pool", "clean_notes", "excerpt_envelope", "render_midi"]
