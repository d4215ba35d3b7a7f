"""Audio I/O that never fails obscurely: load any file soundfile (or ffmpeg) can read as float32 mono at a
requested rate, save float32 WAV atomically, and one chunked overlap-add path for long audio. For outputs like
the input: a file's blocks with its channels at its own rate (:func:`stream_channel_blocks`) and the
time-frequency mask that applies a mono estimate to each channel (:func:`mask_channels`, streamed by
:class:`StreamingChannelMask`).

Errors are :class:`ussnb.errors.AudioError` (a ``ValueError``) naming the file and the problem.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import soundfile as sf

from .errors import AudioError, ConfigError
from .io import atomic_path

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


_resample_array = resample  # for functions whose ``resample`` argument is a flag


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
    data = wave.T if wave.ndim == 2 else wave
    if subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, data, sr, format=fmt, subtype=subtype)
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


def segment_hop(sr: int, segment_seconds: float, overlap: float) -> tuple[int, int]:
    """Chunk length and hop in samples for ``segment_seconds`` chunks sharing ``overlap`` (a fraction in
    [0, 1)) with the next one."""
    if not 0.0 <= overlap < 1.0:  # also refuses NaN
        raise ConfigError(f"overlap must be in [0, 1), got {overlap}")
    if not (math.isfinite(segment_seconds) and segment_seconds > 0):
        raise ConfigError(f"segment_seconds must be a positive number of seconds, got {segment_seconds}")
    segment = max(1, int(round(segment_seconds * sr)))
    hop = max(1, int(round(segment * (1.0 - overlap))))
    return segment, hop


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
    an identity ``fn`` returns the input exactly (to float precision) for any length. A thin wrapper over
    :func:`stream_overlap_add` with the whole array as one block (one code path for both).
    """
    wave = np.asarray(wave, dtype=np.float32)
    segment, hop = segment_hop(sr, segment_seconds, overlap)
    n = wave.shape[-1]
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    parts = list(stream_overlap_add([wave], lambda chunks, starts: fn(chunks), segment, hop, batch_size,
                                    progress=progress, total=n))
    return np.concatenate(parts).astype(np.float32, copy=False)


