"""Recorded samples of the starter set: drum kits (hydrogen-drumkits), freesound drums and tabla
(sonic-pi-samples) and sampled instruments (lmms-common), found by the packages' own file names and metadata,
with exact and gain-scaled copies dropped and played passages cut into excerpts (:func:`excerpts_of`)."""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np

from ...compose import trim_silence
from .catalogue import MAX_EVENT_SECONDS, Candidate

_HYDROGEN = "/usr/share/hydrogen/data/drumkits"
_SONIC_PI = "/usr/share/sonic-pi/samples"
_LMMS = "/usr/share/lmms/samples"
#: The installed folders these samples are read from (their files are part of the recipe's fingerprint).
INSTALLED_DIRS = (_HYDROGEN, _SONIC_PI, _LMMS)

# Hydrogen kits whose samples are recorded acoustic instruments with instrument names we trust. Left out:
# ElectricEmpireKit, HardElectro1 (synthetic), VariBreaks (provenance unknown), Audiophob (freesound
# mix whose names disagree with its files: its "Kick" is a tom, its "Pedal HH" a shaker), circAfrique
# (djembes and dununs: no AudioSet class of their own).
_HYDROGEN_KITS: dict[str, str] = {
    "BJA_Pacific": "CC-BY-SA-3.0-US",
    "ColomboAcousticDrumkit": "GPL-2+ with composition exception",
    "ForzeeStereo": "GPL-2",
    "Gimme A Hand 1.0": "GPL-2",
    "Millo-Drums_v.1": "GPL-2",
    "Millo_MultiLayered2": "GPL-2",
    "Millo_MultiLayered3": "GPL-2",
    "The Black Pearl 1.0": "GPL-2",
    "rumpf_kit_z01_h2": "CC-BY-3.0",
}
# Instrument name (lower case) -> class. First match wins; names matching _HYDROGEN_SKIP are ignored.
_HYDROGEN_SKIP = re.compile(r"roll|stick|rim click|^\d+$|^sample:")
_HYDROGEN_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"tambourine"), "Tambourine"),
    (re.compile(r"\bhh\b|hi-?\s?hat|\bhat\b"), "Hi-hat"),
    (re.compile(r"kick|bass\s?drum"), "Bass drum"),
    (re.compile(r"snare"), "Snare drum"),
    (re.compile(r"crash|ride|china|splash|cymbal"), "Cymbal"),
]

# sonic-pi-samples: file stem -> (class, freesound uploader = group). Only acoustic recordings whose
# README entry names the instrument; drum_* are one kit recorded by "menegass".
_SONIC_PI_FILES: dict[str, tuple[str, str]] = {
    "drum_bass_hard": ("Bass drum", "menegass"), "drum_bass_soft": ("Bass drum", "menegass"),
    "drum_heavy_kick": ("Bass drum", "Zajo"),
    "drum_snare_hard": ("Snare drum", "menegass"), "drum_snare_soft": ("Snare drum", "menegass"),
    "drum_cymbal_closed": ("Hi-hat", "menegass"), "drum_cymbal_open": ("Hi-hat", "menegass"),
    "drum_cymbal_pedal": ("Hi-hat", "menegass"),
    "drum_cymbal_hard": ("Cymbal", "menegass"), "drum_cymbal_soft": ("Cymbal", "menegass"),
    "drum_splash_hard": ("Cymbal", "menegass"), "drum_splash_soft": ("Cymbal", "menegass"),
    "loop_tabla": ("Tabla", "lezaarth"),
}
_SONIC_PI_TABLA = re.compile(r"^tabla_")  # 26 single strokes uploaded by dio_333

