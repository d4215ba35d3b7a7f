import subprocess
import shutil

import numpy as np
import pytest
import soundfile as sf

from ussnb.audio import chunk_starts, load_audio, load_audio_with_rate, overlap_add, save_audio
from ussnb.errors import AudioError


def _tone(sr=16000, seconds=1.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


def test_load_resamples_and_downmixes(tmp_path, caplog):
    path = tmp_path / "stereo.wav"
    sf.write(path, _tone(16000, 1.0, channels=2), 16000)
    with caplog.at_level("DEBUG", logger="ussnb.audio"):
        wave = load_audio(path, 32000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.shape[0] - 32000) <= 1
    assert "down-mixing 2 channels" in caplog.text and "resampling 16000 Hz -> 32000 Hz" in caplog.text
    np.testing.assert_allclose(np.abs(wave).max(), 0.75 * 0.3, atol=0.02)


def test_keep_rate_and_excerpt(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, _tone(22050, 2.0), 22050)
    wave, sr = load_audio_with_rate(path, None, start=0.5, duration=1.0)
    assert sr == 22050 and wave.shape == (22050,)


@pytest.mark.parametrize("case", ["missing", "folder", "empty_file", "corrupt", "zero_samples", "nan", "inf", "short"])
def test_bad_input_is_clear(tmp_path, case):
    path = tmp_path / "x.wav"
    kwargs = {}
    if case == "folder":
        path = tmp_path
    elif case == "empty_file":
        path.write_bytes(b"")
    elif case == "corrupt":
        path.write_bytes(b"RIFF\x00\x00garbage that is not audio" * 10)
    elif case == "zero_samples":
        sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif case in ("nan", "inf"):
        x = _tone()
        x[100] = np.nan if case == "nan" else np.inf
        sf.write(path, x, 16000, subtype="FLOAT")
    elif case == "short":
        sf.write(path, _tone(16000, 0.5), 16000)
        kwargs["min_seconds"] = 1.0
    expected = {"missing": "no such audio file", "folder": "is a folder", "empty_file": "0 bytes",
                "corrupt": "unreadable or corrupt", "zero_samples": "zero-length audio", "nan": "NaN/inf",
                "inf": "NaN/inf", "short": "shorter than the required 1 s"}[case]
    with pytest.raises(AudioError, match=expected) as err:
        load_audio(path, 16000, **kwargs)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_fallback_reads_g722(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, _tone(16000, 1.0), 16000)
    g722 = tmp_path / "a.g722"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-f", "g722", str(g722)], check=True)
    wave = load_audio(g722, 32000)
    assert abs(wave.shape[0] - 32000) < 400 and np.abs(wave).max() > 0.1


def test_save_is_float32_wav_and_atomic(tmp_path):
    x = _tone(8000, 0.25)
    out = save_audio(tmp_path / "sub" / "y.wav", x, 8000)
    info = sf.info(out)
    assert info.subtype == "FLOAT"
    np.testing.assert_array_equal(sf.read(out, dtype="float32")[0], x)
    assert not list((tmp_path / "sub").glob(".*"))  # no temporary left behind
    with pytest.raises(AudioError, match="NaN"):
        save_audio(tmp_path / "z.wav", np.array([0.0, np.nan], dtype=np.float32), 8000)
    assert not (tmp_path / "z.wav").exists()


@pytest.mark.parametrize("n", [1, 999, 16000, 32000, 32001, 47999, 100000])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_overlap_add_identity_is_exact(n, overlap):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    y = overlap_add(x, lambda b: b, 16000, segment_seconds=1.0, overlap=overlap, batch_size=3)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6)


def test_overlap_add_crossfades_without_steps():
    # a per-chunk constant offset: with cross-fades the output changes smoothly across chunk borders
    x = np.zeros(48000, dtype=np.float32)
    counter = iter(range(100))
    y = overlap_add(x, lambda b: np.stack([np.full(b.shape[1], float(next(counter))) for _ in b]), 16000,
                    segment_seconds=1.0, overlap=0.5, batch_size=1)
    assert np.max(np.abs(np.diff(y))) < 2.0 / 8000 + 1e-6  # a unit step spread over the 8000-sample overlap


def test_chunk_starts_cover():
    assert chunk_starts(10, 4, 2) == [0, 2, 4, 6]
    assert chunk_starts(3, 4, 2) == [0]
    with pytest.raises(ValueError):
        chunk_starts(10, 4, 5)
