"""Log-mel front-ends: shapes, constants built once, parity with the reference vectors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ussnb.features import EfficientATMel, PannsLogMel, kaldi_mel_banks


def test_panns_logmel_shape_and_frames():
    fe = PannsLogMel()
    x = torch.randn(2, 320000) * 0.1
    out = fe(x)
    assert out.shape == (2, 1, 1001, 64)
    assert fe.frames(320000) == 1001
    assert fe(x[0]).shape == (1, 1, 1001, 64)  # (samples,) accepted


def test_panns_logmel_constants_are_buffers_built_once():
    fe = PannsLogMel()
    assert dict(fe.named_buffers()).keys() == {"window", "melW"}
    assert fe.state_dict() == {}  # fixed functions of the settings, not state
    ptr = fe.melW.data_ptr()
    fe(torch.randn(1, 8000))
    assert fe.melW.data_ptr() == ptr
    assert fe.melW.shape == (513, 64)


def test_panns_logmel_matches_librosa():
    import librosa

    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32) * 0.1
    fe = PannsLogMel(sample_rate=16000, n_fft=512, hop=160, n_mels=32, fmin=50, fmax=8000)
    ours = fe(torch.from_numpy(x))[0, 0].numpy()  # (frames, mels)
    power = np.abs(librosa.stft(x, n_fft=512, hop_length=160, window="hann", center=True, pad_mode="reflect")) ** 2
    mel = librosa.filters.mel(sr=16000, n_fft=512, n_mels=32, fmin=50, fmax=8000) @ power
    ref = 10 * np.log10(np.maximum(mel, 1e-10)).T
    assert ours.shape == ref.shape == (101, 32)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_panns_logmel_silence_is_finite_floor():
    out = PannsLogMel()(torch.zeros(1, 32000))
    assert torch.isfinite(out).all() and out.max().item() == pytest.approx(-100.0)


def test_panns_logmel_parity(reference_dir):
    z = np.load(reference_dir / "panns_cnn10" / "io.npz")
    out = PannsLogMel()(torch.from_numpy(z["waveform"])).numpy()
    err = float(np.abs(out - z["logmel"]).max())
    assert out.shape == z["logmel"].shape
    assert err <= 2e-3, f"PANNs logmel max abs error {err:.3g} > 2e-3"


def test_kaldi_mel_banks_shape_and_triangles():
    banks = kaldi_mel_banks(128, 1024, 32000, 0.0, 15000.0)
    assert banks.shape == (128, 512) and banks.dtype == torch.float32
    assert (banks >= 0).all() and banks.max() <= 1.0
    assert (banks.max(dim=1).values > 0).all()  # every filter touches the FFT grid
    # independent float64 evaluation of the same formula
    mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    edges = np.linspace(mel(0.0), mel(15000.0), 130)
    m = mel(np.arange(512) * 31.25)
    ref = np.maximum(0, np.minimum((m - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None]),
                                   (edges[2:, None] - m) / (edges[2:, None] - edges[1:-1, None])))
    np.testing.assert_allclose(banks.double().numpy(), ref, atol=1e-4)
    with pytest.raises(ValueError):
        kaldi_mel_banks(128, 1024, 32000, 0.0, 20000.0)


def test_efficientat_mel_shape_and_frames():
    fe = EfficientATMel()
    assert fe(torch.zeros(2, 320000)).shape == (2, 1, 128, 1000)
    for n in (600, 640, 641, 32000, 32001):
        assert fe(torch.randn(1, n)).shape[-1] == fe.frames(n)
    assert fe.state_dict() == {}
    with pytest.raises(ValueError, match="samples"):
        fe(torch.randn(1, 100))


def test_efficientat_mel_parity(reference_dir):
    z = np.load(reference_dir / "efficientat_mn04" / "io.npz")
    out = EfficientATMel()(torch.from_numpy(z["waveform"])).numpy()
    err = float(np.abs(out - z["mel"]).max())
    assert out.shape == z["mel"].shape
    assert err <= 2e-4, f"EfficientAT mel max abs error {err:.3g} > 2e-4"