# lmms-common: relative path -> class. Drum samples named acoustic (or cymbals/hats, which drum machines
# also sampled from real cymbals) and single-instrument recordings; provenance beyond GPL-2+ undocumented.
# (instruments/harpsichord01.ogg is left out: a WAV holding Vorbis data that neither libsndfile nor ffmpeg
# decodes.)
_LMMS_FILES: dict[str, str] = {
    "drums/bassdrum_acoustic01.ogg": "Bass drum", "drums/bassdrum_acoustic02.ogg": "Bass drum",
    "drums/snare_acoustic01.ogg": "Snare drum",
    **{f"drums/hihat_closed0{i}.ogg": "Hi-hat" for i in range(1, 6)},
    **{f"drums/hihat_opened0{i}.ogg": "Hi-hat" for i in range(1, 4)},
    "drums/hihat_foot_pedal01.ogg": "Hi-hat",
    "drums/crash01.ogg": "Cymbal", "drums/crash02.ogg": "Cymbal",
    "drums/ride01.ogg": "Cymbal", "drums/ride02.ogg": "Cymbal",
    "instruments/piano01.ogg": "Piano", "instruments/piano02.ogg": "Piano",
    **{f"instruments/church_organ0{i}.ogg": "Organ" for i in range(1, 5)},
    "instruments/cello01.ogg": "Cello",
    "instruments/flute01.ogg": "Flute",
    "instruments/trumpet01.ogg": "Trumpet",
    "instruments/violin_fingered01.ogg": "Violin, fiddle",
    "instruments/violin_double_stop01.ogg": "Violin, fiddle",
    **{f"latin/latin_guitar0{i}.ogg": "Acoustic guitar" for i in range(1, 4)},
}


def sample_candidates(labels: Iterable[str], progress: bool) -> list[Candidate]:
    """The recorded samples of the classes ``labels`` (display names): copies dropped
    (:func:`_near_duplicate_filter`), passages longer than 4 s cut into excerpts."""
    wanted = set(labels)
    samples = [c for c in _hydrogen_candidates() + _sonic_pi_candidates() + _lmms_candidates() if c.label in wanted]
    samples = _near_duplicate_filter(samples, progress)
    _long_recording_excerpts(samples)
    return samples


def _hydrogen_candidates() -> list[Candidate]:
    out = []
    for kit, licence in _HYDROGEN_KITS.items():
        folder = Path(_HYDROGEN) / kit
        xml = folder / "drumkit.xml"
        if not xml.is_file():
            continue
        root = ET.parse(xml).getroot()
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        for inst in root.iter(f"{ns}instrument"):
            name = (inst.findtext(f"{ns}name") or "").strip()
            key = name.lower()
            if not key or _HYDROGEN_SKIP.search(key):
                continue
            label = next((lab for rx, lab in _HYDROGEN_RULES if rx.search(key)), None)
            if label is None:
                continue
            files = sorted({(e.text or "").strip() for e in inst.iter(f"{ns}filename")} - {""})
            for f in files:
                path = folder / f
                if path.is_file() and path.stat().st_size > 1024:
                    out.append(Candidate(str(path), label, f"hydrogen-drumkits/{kit}", f"{name}/{f}",
                                         "hydrogen-drumkits", f"{licence} (hydrogen kit {kit})"))
    return out


def _sonic_pi_candidates() -> list[Candidate]:
    out = []
    folder = Path(_SONIC_PI)
    for path in sorted(folder.glob("*.flac")):
        stem = path.stem
        if stem in _SONIC_PI_FILES:
            label, group = _SONIC_PI_FILES[stem]
        elif _SONIC_PI_TABLA.match(stem):
            label, group = "Tabla", "dio_333"
        else:
            continue
        out.append(Candidate(str(path), label, f"sonic-pi-samples/{group}", stem, "sonic-pi-samples",
                             "CC0-1.0 (freesound.org, sonic-pi samples README)",
                             long_form=stem.startswith("loop_")))
    return out


def _lmms_candidates() -> list[Candidate]:
    out = []
    for rel, label in sorted(_LMMS_FILES.items()):
        path = Path(_LMMS) / rel
        if path.is_file():
            kind = "drums" if rel.startswith("drums/") else "instruments"
            out.append(Candidate(str(path), label, f"lmms-common/{kind}", rel, "lmms-common", "GPL-2+",
                                 long_form=kind == "instruments"))
    return out


