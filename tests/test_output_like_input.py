"""Output like the input (``ussnb separate --output-rate / --format``, ``separate_file(output_rate=,
output_format=)``): the input's rate and channels by default, through the one inference path (one separation
of the channels' mean at the model's rate, resampled back, a time-frequency mask per channel).

A tiny run directory (random weights, ``tests/cli/test_bad_inputs.make_run``) and an identity "separator" (the
estimate is the mixture itself, so the output must give the input back) keep everything offline and quick."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.cli.test_bad_inputs import ERROR_LINE, MIDS, NAMES, SR, make_run
from ussnb.audio import StreamingChannelMask, mask_channels, resample, stft_size
from ussnb.cli import main
from ussnb.errors import ConfigError
from ussnb.eval.metrics import sdr
from ussnb.separation import SeparationBundle, separate_file


class Identity(torch.nn.Module):
    sample_rate = SR
    condition_size = len(MIDS)

    def forward(self, x, c):
        return x


def _identity() -> SeparationBundle:
    k = len(MIDS)
    return SeparationBundle(model=Identity(), kind="onehot", labels=list(MIDS), names=list(NAMES),
                            class_conditions=np.eye(k, dtype=np.float32), class_counts=np.ones(k), source="identity")


def _noise(shape, seed=0, amp=0.1) -> np.ndarray:
    return (amp * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("like_input")
    run = make_run(root / "run")
    sf.write(root / "st48.wav", _noise((int(2.3 * 48000) + 7, 2), seed=1), 48000, subtype="FLOAT")
    sf.write(root / "mono16.wav", _noise(int(2.5 * SR), seed=2), SR, subtype="FLOAT")
    sf.write(root / "mono32.wav", _noise(int(2.5 * 32000) + 3, seed=3), 32000, subtype="FLOAT")
    return root, run


@pytest.fixture
def offline(tiny, monkeypatch):
    root, _ = tiny
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(root / "no-meta"))
    monkeypatch.setenv("USSNB_DATA", str(root / "data"))


# ------------------------------------------------------------------------------------------ the mask
def test_streaming_mask_equals_whole_signal():
    n = 48000 * 5 + 321
    x = _noise((n, 2), seed=4)
    s = 0.5 * x.mean(axis=1) + _noise(n, seed=5, amp=0.02)
    whole = mask_channels(x, s, stft_size(48000))
    masker = StreamingChannelMask(48000, 2, region_seconds=0.5)
    parts, i = [], 0
    for step in [1000, 70001, 3, 30000] * 40:
        if i >= n:
            break
        parts.append(masker.push(x[i:i + step], s[i:i + step]))
        i += step
    parts.append(masker.finish())
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    np.testing.assert_allclose(mask_channels(x, x.mean(axis=1), 2048), x, atol=1e-5)  # estimate = mix → mask 1
    assert mask_channels(x[:5], x[:5, 0], 2048).shape == (5, 2)  # shorter than one frame
    assert stft_size(48000) == stft_size(44100) == 2048 and stft_size(16000) == 512


def test_identity_stereo_gives_the_input_back(tmp_path):
    """Estimate = mixture: the output equals the input's channels (same rate), or its band below the model's
    Nyquist frequency (another rate); the residual is the rest."""
    x = _noise((int(3.1 * SR) + 11, 2), seed=6)
    x[:, 1] *= 0.3
    sf.write(tmp_path / "st.wav", x, SR, subtype="FLOAT")
    info = separate_file(tmp_path / "st.wav", tmp_path / "o.wav", "Piano", _identity(), residual_path=tmp_path / "r.wav",
                         progress=False, block_seconds=0.7)
    y, sr = sf.read(tmp_path / "o.wav", dtype="float32")
    r, _ = sf.read(tmp_path / "r.wav", dtype="float32")
    assert sr == SR and y.shape == x.shape and info["channels"] == 2
    np.testing.assert_allclose(y, x, atol=2e-5)
    np.testing.assert_allclose(r, 0.0, atol=2e-5)
    # at 48 kHz: a signal already inside the model's band comes back through both resamplers and the mask
    band = resample(_noise((int(3.1 * SR), 2), seed=7).T, SR, 48000).T * np.array([1.0, 0.5], np.float32)
    sf.write(tmp_path / "st48.wav", band, 48000, subtype="FLOAT")
    separate_file(tmp_path / "st48.wav", tmp_path / "o48.wav", "Piano", _identity(), resample=True, progress=False,
                  residual_path=tmp_path / "r48.wav", block_seconds=0.4)
    y, sr = sf.read(tmp_path / "o48.wav", dtype="float32")
    r, _ = sf.read(tmp_path / "r48.wav", dtype="float32")
    assert sr == 48000 and y.shape == band.shape
    # exactly the whole-signal computation: the mono mix there and back through the model's rate, then the mask
    there_and_back = resample(resample(band.mean(axis=1), 48000, SR), SR, 48000)[:band.shape[0]]
    np.testing.assert_allclose(y, mask_channels(band, there_and_back, stft_size(48000)), atol=1e-5)
    assert np.all(sdr(band.T, y.T) > 20)  # per channel, dB (the resamplers' transition band near 8 kHz costs some)
    np.testing.assert_allclose(y + r, band, atol=1e-6)  # residual = mixture − target, per channel


# ------------------------------------------------------------------------------------------ rates and channels
def test_stereo_48k_in_stereo_48k_out(tiny, offline, tmp_path):
    root, run = tiny
    frames = sf.info(root / "st48.wav").frames
    assert main(["separate", str(root / "st48.wav"), "--query", "Piano", "--checkpoint", str(run), "--out",
                 str(tmp_path), "--residual", "--no-progress"]) == 0
    for name in ("st48__piano.wav", "st48__piano__residual.wav"):
        info = sf.info(tmp_path / name)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (48000, 2, frames, "FLOAT")
    y, _ = sf.read(tmp_path / "st48__piano.wav", dtype="float32")
    r, _ = sf.read(tmp_path / "st48__piano__residual.wav", dtype="float32")
    x, _ = sf.read(root / "st48.wav", dtype="float32")
    np.testing.assert_allclose(y + r, x, atol=1e-6)
    assert not np.allclose(y[:, 0], y[:, 1])  # each channel gets its own masked signal
    assert main(["separate", str(root / "st48.wav"), "--query", "Piano", "--checkpoint", str(run), "--out",
                 str(tmp_path / "model"), "--output-rate", "model", "--no-progress"]) == 0
    info = sf.info(tmp_path / "model" / "st48__piano.wav")
    assert (info.samplerate, info.channels) == (SR, 1)
    import json
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["output_rate"] == "input" and summary["format"] == "wav"
    assert (summary["items"][0]["sample_rate"], summary["items"][0]["channels"]) == (48000, 2)


def test_mono_at_model_rate_is_unchanged(tiny, offline, tmp_path):
    """Bit for bit what --output-rate model writes (today's output), residual included."""
    root, run = tiny
    bundle = SeparationBundle.load(run)
    out = {}
    for rate in ("input", "model"):
        separate_file(root / "mono16.wav", tmp_path / f"{rate}.wav", "Piano", bundle, output_rate=rate,
                      residual_path=tmp_path / f"{rate}_res.wav", progress=False)
        out[rate] = (sf.read(tmp_path / f"{rate}.wav", dtype="float32")[0],
                     sf.read(tmp_path / f"{rate}_res.wav", dtype="float32")[0])
    for a, b in zip(out["input"], out["model"]):
        assert a.dtype == b.dtype and a.shape == b.shape == (int(2.5 * SR),)
        assert a.tobytes() == b.tobytes()
    # the same file format too (not the raw bytes: libsndfile stamps float WAVs' PEAK chunk with the time)
    fields = ("samplerate", "channels", "frames", "format", "subtype")
    a, b = sf.info(tmp_path / "input.wav"), sf.info(tmp_path / "model.wav")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]


