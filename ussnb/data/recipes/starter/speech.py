"""Recorded speech of the starter set: telephone prompts (asterisk-core-sounds-*-g722, one speaker per
package) and KLettres letters and syllables, decoded once into the recipe cache, kept only when the median F0
fits the credited speaker, cut into excerpts of at most 4 s."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .catalogue import Candidate
from .samples import excerpts_of

_KLETTRES = "/usr/share/klettres"
_ASTERISK = "/usr/share/asterisk/sounds"
#: The installed folders the speech is read from (their files are part of the recipe's fingerprint).
INSTALLED_DIRS = (_KLETTRES, _ASTERISK)


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


def speech_candidates(speakers: Sequence[SpeechSource], cache_dir: Path, max_per_speaker: int,
                      progress: bool) -> list[Candidate]:
    """Decode prompts (g722 via ffmpeg), keep files whose F0 fits the speaker, cut ≤ 4 s excerpts."""
    import soundfile as sf
    from ....progress import progress_iter

    from ....audio import load_audio, save_audio

    jobs = []
    for spk in speakers:
        if spk.package.startswith("asterisk"):
            files = sorted(Path(_ASTERISK, spk.folder).glob("*.g722"))  # top level: sentences
        else:
            files = sorted(p for p in Path(_KLETTRES, spk.folder).rglob("*") if p.suffix in (".ogg", ".wav"))
        for f in _evenly(files, max_per_speaker if spk.f0_range is None else 2 * max_per_speaker):
            jobs.append((spk, f))
    out: list[Candidate] = []
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
        excerpts = excerpts_of(wave, sr)
        if not excerpts:
            continue
        kept_per_speaker[key] += 1
        out.append(Candidate(str(target), spk.label, f"speaker/{spk.speaker}",
                             f"{spk.folder}/{f.name}", spk.package, spk.licence, excerpts))
    return out
