"""The offline default dataset, **starter**: real recordings shipped by Debian and PyPI packages, laid into
AudioSet-style weakly labelled 10 s clips at 32 kHz by :func:`ussnb.data.compose.compose_weak_dataset`.

Where the sounds come from (all installed by ``apt-get`` / ``pip``, nothing downloaded at run time):

============================  ==========================================================================
hydrogen-drumkits             recorded acoustic drum kits; each kit's ``drumkit.xml`` names its instruments
sonic-pi-samples              freesound recordings (CC0): kit drums by one drummer, tabla strokes, a tabla loop
lmms-common                   sampled drums and single-instrument recordings (piano, organ, violin, ...)
asterisk-core-sounds-*-g722   studio-recorded telephone prompts, one speaker per package (see SPEAKERS)
klettres-data                 recorded letters and syllables, one or two speakers per language
music21 + fluid-soundfont-gm  Bach chorale parts rendered with fluidsynth and the FluidR3 GM soundfont
                              (recorded instrument samples, *rendered*: one sampled instrument per class)
============================  ==========================================================================

Every event carries its AudioSet MID (:data:`STARTER_CLASSES`), its package and its licence. The unit that
is kept inside one split is the source ``recording``; recordings are grouped (``<group>::<take>``) by the
physical source they come from — a drum kit, a speaker, a soundfont instrument — and when a class has at
least three groups whole groups go to one split, so test sounds come from kits/speakers not heard in
training (see :func:`assign_group_splits`).

Entry points: :func:`check_requirements`, :func:`install_requirements`, :func:`collect_starter_events`,
:func:`prepare_starter`, :func:`starter_info`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ...errors import DataError
from ...io import stable_seed
from ...system_packages import AptPackage, apt_packages, install_command, read_list
from ...paths import data_root
from ..compose import SPLITS, SourceEvent, compose_weak_dataset, is_complete, trim_silence
from .. import render

RECIPE_VERSION = 1
SAMPLE_RATE = 32000
MAX_EVENT_SECONDS = 4.0

# --------------------------------------------------------------------------------------------------------
# classes
# --------------------------------------------------------------------------------------------------------
#: (AudioSet MID, AudioSet display name) of every starter class, in a fixed order.
STARTER_CLASSES: list[tuple[str, str]] = [
    # recorded percussion
    ("/m/0bm02", "Bass drum"),
    ("/m/06rvn", "Snare drum"),
    ("/m/03qtq", "Hi-hat"),
    ("/m/01qbl", "Cymbal"),
    ("/m/07brj", "Tambourine"),
    ("/m/01p970", "Tabla"),
    # recorded speech
    ("/m/05zppz", "Male speech, man speaking"),
    ("/m/02zsn", "Female speech, woman speaking"),
    ("/m/0ytgt", "Child speech, kid speaking"),
    # instruments: music21 parts rendered with FluidR3_GM (+ a few lmms recordings)
    ("/m/05r5c", "Piano"),
    ("/m/03q5t", "Harpsichord"),
    ("/m/013y1f", "Organ"),
    ("/m/042v_gx", "Acoustic guitar"),
    ("/m/018j2", "Banjo"),
    ("/m/03m5k", "Harp"),
    ("/m/0dwsp", "Marimba, xylophone"),
    ("/m/0dwtp", "Glockenspiel"),
    ("/m/0l14jd", "Choir"),
    ("/m/0l14j_", "Flute"),
    ("/m/01wy6", "Clarinet"),
    ("/m/06ncr", "Saxophone"),
    ("/m/07gql", "Trumpet"),
    ("/m/07c6l", "Trombone"),
    ("/m/0319l", "French horn"),
    ("/m/07y_7", "Violin, fiddle"),
    ("/m/01xqw", "Cello"),
    ("/m/02fsn", "Double bass"),
]
_NAME_TO_MID = {name: mid for mid, name in STARTER_CLASSES}
_MID_TO_NAME = {mid: name for mid, name in STARTER_CLASSES}

# --------------------------------------------------------------------------------------------------------
# packages
# --------------------------------------------------------------------------------------------------------
#: Debian packages the recipe reads: the "starter" group of ``ussnb/resources/apt-packages.txt`` (the one list
#: the Makefile and ``ussnb doctor`` read too) plus the renderer and decoder it uses.
STARTER_APT_PACKAGES: list[str] = apt_packages("starter") + ["fluid-soundfont-gm", "fluidsynth", "ffmpeg"]
#: PyPI packages the recipe imports (also dependencies of ussnb itself).
STARTER_PIP_PACKAGES: list[str] = ["music21", "pretty_midi"]

_HYDROGEN = "/usr/share/hydrogen/data/drumkits"
_SONIC_PI = "/usr/share/sonic-pi/samples"
_LMMS = "/usr/share/lmms/samples"
_KLETTRES = "/usr/share/klettres"
_ASTERISK = "/usr/share/asterisk/sounds"

_APT: dict[str, AptPackage] = {p.name: p for p in read_list()}
_PIP_MODULES = {"music21": "music21", "pretty_midi": "pretty_midi"}

RENDER_SOURCE = "music21+fluid-soundfont-gm"

#: Licence of each source (package), as stated in its Debian copyright file / PyPI metadata.
PACKAGE_LICENCES: dict[str, str] = {
    "hydrogen-drumkits": "per kit: GPL-2, GPL-2+, CC-BY-3.0, CC-BY-SA-3.0-US (see the kit rows)",
    "sonic-pi-samples": "CC0-1.0 (freesound.org uploads, listed in samples/README.md)",
    "lmms-common": "GPL-2+",
    "asterisk-core-sounds-en-g722": "CC-BY-SA-3.0 (Allison Smith)",
    "asterisk-core-sounds-es-g722": "CC-BY-SA-3.0 (Allison Smith)",
    "asterisk-core-sounds-fr-g722": "CC-BY-SA-3.0 (June Wallack)",
    "asterisk-core-sounds-it-g722": "CC-BY-3.0 (Carlo Flora)",
    "asterisk-core-sounds-ru-g722": "CC-BY-3.0 (ivrvoice.ru)",
    "klettres-data": "GPL-2+",
    RENDER_SOURCE: "scores: music21 corpus (Bach chorales, public-domain music; music21 BSD-3-Clause); "
                   "samples: FluidR3_GM.sf2 (MIT)",
}

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


@dataclass(frozen=True)
class SpeechSource:
    """One speaker folder: package, folder, class, speaker (= split group), F0 bounds used to drop files."""

    package: str
    folder: str
    label: str
    speaker: str
    licence: str
    f0_range: tuple[float, float] | None = None  # keep files whose median F0 (Hz) lies inside


#: Speech folders. Asterisk folder names state the speaker's sex; KLettres speakers are those its
#: handbook credits, checked by median F0 per file (adult male < 165 Hz; the pt_BR child ≈ 250-350 Hz).
#: Left out: KLettres folders whose credited speaker disagrees with the voice heard (it, he, de/alpha,
#: nl, es two speakers with overlapping F0) or whose speaker is not credited and F0 is ambiguous.
SPEAKERS: list[SpeechSource] = [
    SpeechSource("asterisk-core-sounds-en-g722", "en_US_f_Allison", "Female speech, woman speaking",
                 "Allison Smith", "CC-BY-SA-3.0"),
    SpeechSource("asterisk-core-sounds-es-g722", "es_MX_f_Allison", "Female speech, woman speaking",
                 "Allison Smith", "CC-BY-SA-3.0"),
    SpeechSource("asterisk-core-sounds-fr-g722", "fr_CA_f_June", "Female speech, woman speaking",
                 "June Wallack", "CC-BY-SA-3.0"),
    SpeechSource("asterisk-core-sounds-ru-g722", "ru_RU_f_IvrvoiceRU", "Female speech, woman speaking",
                 "ivrvoice.ru (female voice)", "CC-BY-3.0"),
    SpeechSource("asterisk-core-sounds-it-g722", "it_IT_m_Carlo", "Male speech, man speaking",
                 "Carlo Flora", "CC-BY-3.0"),
    SpeechSource("klettres-data", "cs", "Female speech, woman speaking", "Eva Mikulčíková (cs)", "GPL-2+",
                 (175.0, 330.0)),
    SpeechSource("klettres-data", "en", "Male speech, man speaking", "Robert Wadley (en)", "GPL-2+",
                 (70.0, 165.0)),
    SpeechSource("klettres-data", "fr", "Male speech, man speaking", "Ludovic Grossard (fr)", "GPL-2+",
                 (70.0, 165.0)),
    SpeechSource("klettres-data", "da", "Male speech, man speaking", "Erik Kjaer Pedersen (da)", "GPL-2+",
                 (70.0, 165.0)),
    SpeechSource("klettres-data", "de/syllab", "Male speech, man speaking", "Helmut Kriege (de)", "GPL-2+",
                 (70.0, 165.0)),
    SpeechSource("klettres-data", "nds", "Male speech, man speaking",
                 "Manfred Wiese and Sönke Dibbern (nds)", "GPL-2+", (70.0, 165.0)),
    SpeechSource("klettres-data", "hu", "Male speech, man speaking", "uncredited male voice (hu)", "GPL-2+",
                 (70.0, 165.0)),
    SpeechSource("klettres-data", "ml", "Male speech, man speaking", "uncredited male voice (ml)", "GPL-2+",
                 (70.0, 165.0)),
    SpeechSource("klettres-data", "pt_BR", "Child speech, kid speaking", "Michelle Monte, 9 years (pt_BR)",
                 "GPL-2+", (235.0, 500.0)),
]


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


# --------------------------------------------------------------------------------------------------------
# requirements
# --------------------------------------------------------------------------------------------------------
def _package_present(package: str) -> bool:
    """Whether a starter apt/pip package is installed (monkeypatched in tests)."""
    if package in _PIP_MODULES:
        return importlib.util.find_spec(_PIP_MODULES[package]) is not None
    return _APT[package].installed()


def missing_requirements() -> tuple[list[str], list[str]]:
    """(missing apt packages, missing pip packages)."""
    apt = [p for p in STARTER_APT_PACKAGES if not _package_present(p)]
    pip = [p for p in STARTER_PIP_PACKAGES if not _package_present(p)]
    return apt, pip


def check_requirements() -> None:
    """Raise :class:`DataError` naming every missing package and the command that installs it."""
    apt, pip = missing_requirements()
    if not apt and not pip:
        return
    parts = []
    if apt:
        what = f"{apt[0]} is" if len(apt) == 1 else f"{', '.join(apt)} are"
        parts.append(f"{what} not installed: run `{install_command(apt)}`")
    if pip:
        what = f"{pip[0]} is" if len(pip) == 1 else f"{', '.join(pip)} are"
        parts.append(f"{what} not installed: run `pip install {' '.join(pip)}`")
    raise DataError("the starter dataset is made from packaged recordings; " + "; ".join(parts)
                    + " (or, as root, `ussnb data prepare starter --install`)")


def install_requirements() -> None:
    """Install missing apt packages (as root) and pip packages; raise the clear :class:`DataError` otherwise."""
    apt, pip = missing_requirements()
    if apt:
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
            check_requirements()
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *apt]
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            if subprocess.run(cmd, env=env).returncode != 0:
                raise DataError(f"`{' '.join(cmd)}` failed; install these packages by hand: {' '.join(apt)}")
    if pip:
        cmd = [sys.executable, "-m", "pip", "install", *pip]
        if subprocess.run(cmd).returncode != 0:
            raise DataError(f"`{' '.join(cmd)}` failed; install these packages by hand: {' '.join(pip)}")
    check_requirements()


# --------------------------------------------------------------------------------------------------------
# scanning the packages
# --------------------------------------------------------------------------------------------------------
@dataclass
class _Candidate:
    path: str
    label: str
    group: str        # physical source: kit, uploader, speaker, soundfont instrument
    take: str         # the recording inside the group
    source: str       # package
    licence: str
    excerpts: list[tuple[float, float | None]] | None = None
    long_form: bool = False  # a played passage (not a one-shot): cut into several excerpts when long


def _hydrogen_candidates() -> list[_Candidate]:
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
                    out.append(_Candidate(str(path), label, f"hydrogen-drumkits/{kit}", f"{name}/{f}",
                                          "hydrogen-drumkits", f"{licence} (hydrogen kit {kit})"))
    return out


def _sonic_pi_candidates() -> list[_Candidate]:
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
        out.append(_Candidate(str(path), label, f"sonic-pi-samples/{group}", stem, "sonic-pi-samples",
                              "CC0-1.0 (freesound.org, sonic-pi samples README)",
                              long_form=stem.startswith("loop_")))
    return out


def _lmms_candidates() -> list[_Candidate]:
    out = []
    for rel, label in sorted(_LMMS_FILES.items()):
        path = Path(_LMMS) / rel
        if path.is_file():
            kind = "drums" if rel.startswith("drums/") else "instruments"
            out.append(_Candidate(str(path), label, f"lmms-common/{kind}", rel, "lmms-common", "GPL-2+",
                                  long_form=kind == "instruments"))
    return out


def _near_duplicate_filter(cands: list[_Candidate], progress: bool) -> list[_Candidate]:
    """Drop exact copies (same bytes) and gain-scaled copies (velocity 'layers' made from one take:
    lag-tolerant normalised cross-correlation > 0.98 within the same group and class)."""
    from scipy.signal import fftconvolve
    from ...progress import progress_iter

    from ...audio import load_audio

    seen_hash: set[str] = set()
    kept: list[_Candidate] = []
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


def _excerpts_of(wave: np.ndarray, sr: int, max_seconds: float = MAX_EVENT_SECONDS, max_count: int = 3,
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


def _median_f0(wave: np.ndarray, sr: int) -> float:
    import librosa

    f0 = librosa.yin(wave, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=wave, frame_length=1024, hop_length=256)[0]
    n = min(len(f0), len(rms))
    voiced = f0[:n][rms[:n] > 0.3 * rms[:n].max()] if n else f0[:0]
    return float(np.median(voiced)) if voiced.size else float("nan")


def _evenly(items: list, k: int) -> list:
    if k <= 0 or len(items) <= k:
        return list(items)
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in sorted(set(idx.tolist()))]


def _speech_candidates(speakers: Sequence[SpeechSource], cache_dir: Path, max_per_speaker: int,
                       progress: bool) -> list[_Candidate]:
    """Decode prompts (g722 via ffmpeg), keep files whose F0 fits the speaker, cut ≤ 4 s excerpts."""
    import soundfile as sf
    from ...progress import progress_iter

    from ...audio import load_audio, save_audio

    jobs = []
    for spk in speakers:
        if spk.package.startswith("asterisk"):
            files = sorted(Path(_ASTERISK, spk.folder).glob("*.g722"))  # top level: sentences
        else:
            files = sorted(p for p in Path(_KLETTRES, spk.folder).rglob("*") if p.suffix in (".ogg", ".wav"))
        for f in _evenly(files, max_per_speaker if spk.f0_range is None else 2 * max_per_speaker):
            jobs.append((spk, f))
    out: list[_Candidate] = []
    kept_per_speaker: dict[str, int] = defaultdict(int)
    decoded_dir = cache_dir / "speech"
    for spk, f in progress_iter(jobs, desc="starter: speech", unit="file", disable=not progress):
        key = (spk.package, spk.folder)
        if kept_per_speaker[key] >= max_per_speaker:
            continue
        rel = Path(spk.package) / f.relative_to(_ASTERISK if spk.package.startswith("asterisk") else _KLETTRES)
        target = (decoded_dir / rel).with_suffix(".flac")
        if not target.is_file():
            try:
                wave = load_audio(f, 16000)
            except Exception:
                continue
            if float(np.max(np.abs(wave))) < 1e-3:
                continue
            save_audio(target, wave, 16000)
        wave, sr = sf.read(str(target), dtype="float32")
        if spk.f0_range is not None:
            f0 = _median_f0(wave, sr)
            if not (spk.f0_range[0] <= f0 <= spk.f0_range[1]):
                continue
        excerpts = _excerpts_of(wave, sr)
        if not excerpts:
            continue
        kept_per_speaker[key] += 1
        out.append(_Candidate(str(target), spk.label, f"speaker/{spk.speaker}",
                              f"{spk.folder}/{f.name}", spk.package, spk.licence, excerpts))
    return out


def _long_recording_excerpts(cands: list[_Candidate]) -> None:
    """Give played passages longer than 4 s (lmms organ, sonic-pi tabla loop, ...) several excerpts.
    One-shots (a drum hit, a cymbal's decay) stay whole: compose trims them and keeps their first 4 s."""
    import soundfile as sf

    from ...audio import load_audio

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
            c.excerpts = _excerpts_of(wave, 16000)


# --------------------------------------------------------------------------------------------------------
# rendering music21 chorales
# --------------------------------------------------------------------------------------------------------
def _render_class(spec: RenderSpec, class_index: int, pieces: int, cache_dir: Path,
                  soundfont: str) -> list[_Candidate]:
    """Render ``pieces`` chorales for one class into one cached FLAC; 2 excerpts per chorale."""
    import pretty_midi

    from ...audio import save_audio

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
    return [_Candidate(str(audio_path), spec.label, group, row["piece"], RENDER_SOURCE,
                       PACKAGE_LICENCES[RENDER_SOURCE], [tuple(e) for e in row["excerpts"]])
            for row in rows]


# --------------------------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------------------------
def _select_classes(classes: Iterable[str] | None) -> list[str]:
    if classes is None:
        return [name for _, name in STARTER_CLASSES]
    chosen = []
    for c in classes:
        name = _MID_TO_NAME.get(c, c)
        if name not in _NAME_TO_MID:
            raise DataError(f"'{c}' is not a starter class; choose from: {', '.join(_NAME_TO_MID)}")
        chosen.append(name)
    return chosen


def _fingerprint(params: dict) -> str:
    """Hash of the recipe parameters, of this module's code and of the installed files it reads."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for code in (Path(__file__), Path(render.__file__)):  # the recipe's code and the rendering it uses
        h.update(code.read_bytes())
    for root in (_HYDROGEN, _SONIC_PI, _LMMS, _KLETTRES, _ASTERISK):
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
    from ...progress import progress_iter

    check_requirements()
    names = _select_classes(classes)
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
    cands: list[_Candidate] = []
    samples = [c for c in _hydrogen_candidates() + _sonic_pi_candidates() + _lmms_candidates()
               if c.label in wanted]
    samples = _near_duplicate_filter(samples, progress)
    _long_recording_excerpts(samples)
    cands += samples
    speakers = [s for s in SPEAKERS if s.label in wanted]
    if speakers:
        cands += _speech_candidates(speakers, cache_dir, max_per_speaker, progress)
    specs = [(i, s) for i, s in enumerate(RENDER_SPECS) if s.label in wanted]
    for i, spec in progress_iter(specs, desc="starter: rendering chorales", unit="class", disable=not progress):
        cands += _render_class(spec, i, pieces_per_class, cache_dir, render.SOUNDFONT)

    order = {name: i for i, name in enumerate(names)}
    events: list[SourceEvent] = []
    for c in cands:
        mid = _NAME_TO_MID[c.label]
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


# --------------------------------------------------------------------------------------------------------
# prepare + info
# --------------------------------------------------------------------------------------------------------
def starter_dir(root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / "starter"


def prepare_starter(
    root: str | os.PathLike | None = None,
    *,
    n_train: int = 1500,
    n_validation: int = 200,
    n_test: int = 300,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    classes: Iterable[str] | None = None,
    pieces_per_class: int = 30,
    max_per_speaker: int = 60,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Build ``<data root>/starter/`` (idempotent) and return its path.

    Writes the weakly labelled clips (``train/``, ``validation/``, ``test/`` with ``metadata.jsonl``), the
    hidden ``events.jsonl``, ``info.json``, ``SOURCES.md`` and the ``.complete`` marker. When the marker
    records the same parameters the folder is returned at once (``force=True`` rebuilds).

    Args:
        root: data root (default :func:`ussnb.paths.data_root`, i.e. ``USSNB_DATA`` or ``./data``).
        n_train, n_validation, n_test: clips per split (10 s each).
        seed: the split of recordings and the composition of clips.
        classes, pieces_per_class, max_per_speaker: see :func:`collect_starter_events` (for small test sets).
        cache_dir: renders and decoded speech (default ``$USSNB_DATA/.cache/starter``, shared by every size variant).
    """
    out = starter_dir(root)
    names = _select_classes(classes)
    marker = {"recipe": "starter", "version": RECIPE_VERSION, "seed": seed,
              "n_clips": {"train": n_train, "validation": n_validation, "test": n_test},
              "classes": names, "pieces_per_class": pieces_per_class, "max_per_speaker": max_per_speaker}
    if not force and is_complete(out, marker) and (out / "SOURCES.md").is_file():
        return out
    check_requirements()
    cache = Path(cache_dir) if cache_dir is not None else data_root() / ".cache" / "starter"  # shared by all sizes
    events = collect_starter_events(cache, progress, classes=names, pieces_per_class=pieces_per_class,
                                    max_per_speaker=max_per_speaker)
    split_of, modes = assign_group_splits(events, seed=seed)
    groups: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        groups[ev.label].add(recording_group(ev.recording))
    extra = {
        "recipe": "starter", "recipe_version": RECIPE_VERSION,
        "split_mode": modes,
        "groups_per_class": {label: len(g) for label, g in sorted(groups.items())},
        "packages": sorted({ev.source for ev in events}),
    }
    compose_weak_dataset(
        events, out, name="starter",
        n_clips={"train": n_train, "validation": n_validation, "test": n_test},
        seed=seed, sample_rate=SAMPLE_RATE, clip_seconds=10.0, max_event_seconds=MAX_EVENT_SECONDS,
        split_of=split_of, extra_info=extra, marker_params=marker, progress=progress,
    )
    write_sources_md(out, events, split_of, modes)
    return out


def write_sources_md(out_dir: str | os.PathLike, events: Sequence[SourceEvent], split_of: dict[str, str],
                     modes: dict[str, str]) -> Path:
    """Write ``SOURCES.md``: packages, licences, counts per package and per class."""
    out_dir = Path(out_dir)
    per_source: dict[str, dict] = {}
    per_licence: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    per_class: dict[str, dict] = {}
    for ev in events:
        s = per_source.setdefault(ev.source, {"events": 0, "recordings": set(), "classes": set()})
        s["events"] += 1
        s["recordings"].add(ev.recording)
        s["classes"].add(ev.label)
        per_licence[ev.source][ev.licence].add(ev.recording)
        c = per_class.setdefault(ev.label, {"mid": ev.mid, "recordings": set(), "groups": set(),
                                            "sources": defaultdict(set), "events": 0,
                                            "splits": defaultdict(set)})
        c["events"] += 1
        c["recordings"].add(ev.recording)
        c["groups"].add(recording_group(ev.recording))
        c["sources"][ev.source].add(ev.recording)
        c["splits"][split_of[ev.recording]].add(ev.recording)
    lines = [
        "# starter dataset — sources",
        "",
        "Made by `ussnb data prepare starter` (`ussnb/data/recipes/starter.py`) from recordings that Debian",
        "and PyPI packages ship. Each *event* is one excerpt (≤ 4 s) of a *recording*; all excerpts of a",
        "recording stay in one split. A *group* is the physical source of recordings (a drum kit, a",
        "freesound uploader, a speaker, one soundfont instrument).",
        "",
        "Instrument classes marked *rendered* are Bach chorale parts from the music21 corpus rendered with",
        "fluidsynth and FluidR3_GM.sf2: the soundfont holds recordings of real instruments, but every piece",
        "of one class is played by the same sampled instrument, so a 'recording' there means a distinct",
        "piece excerpt, not a distinct performer or instrument.",
        "",
        "## Packages",
        "",
        "| package | licence | classes | recordings | events |",
        "|---|---|---:|---:|---:|",
    ]
    for source in sorted(per_source):
        s = per_source[source]
        lines.append(f"| {source} | {PACKAGE_LICENCES.get(source, '')} | {len(s['classes'])} | "
                     f"{len(s['recordings'])} | {s['events']} |")
    lines += ["", "### Licences of the recordings used", "", "| package | licence | recordings |", "|---|---|---:|"]
    for source in sorted(per_licence):
        for licence in sorted(per_licence[source]):
            lines.append(f"| {source} | {licence} | {len(per_licence[source][licence])} |")
    lines += ["", "## Classes", "",
              "| AudioSet MID | class | sources (recordings) | recordings | groups | events | "
              "train / val / test recordings | split |",
              "|---|---|---|---:|---:|---:|---|---|"]
    order = {name: i for i, (_, name) in enumerate(STARTER_CLASSES)}
    for label in sorted(per_class, key=lambda n: order.get(n, 999)):
        c = per_class[label]
        sources = ", ".join(f"{s} ({len(r)})" for s, r in sorted(c["sources"].items()))
        splits = " / ".join(str(len(c["splits"].get(s, ()))) for s in SPLITS)
        rendered = " *rendered*" if RENDER_SOURCE in c["sources"] else ""
        lines.append(f"| `{c['mid']}` | {label}{rendered} | {sources} | {len(c['recordings'])} | "
                     f"{len(c['groups'])} | {c['events']} | {splits} | {modes.get(label, '')} |")
    lines += ["", "## Groups per class", ""]
    for label in sorted(per_class, key=lambda n: order.get(n, 999)):
        groups = sorted(per_class[label]["groups"])
        lines.append(f"- **{label}**: " + "; ".join(groups))
    lines += ["", "## Known limitations", "",
              "- Speakers: female speech comes from 4 speakers (Allison Smith recorded both the en and es",
              "  prompts), male speech from 8 folders (9 speakers), child speech from a single child (pt_BR",
              "  KLettres, files with median F0 < 235 Hz dropped because the father recorded some).",
              "- Speech sexes follow the packages' own metadata (asterisk folder names, KLettres credits) and",
              "  were checked only by median F0 per file, not by listening.",
              "- Tambourine has 2 physical tambourines, Tabla 2 (one player's strokes + one loop); their",
              "  splits are by recording, so test excerpts come from instruments also heard in training.",
              "- Hi-hat is an AudioSet child of Cymbal; here a crash/ride/china/splash is labelled Cymbal and",
              "  a hi-hat only Hi-hat (leaf labels, as AudioSet annotators mostly did).",
              "- *Choir* is FluidR3's 'Choir Aahs' patch (sampled voices singing 'aah'), not a recorded choir.",
              ""]
    path = out_dir / "SOURCES.md"
    path.write_text("\n".join(lines))
    return path


def starter_info(root: str | os.PathLike | None = None) -> dict:
    """Summary of a prepared starter set (for ``ussnb data info starter --json``).

    Keys: ``path``, ``complete``, ``n_classes``, ``n_clips`` {train, validation, test}, ``hours``,
    ``n_packages``, ``packages``, ``min_recordings_per_class``, ``classes`` (mid, name, n_recordings,
    sources, recordings_per_split), ``sources``, ``split_mode``.
    """
    out = starter_dir(root)
    info_path = out / "info.json"
    if not info_path.is_file():
        raise DataError(f"the starter dataset is not prepared in {out}: run `ussnb data prepare starter`")
    info = json.loads(info_path.read_text())
    return {
        "name": "starter",
        "path": str(out),
        "complete": is_complete(out),
        "n_classes": info["n_classes"],
        "n_clips": info["n_clips"],
        "hours": info["hours"],
        "n_packages": info["n_packages"],
        "packages": info.get("packages", [s["source"] for s in info.get("sources", [])]),
        "min_recordings_per_class": info["min_recordings_per_class"],
        "classes": info.get("classes", []),
        "sources": info.get("sources", []),
        "split_mode": info.get("split_mode", {}),
        "sample_rate": info.get("sample_rate", SAMPLE_RATE),
        "clip_seconds": info.get("clip_seconds", 10.0),
    }


__all__ = [
    "STARTER_CLASSES", "STARTER_APT_PACKAGES", "STARTER_PIP_PACKAGES", "PACKAGE_LICENCES", "SPEAKERS",
    "RENDER_SPECS", "check_requirements", "install_requirements", "missing_requirements",
    "collect_starter_events", "recording_group", "assign_group_splits", "prepare_starter",
    "write_sources_md", "starter_info", "starter_dir",
]