def test_mono_at_another_rate_keeps_its_rate(tiny, offline, tmp_path):
    root, run = tiny
    info = separate_file(root / "mono32.wav", tmp_path / "o.wav", "Piano", SeparationBundle.load(run), resample=True,
                         residual_path=tmp_path / "r.wav", progress=False)
    i = sf.info(tmp_path / "o.wav")
    assert (i.samplerate, i.channels, i.frames) == (32000, 1, sf.info(root / "mono32.wav").frames)
    assert info["sample_rate"] == 32000 and info["channels"] == 1
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    r, _ = sf.read(tmp_path / "r.wav", dtype="float32")
    np.testing.assert_allclose(y + r, sf.read(root / "mono32.wav", dtype="float32")[0], atol=1e-6)


# ------------------------------------------------------------------------------------------ formats
@pytest.mark.parametrize("fmt, suffix, major, subtype", [
    ("wav", ".wav", "WAV", "FLOAT"), ("wav16", ".wav", "WAV", "PCM_16"), ("wav24", ".wav", "WAV", "PCM_24"),
    ("flac", ".flac", "FLAC", "PCM_24"),
])
def test_formats(tiny, offline, tmp_path, fmt, suffix, major, subtype):
    root, run = tiny
    assert main(["separate", str(root / "st48.wav"), "--query", "Piano", "--checkpoint", str(run), "--out",
                 str(tmp_path), "--format", fmt, "--residual", "--no-progress"]) == 0
    for name in (f"st48__piano{suffix}", f"st48__piano__residual{suffix}"):
        info = sf.info(tmp_path / name)
        assert (info.format, info.subtype, info.samplerate, info.channels) == (major, subtype, 48000, 2)
        y, _ = sf.read(tmp_path / name, dtype="float32")
        assert y.shape == (sf.info(root / "st48.wav").frames, 2) and np.all(np.isfinite(y))


