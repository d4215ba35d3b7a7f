"""Audio I/O that never fails obscurely: load any file soundfile (or ffmpeg) can read as float32 mono at a
requested rate, save float32 WAV atomically, and one chunked overlap-add path for long audio.

Errors are :class:`ussnb.errors.AudioError` (a ``ValueError``) naming the file and the problem.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from .errors import AudioError

log = logging.getLogger(__name__)

# Containers soundfile cannot read but ffmpeg can when told the raw format explicitly.
_FFMPEG_FORCED_FORMAT = {".g722": "g722", ".ulaw": "mulaw", ".alaw": "alaw", ".sln": "s16le"}


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``(samples,)`` or ``(channels, samples)`` float audio with soxr (HQ), float32 out."""
    if orig_sr == target_sr:
        return np.asarray(wave, dtype=np.float32)
    import soxr

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 1:
        return soxr.resample(wave, orig_sr, target_sr, quality="HQ").astype(np.float32, copy=False)
    # soxr wants (samples, channels)
    return soxr.resample(wave.T, orig_sr, target_sr, quality="HQ").T.astype(np.float32, copy=False)


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    """Decode with the ffmpeg binary to float32 mono at the file's own rate (or 16 kHz for raw g722 etc.)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            f"{path}: soundfile cannot read this format and the ffmpeg binary is not installed "
            "(install it: `apt-get install ffmpeg`)"
        )
    forced = _FFMPEG_FORCED_FORMAT.get(path.suffix.lower())
    sr = 16000 if forced in ("g722", "s16le") else 8000 if forced in ("mulaw", "alaw") else None
    if sr is None:
        sr = _ffprobe_rate(path) or 44100
    cmd = [ffmpeg, "-v", "error", "-nostdin"]
    if forced:
        cmd += ["-f", forced]
        if forced == "s16le":
            cmd += ["-ar", "8000", "-ac", "1"]
            sr = 8000
    cmd += ["-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: unreadable or corrupt audio ({msg[-1] if msg else 'ffmpeg failed'})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy(), sr


def _ffprobe_rate(path: Path) -> int | None:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    proc = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate",
         "-of", "default=nw=1:nk=1", str(path)],
        capture_output=True, text=True,
    )
    try:
        return int(proc.stdout.strip().splitlines()[0])
    except (ValueError, IndexError):
        return None


def audio_info(path: str | os.PathLike) -> dict:
    """Sample rate, frames, channels and duration of a file soundfile can read (no decoding)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: unreadable or corrupt audio ({exc})") from exc
    return {"sample_rate": info.samplerate, "frames": info.frames, "channels": info.channels,
            "duration": info.frames / info.samplerate if info.samplerate else 0.0}


def check_wave(wave: np.ndarray, *, name: str = "audio", sr: int | None = None,
               min_seconds: float | None = None) -> np.ndarray:
    """Validate an in-memory waveform: non-empty, finite, at least ``min_seconds`` long."""
    wave = np.asarray(wave)
    if wave.size == 0:
        raise AudioError(f"{name}: zero-length audio")
    if not np.issubdtype(wave.dtype, np.floating):
        wave = wave.astype(np.float32)
    if not np.all(np.isfinite(wave)):
        bad = int(np.size(wave) - np.count_nonzero(np.isfinite(wave)))
        raise AudioError(f"{name}: contains {bad} NaN/inf sample(s)")
    if min_seconds is not None and sr is not None:
        seconds = wave.shape[-1] / sr
        if seconds < min_seconds:
            raise AudioError(
                f"{name}: audio is {seconds:.3f} s long, shorter than the required {min_seconds:g} s"
            )
    return wave