def _near_duplicate_filter(cands: list[Candidate], progress: bool) -> list[Candidate]:
    """Drop exact copies (same bytes) and gain-scaled copies (velocity 'layers' made from one take:
    lag-tolerant normalised cross-correlation > 0.98 within the same group and class)."""
    from scipy.signal import fftconvolve
    from ....progress import progress_iter

    from ....audio import load_audio

    seen_hash: set[str] = set()
    kept: list[Candidate] = []
    by_key: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for c in progress_iter(cands, desc="starter: de-duplicating samples", unit="file", disable=not progress):
        digest = hashlib.sha256(Path(c.path).read_bytes()).hexdigest()
        if digest in seen_hash:
            continue
        seen_hash.add(digest)
        try:
            wave = load_audio(c.path, 16000)
        except Exception:
            continue
        wave = trim_silence(wave, 16000)[:8000].astype(np.float64)
        norm = float(np.linalg.norm(wave))
        if norm < 1e-4 or float(np.max(np.abs(wave))) < 1e-3:
            continue  # silent placeholder sample
        wave = wave / norm
        duplicate = False
        for other in by_key[(c.group, c.label)]:
            n = min(len(wave), len(other))
            xc = fftconvolve(wave[:n], other[:n][::-1], mode="full")
            scale = np.linalg.norm(wave[:n]) * np.linalg.norm(other[:n]) + 1e-12
            if float(np.max(np.abs(xc))) / scale > 0.98:
                duplicate = True
                break
        if duplicate:
            continue
        by_key[(c.group, c.label)].append(wave)
        kept.append(c)
    return kept


def excerpts_of(wave: np.ndarray, sr: int, max_seconds: float = MAX_EVENT_SECONDS, max_count: int = 3,
                min_seconds: float = 0.4) -> list[tuple[float, float]]:
    """Cut the non-silent part of a recording into ≤ ``max_seconds`` excerpts at its quietest frames."""
    hop = int(0.02 * sr)
    n = wave.shape[0] // hop
    if n < 2:
        return [(0.0, wave.shape[0] / sr)]
    rms = np.sqrt(np.mean(wave[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    db = 20 * np.log10(rms / rms.max())
    loud = np.nonzero(db > -40.0)[0]
    if loud.size == 0:
        return []
    first, last = int(loud[0]), int(loud[-1]) + 1
    max_frames = int(max_seconds / 0.02)
    min_frames = int(min_seconds / 0.02)
    out = []
    cur = first
    while cur < last and len(out) < max_count:
        if last - cur <= max_frames:
            end = last
        else:
            lo = cur + max(min_frames, int(1.5 / 0.02))
            hi = cur + max_frames
            end = lo + int(np.argmin(db[lo:hi])) if hi > lo else hi
        if end - cur >= min_frames:
            out.append((round(cur * 0.02, 3), round(end * 0.02, 3)))
        nxt = np.nonzero(db[end:last] > -40.0)[0]
        if nxt.size == 0:
            break
        cur = end + int(nxt[0])
    return out


def _long_recording_excerpts(cands: list[Candidate]) -> None:
    """Give played passages longer than 4 s (lmms organ, sonic-pi tabla loop, ...) several excerpts.
    One-shots (a drum hit, a cymbal's decay) stay whole: compose trims them and keeps their first 4 s."""
    import soundfile as sf

    from ....audio import load_audio

    for c in cands:
        if not c.long_form:
            continue
        try:
            duration = sf.info(c.path).duration
        except Exception:
            duration = None
        if duration is not None and duration <= MAX_EVENT_SECONDS + 0.5:
            continue
        wave = load_audio(c.path, 16000)
        if wave.shape[0] / 16000 > MAX_EVENT_SECONDS + 0.5:
            c.excerpts = excerpts_of(wave, 16000)