def test_pcm_clips_and_counts(tmp_path):
    x = _noise((SR, 2), seed=8, amp=1.0)  # about a third of the samples beyond ±1
    sf.write(tmp_path / "loud.wav", x, SR, subtype="FLOAT")
    info = separate_file(tmp_path / "loud.wav", tmp_path / "o.wav", "Piano", _identity(), output_format="wav16",
                         progress=False)
    y, _ = sf.read(tmp_path / "o.wav", dtype="float32")
    assert info["clipped_samples"] > 0 and np.abs(y).max() <= 1.0


# ------------------------------------------------------------------------------------------ mistakes
def test_api_refuses_bad_values(tiny, offline, tmp_path):
    root, _ = tiny
    bundle = _identity()
    with pytest.raises(ConfigError, match="--output-rate"):
        separate_file(root / "st48.wav", tmp_path / "o.wav", "Piano", bundle, output_rate="native", progress=False)
    with pytest.raises(ConfigError, match="--format"):
        separate_file(root / "st48.wav", tmp_path / "o.wav", "Piano", bundle, output_format="mp3", progress=False)
    with pytest.raises(ConfigError, match="writes .flac files, not .wav"):
        separate_file(root / "st48.wav", tmp_path / "o.wav", "Piano", bundle, output_format="flac", progress=False)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("extra, words, code", [
    (["--query", "Piano", "--format", "mp3"], ("--format", "invalid choice"), 2),
    (["--query", "Piano", "--output-rate", "44100"], ("--output-rate", "invalid choice"), 2),
    (["--levels", "1", "--format", "flac"], ("--format", "--levels"), 1),
    (["--levels", "1", "--output-rate", "input"], ("--output-rate", "--levels"), 1),
])
def test_cli_bad_values_are_one_line(tiny, offline, tmp_path, capsys, extra, words, code):
    root, run = tiny
    out = tmp_path / "out"
    try:
        rc = main(["separate", str(root / "st48.wav"), "--checkpoint", str(run), "--out", str(out), "--no-progress",
                   *extra])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code and "Traceback" not in err
    lines = ERROR_LINE.findall(err)
    assert len(lines) == 1, err
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    assert not out.exists()