def stream_overlap_add(
    blocks: Iterable[np.ndarray],
    fn: Callable[[np.ndarray, list[int]], np.ndarray],
    segment: int,
    hop: int,
    batch_size: int = 8,
    n_outputs: int = 1,
    *,
    progress: bool = False,
    total: int | None = None,
    desc: str = "chunks",
) -> Iterator[np.ndarray]:
    """Streaming chunked processing with cross-faded overlap-add.

    Consumes ``blocks`` (1-D float arrays of any sizes, consecutive pieces of one signal of unknown total
    length), cuts it into chunks of ``segment`` samples every ``hop`` samples (the chunk starts of
    :func:`chunk_starts`; the last chunk zero-padded), calls ``fn`` on batches of up to ``batch_size`` chunks
    and yields the finished output as soon as no later chunk can touch it.

    Args:
        fn: ``fn(chunks (batch, segment) float32, starts list[int])`` → ``(batch, segment)`` or
            ``(n_outputs, batch, segment)``; ``starts`` are the chunks' first sample indices in the signal.
        n_outputs: outputs per chunk (e.g. 2 for target + residual).
        progress: show a tqdm bar (in chunks; ``total`` = expected signal length in samples, if known).

    Yields:
        ``(samples,)`` float32 blocks if ``n_outputs == 1`` else ``(n_outputs, samples)``; concatenated they
        have exactly the input's length.

    Each chunk is weighted by a window of ones with linear fades over the overlap (no fade at the signal's
    start and end), accumulated, and divided by the summed window — so an identity ``fn`` reproduces the
    input to float precision for any length and block size. Memory is bounded by about
    ``block + batch_size·hop + segment`` samples (times ``n_outputs``), independent of the signal's length.
    """
    from tqdm.auto import tqdm

    if segment <= 0 or hop <= 0 or hop > segment:
        raise ValueError(f"need 0 < hop <= segment, got segment={segment}, hop={hop}")
    if batch_size < 1 or n_outputs < 1:
        raise ConfigError(f"batch_size and n_outputs must be >= 1, got {batch_size}, {n_outputs}")
    fade = segment - hop
    buf = np.zeros(0, dtype=np.float32)  # input samples [buf_start, received)
    buf_start = received = 0
    next_start = 0  # start of the next chunk to cut
    # Fixed-size accumulators (allocated once): between two emits they cover at most the chunks of one batch.
    cap = segment + batch_size * hop
    acc = np.zeros((n_outputs, cap), dtype=np.float64)  # weighted sum over [acc_start, acc_start + cap)
    norm = np.zeros(cap, dtype=np.float64)  # summed window
    acc_start = 0  # everything before it has been yielded
    pending: list[tuple[int, bool, np.ndarray]] = []  # (start, fade_out, chunk)
    n_chunks = len(chunk_starts(total, segment, hop)) if total else None
    bar = tqdm(total=n_chunks, desc=desc, unit="chunk", disable=not progress)

    def cut(final: bool):
        """Cut chunks whose content and fade-out are known, until a batch is full."""
        nonlocal next_start, buf, buf_start
        while len(pending) < batch_size:
            s = next_start
            if final:
                if received == 0 or (s > 0 and s - hop + segment >= received):
                    return
                fade_out = s + segment < received
            else:
                if received <= s + segment:  # must see one sample past the chunk to know it is not the last
                    return
                fade_out = True
            piece = buf[s - buf_start:s - buf_start + segment]
            chunk = np.zeros(segment, dtype=np.float32)
            chunk[:piece.shape[0]] = piece
            pending.append((s, fade_out, chunk))
            next_start += hop
        if not final and next_start > buf_start:  # drop input no future chunk needs
            drop = next_start - buf_start
            buf = buf[drop:].copy() if drop < buf.shape[0] else np.zeros(0, dtype=np.float32)
            buf_start = next_start

    def run_batch(final: bool):
        starts = [p[0] for p in pending]
        chunks = np.stack([p[2] for p in pending])
        result = np.asarray(fn(chunks, starts))
        if result.ndim == 2 and n_outputs == 1:
            result = result[None]
        if result.shape != (n_outputs,) + chunks.shape:
            want = chunks.shape if n_outputs == 1 else (n_outputs,) + chunks.shape
            raise ValueError(f"chunk function returned shape {result.shape}, expected {want}")
        for j, (s, fade_out, _) in enumerate(pending):
            w = crossfade_window(segment, fade, fade_in=s > 0, fade_out=fade_out)
            stop = min(s + segment, received) if final else s + segment
            a, b = s - acc_start, stop - acc_start
            acc[:, a:b] += result[:, j, :stop - s] * w[:stop - s]  # float64 accumulation, one chunk at a time
            norm[a:b] += w[:stop - s]
        bar.update(len(pending))
        pending.clear()

    def emit(upto: int) -> np.ndarray | None:
        nonlocal acc_start
        k = upto - acc_start
        if k <= 0:
            return None
        np.divide(acc[:, :k], np.maximum(norm[:k], 1e-12), out=acc[:, :k])
        out = acc[:, :k].astype(np.float32)
        rest = cap - k  # shift the unfinished part to the front
        acc[:, :rest] = acc[:, k:].copy() if k < rest else acc[:, k:]
        acc[:, rest:] = 0.0
        norm[:rest] = norm[k:].copy() if k < rest else norm[k:]
        norm[rest:] = 0.0
        acc_start = upto
        return out[0] if n_outputs == 1 else out

    try:
        for block in blocks:
            block = np.asarray(block, dtype=np.float32).reshape(-1)
            if block.size == 0:
                continue
            buf = np.concatenate([buf, block]) if buf.size else block
            received += block.shape[0]
            while True:  # at most one batch of chunks exists at a time
                cut(final=False)
                if len(pending) < batch_size:
                    break
                run_batch(final=False)
                # positions before the next chunk to process are final
                ready = emit(next_start)
                if ready is not None:
                    yield ready
        while True:
            cut(final=True)
            if not pending:
                break
            run_batch(final=True)
            ready = emit(min(next_start, received))
            if ready is not None:
                yield ready
        if acc_start < received:  # the rest of the last chunk(s)
            ready = emit(received)
            if ready is not None:
                yield ready
    finally:
        bar.close()


# ----------------------------------------------------------------------------------------------------------
# streaming input
# ----------------------------------------------------------------------------------------------------------
def _open_soundfile(path: Path):
    """``path`` checked and opened with soundfile; None for a format only ffmpeg decodes (a corrupt WAV/FLAC
    raises :class:`AudioError`)."""
    _check_path(path)
    try:
        return sf.SoundFile(str(path))
    except Exception as sf_exc:
        if path.suffix.lower() in (".wav", ".flac"):
            raise AudioError(f"{path}: unreadable or corrupt audio ({sf_exc})") from sf_exc
        return None