def load_audio(
    path: str | os.PathLike,
    sr: int | None = 32000,
    *,
    mono: bool = True,
    min_seconds: float | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """Load audio as float32.

    Args:
        path: any file soundfile can read (WAV, FLAC, OGG, MP3 with libsndfile ≥ 1.1) or ffmpeg can decode.
        sr: target sample rate; ``None`` keeps the file's rate (use :func:`load_audio_with_rate`).
        mono: down-mix channels by averaging (noted at debug level); ``False`` returns (channels, samples).
        min_seconds: raise if the (resampled) audio is shorter.
        start, duration: read only this excerpt (seconds).

    Returns:
        ``(samples,)`` float32 if ``mono`` else ``(channels, samples)``.
    """
    wave, _ = load_audio_with_rate(path, sr, mono=mono, min_seconds=min_seconds, start=start,
                                   duration=duration)
    return wave


def load_audio_with_rate(
    path: str | os.PathLike,
    sr: int | None = 32000,
    *,
    mono: bool = True,
    min_seconds: float | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[np.ndarray, int]:
    """Like :func:`load_audio` but also returns the sample rate of the returned array."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such audio file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: zero-length file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as f:
            file_sr = f.samplerate
            first = int(round(start * file_sr))
            count = -1 if duration is None else int(round(duration * file_sr))
            if first:
                f.seek(min(first, f.frames))
            data = f.read(frames=count, dtype="float32", always_2d=True).T  # (channels, samples)
    except AudioError:
        raise
    except Exception as sf_exc:  # not a soundfile format: try ffmpeg
        if path.suffix.lower() in (".wav", ".flac") and path.suffix.lower() not in _FFMPEG_FORCED_FORMAT:
            # soundfile's own formats failing means a corrupt file; ffmpeg would only guess.
            raise AudioError(f"{path}: unreadable or corrupt audio ({sf_exc})") from sf_exc
        mono_data, file_sr = _read_ffmpeg(path)
        first = int(round(start * file_sr))
        last = None if duration is None else first + int(round(duration * file_sr))
        data = mono_data[None, first:last]
    if data.shape[-1] == 0:
        raise AudioError(f"{path}: zero-length audio (no samples" + (" in the requested excerpt)" if start or duration else ")"))
    if data.shape[0] > 1 and mono:
        log.debug("%s: down-mixing %d channels to mono", path, data.shape[0])
        data = data.mean(axis=0, keepdims=True)
    if sr is not None and file_sr != sr:
        log.debug("%s: resampling %d Hz -> %d Hz", path, file_sr, sr)
        data = resample(data, file_sr, sr)
        file_sr = sr
    wave = data[0] if mono else data
    check_wave(wave, name=str(path), sr=file_sr, min_seconds=min_seconds)
    return np.ascontiguousarray(wave, dtype=np.float32), file_sr


def save_audio(path: str | os.PathLike, wave: np.ndarray, sr: int, *, subtype: str | None = None) -> Path:
    """Write ``(samples,)`` or ``(channels, samples)`` audio atomically.

    WAV defaults to 32-bit float (``subtype="FLOAT"``); FLAC to 16-bit PCM. The file appears complete or
    not at all (temporary file + rename)."""
    path = Path(path)
    wave = np.asarray(wave, dtype=np.float32)
    check_wave(wave, name=f"audio for {path}")
    fmt = path.suffix.lstrip(".").upper() or "WAV"
    if subtype is None:
        subtype = "FLOAT" if fmt == "WAV" else "PCM_16"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        data = wave.T if wave.ndim == 2 else wave
        if subtype.startswith("PCM"):
            data = np.clip(data, -1.0, 1.0)
        sf.write(tmp, data, sr, format=fmt, subtype=subtype)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


# ----------------------------------------------------------------------------------------------------------
# chunking + overlap-add
# ----------------------------------------------------------------------------------------------------------
def chunk_starts(n_samples: int, segment: int, hop: int) -> list[int]:
    """Start indices of segments of length ``segment`` every ``hop`` samples covering ``n_samples``."""
    if segment <= 0 or hop <= 0 or hop > segment:
        raise ValueError(f"need 0 < hop <= segment, got segment={segment}, hop={hop}")
    if n_samples <= segment:
        return [0]
    n = 1 + math.ceil((n_samples - segment) / hop)
    return [i * hop for i in range(n)]


def crossfade_window(segment: int, fade: int, *, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Window of ones with linear fades; complementary fades of consecutive chunks sum to exactly 1."""
    w = np.ones(segment, dtype=np.float64)
    if fade > 0:
        ramp = (np.arange(fade, dtype=np.float64) + 0.5) / fade
        if fade_in:
            w[:fade] = ramp
        if fade_out:
            w[segment - fade:] = ramp[::-1]
    return w


def overlap_add(
    wave: np.ndarray,
    fn: Callable[[np.ndarray], np.ndarray],
    sr: int,
    *,
    segment_seconds: float = 2.0,
    overlap: float = 0.25,
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Apply ``fn`` to overlapping chunks of ``wave`` and cross-fade the results back together.

    Args:
        wave: ``(samples,)`` input.
        fn: maps a batch ``(batch, segment)`` to ``(batch, segment)`` (e.g. a separator).
        segment_seconds: chunk length; overlap: fraction of a chunk shared with the next (0 ≤ overlap < 1).

    Linear cross-fades over the overlap sum to one, and the result is also divided by the summed window, so
    an identity ``fn`` returns the input exactly (to float precision) for any length.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    segment = max(1, int(round(segment_seconds * sr)))
    hop = max(1, int(round(segment * (1.0 - overlap))))
    n = wave.shape[-1]
    out = np.zeros(n, dtype=np.float64)
    norm = np.zeros(n, dtype=np.float64)
    for starts, chunks in _batched_chunks(wave, segment, hop, batch_size, progress):
        result = np.asarray(fn(chunks), dtype=np.float64)
        if result.shape != chunks.shape:
            raise ValueError(f"chunk function returned shape {result.shape}, expected {chunks.shape}")
        for start, res in zip(starts, result):
            _accumulate(out, norm, res, start, segment, hop, n)
    return (out / np.maximum(norm, 1e-12)).astype(np.float32)


def _batched_chunks(wave, segment, hop, batch_size, progress) -> Iterator[tuple[list[int], np.ndarray]]:
    from tqdm.auto import tqdm

    starts = chunk_starts(wave.shape[-1], segment, hop)
    bar = tqdm(total=len(starts), desc="chunks", unit="chunk", disable=not progress)
    for i in range(0, len(starts), batch_size):
        group = starts[i:i + batch_size]
        chunks = np.zeros((len(group), segment), dtype=np.float32)
        for j, s in enumerate(group):
            piece = wave[s:s + segment]
            chunks[j, :piece.shape[0]] = piece
        yield group, chunks
        bar.update(len(group))
    bar.close()


def _accumulate(out, norm, result, start, segment, hop, n):
    fade = segment - hop
    w = crossfade_window(segment, fade, fade_in=start > 0, fade_out=start + segment < n)
    stop = min(start + segment, n)
    out[start:stop] += (result * w)[: stop - start]
    norm[start:stop] += w[: stop - start]