def stream_audio_blocks(
    path: str | os.PathLike,
    sr: int,
    block_seconds: float = 30.0,
    resample: bool = True,
) -> Iterator[np.ndarray]:
    """Yield a file's audio as mono float32 blocks of about ``block_seconds`` at ``sr``, reading block by
    block (memory does not grow with the file's length).

    Channels are averaged. A file at another rate is converted with a streaming soxr resampler when
    ``resample``, else :class:`AudioError` tells the user to pass ``--resample``. Missing, folder, 0-byte,
    0-sample, unreadable files and NaN/inf samples raise :class:`AudioError` naming the file (the NaN error
    also the time of the first bad block). Formats soundfile cannot read are decoded whole with
    :func:`load_audio` (ffmpeg) and then yielded in blocks.
    """
    path = Path(path)
    f = _open_soundfile(path)
    if f is None:  # a format soundfile cannot read: decoded whole by ffmpeg
        wave, file_sr = load_audio_with_rate(path, None)
        _check_rate(path, file_sr, sr, resample)
        if file_sr != sr:
            wave = _resample_array(wave, file_sr, sr)
        step = max(1, int(round(block_seconds * sr)))
        for i in range(0, wave.shape[0], step):
            yield wave[i:i + step]
        return
    with f:
        file_sr = f.samplerate
        if f.frames == 0:
            raise AudioError(f"{path}: zero-length audio (no samples)")
        _check_rate(path, file_sr, sr, resample)
        stream = None
        if file_sr != sr:
            import soxr

            stream = soxr.ResampleStream(file_sr, sr, 1, dtype="float32", quality="HQ")
        step = max(1, int(round(block_seconds * file_sr)))
        position = 0
        while True:
            try:
                data = f.read(frames=step, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"{path}: unreadable or corrupt audio at {position / file_sr:.2f} s ({exc})") from exc
            if data.shape[0] == 0:
                break
            block = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
            if not np.all(np.isfinite(block)):
                bad = int(block.size - np.count_nonzero(np.isfinite(block)))
                first = position + int(np.argmax(~np.isfinite(block)))
                raise AudioError(f"{path}: contains NaN/inf sample(s) ({bad} in the block at "
                                 f"{position / file_sr:.2f} s, first at {first / file_sr:.3f} s)")
            position += block.shape[0]
            if stream is not None:
                block = stream.resample_chunk(np.ascontiguousarray(block))
            if block.size:
                yield np.ascontiguousarray(block, dtype=np.float32)
        if position == 0:
            raise AudioError(f"{path}: zero-length audio (no samples)")
        if stream is not None:
            tail = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if tail.size:
                yield np.ascontiguousarray(tail, dtype=np.float32)


def stream_length(path: str | os.PathLike, sr: int) -> int | None:
    """Expected number of samples :func:`stream_audio_blocks` yields at ``sr`` (None if unknown)."""
    try:
        info = sf.info(str(path))
    except Exception:
        return None
    if not info.samplerate or info.frames <= 0:
        return None
    return int(round(info.frames * sr / info.samplerate))


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path}: no such audio file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: zero-length file (0 bytes)")


def _check_rate(path: Path, file_sr: int, sr: int, resample: bool) -> None:
    if file_sr != sr and not resample:
        raise AudioError(
            f"{path}: sample rate is {file_sr} Hz but the model works at {sr} Hz; pass --resample "
            f"(resample=True) to convert it"
        )


# ----------------------------------------------------------------------------------------------------------
# output like the input: channels at the input's own rate
# ----------------------------------------------------------------------------------------------------------
def stream_channel_blocks(path: str | os.PathLike, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """A file's audio at its own rate with its channels kept: ``(samples, channels)`` float32 blocks of about
    ``block_seconds``. The checks of :func:`stream_audio_blocks`; formats soundfile cannot read are decoded
    whole by ffmpeg (mono)."""
    path = Path(path)
    f = _open_soundfile(path)
    if f is None:  # a format soundfile cannot read: decoded whole by ffmpeg
        wave, file_sr = load_audio_with_rate(path, None)
        step = max(1, int(round(block_seconds * file_sr)))
        for i in range(0, wave.shape[0], step):
            yield wave[i:i + step, None]
        return
    with f:
        step = max(1, int(round(block_seconds * f.samplerate)))
        position = 0
        while True:
            try:
                data = f.read(frames=step, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"{path}: unreadable or corrupt audio at {position / f.samplerate:.2f} s "
                                 f"({exc})") from exc
            if data.shape[0] == 0:
                break
            if not np.all(np.isfinite(data)):
                raise AudioError(f"{path}: contains NaN/inf sample(s) in the block at {position / f.samplerate:.2f} s")
            position += data.shape[0]
            yield np.ascontiguousarray(data)
        if position == 0:
            raise AudioError(f"{path}: zero-length audio (no samples)")


def channel_layout(path: str | os.PathLike) -> tuple[int, int, int | None]:
    """``(sample rate, channels, frames or None)`` of an audio file as :func:`stream_channel_blocks` yields it."""
    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except Exception as sf_exc:
        if path.suffix.lower() in (".wav", ".flac"):
            raise AudioError(f"{path}: unreadable or corrupt audio ({sf_exc})") from sf_exc
        wave, file_sr = load_audio_with_rate(path, None)  # ffmpeg: decoded mono
        return int(file_sr), 1, int(wave.shape[0])
    if info.frames == 0:
        raise AudioError(f"{path}: zero-length audio (no samples)")
    return int(info.samplerate), int(info.channels), int(info.frames) if info.frames > 0 else None


def stft_size(sr: int) -> int:
    """The FFT size the channel mask uses at rate ``sr``: the power of two nearest 40 ms (2048 at 44.1 and 48 kHz,
    1024 at 32 kHz, 512 at 16 kHz); the hop is a quarter of it."""
    return int(2 ** max(6, round(math.log2(max(1, sr) * 0.040))))


def mask_channels(mixture: np.ndarray, estimate: np.ndarray, n_fft: int, hop: int | None = None) -> np.ndarray:
    """Apply a mono estimate to every channel of a mixture by a time-frequency ratio mask.

    ``mixture`` ``(samples, channels)``, ``estimate`` ``(samples,)`` (both at the same rate; the estimate of
    the source in the channels' mean) → ``(samples, channels)``: each channel's STFT times
    ``clip(|Ŝ| / |X_mono|, 0, 1)``, back through the inverse STFT (Hann window, hop ``n_fft // 4``, zero padding at
    the ends, so the result of a long signal does not depend on where :class:`StreamingChannelMask` cuts it)."""
    import torch

    hop = hop or n_fft // 4
    x = np.ascontiguousarray(mixture, dtype=np.float32)
    n = x.shape[0]
    window = torch.hann_window(n_fft, dtype=torch.float32)

    def stft(a: np.ndarray):
        return torch.stft(torch.from_numpy(np.ascontiguousarray(a)), n_fft, hop, window=window, center=True,
                          pad_mode="constant", return_complex=True)

    spec = stft(x.T)  # (channels, bins, frames)
    mono = stft(x.mean(axis=1))
    est = stft(np.asarray(estimate, dtype=np.float32))
    mask = (est.abs() / mono.abs().clamp_min(1e-10)).clamp_(0.0, 1.0)
    y = torch.istft(spec * mask, n_fft, hop, window=window, center=True, length=n)
    return np.ascontiguousarray(y.numpy().T, dtype=np.float32)


class StreamingChannelMask:
    """:func:`mask_channels` over a stream: :meth:`push` consecutive ``(n, channels)`` mixture and ``(n,)``
    estimate blocks (equal lengths), get back the finished ``(m, channels)`` output; :meth:`finish` returns the
    rest. Regions of about ``region_seconds`` are processed with ``n_fft`` samples of context on each side at
    hop-aligned positions, so the output equals :func:`mask_channels` on the whole signal (to float rounding)
    while memory stays bounded by a region."""

    def __init__(self, sr: int, channels: int, *, n_fft: int | None = None, region_seconds: float = 4.0):
        self.n_fft = int(n_fft or stft_size(sr))
        self.hop = self.n_fft // 4
        self.context = self.n_fft  # a multiple of the hop
        self.region = self.hop * max(1, math.ceil(region_seconds * sr / self.hop))
        self.channels = int(channels)
        self.x = np.zeros((0, self.channels), np.float32)
        self.s = np.zeros(0, np.float32)
        self.start = 0  # absolute index of self.x[0]
        self.done = 0  # output is finished before this index
        self.received = 0

    def push(self, mixture: np.ndarray, estimate: np.ndarray) -> np.ndarray:
        if mixture.shape[0] != estimate.shape[0]:
            raise ValueError(f"mixture block of {mixture.shape[0]} samples, estimate block of {estimate.shape[0]}")
        self.x = np.concatenate([self.x, np.asarray(mixture, np.float32).reshape(-1, self.channels)])
        self.s = np.concatenate([self.s, np.asarray(estimate, np.float32)])
        self.received += mixture.shape[0]
        out = []
        while self.received >= self.done + self.region + self.context:
            out.append(self._run(self.done, self.done + self.region, final=False))
            self.done += self.region
            keep = self.done - self.context - self.start
            if keep > 0:
                self.x, self.s, self.start = self.x[keep:], self.s[keep:], self.start + keep
        return np.concatenate(out) if out else np.zeros((0, self.channels), np.float32)

    def finish(self) -> np.ndarray:
        if self.done >= self.received:
            return np.zeros((0, self.channels), np.float32)
        out = self._run(self.done, self.received, final=True)
        self.done = self.received
        return out

    def _run(self, a: int, b: int, *, final: bool) -> np.ndarray:
        s0 = max(0, a - self.context)
        s1 = self.received if final else b + self.context
        i0, i1 = s0 - self.start, s1 - self.start
        y = mask_channels(self.x[i0:i1], self.s[i0:i1], self.n_fft, self.hop)
        return y[a - s0:b - s0]
