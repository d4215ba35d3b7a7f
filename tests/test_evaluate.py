import numpy as np
import pytest

from ussnb.evaluate import (class_aggregate, museval_sdr, oracle_cirm, oracle_irm, reference_scores, sdr, sdri,
                            segmental_snr)


def _pair(seed=0, n=32000):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal(n).astype(np.float32) * np.sin(np.linspace(0, 20, n)).astype(np.float32)
    v = rng.standard_normal(n).astype(np.float32)
    v *= np.sqrt(np.sum(s ** 2) / np.sum(v ** 2))  # 0 dB, energy-matched
    return s, v, s + v


def test_perfect_estimate_is_large_and_finite():
    s, _, _ = _pair()
    value = sdr(s, s)
    assert np.isfinite(value) and value > 100


def test_sdri_of_mixture_is_zero_and_floor_is_3db():
    s, _, x = _pair()
    assert sdri(s, x, x) == pytest.approx(0.0, abs=1e-9)
    assert sdri(s, x / 2, x) == pytest.approx(3.01, abs=0.05)  # the trivial floor on 0 dB pairs


def test_known_value():
    s = np.ones(100)
    assert sdr(s, 0.9 * s) == pytest.approx(20.0, abs=1e-6)  # error 0.1 → 20 dB


def test_per_class_median_then_mean_hand_example():
    agg = class_aggregate([1, 2, 9, 4, 6], ["a", "a", "a", "b", "b"])
    assert agg["per_class"] == {"a": 2.0, "b": 5.0}
    assert agg["median_then_mean"] == pytest.approx(3.5)
    assert agg["mean"] == pytest.approx(4.4) and agg["n"] == 5


def test_oracle_masks_are_ceilings():
    s, _, x = _pair(1)
    refs = reference_scores(s, x)
    assert refs["irm_sdri"] > 5 and refs["cirm_sdri"] > 40 and refs["trivial_sdri"] == pytest.approx(3.01, abs=0.05)
    assert oracle_irm(s, x).shape == x.shape == oracle_cirm(s, x).shape


def test_segmental_snr_known_pair():
    clean = np.random.default_rng(0).standard_normal(16000)
    assert segmental_snr(clean, clean, 16000) == pytest.approx(35.0)  # clipped at the 35 dB ceiling
    assert segmental_snr(clean, 0.9 * clean, 16000) == pytest.approx(20.0, abs=1e-6)
    assert segmental_snr(clean, np.zeros_like(clean), 16000) == pytest.approx(0.0, abs=1e-6)


def test_pesq_known_pair():
    pytest.importorskip("pesq")
    from ussnb.evaluate import pesq_wb

    sr = 16000
    t = np.arange(3 * sr) / sr
    speechlike = (np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32) * 0.3
    assert pesq_wb(speechlike, speechlike, sr) > 4.4
    noisy = speechlike + 0.3 * np.random.default_rng(0).standard_normal(len(t)).astype(np.float32)
    assert pesq_wb(speechlike, noisy, sr) < 2.0


def test_museval_argument_order_matters_and_ours_is_right():
    pytest.importorskip("museval")
    sr = 8000
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((2, 3 * sr))
    # estimate of source 0 has 10 % of source 1 leaking in, plus a gain error
    est = np.stack([0.7 * refs[0] + 0.1 * refs[1], refs[1]])
    ours = museval_sdr(refs, est, sr)
    swapped = museval_sdr(est, refs, sr)  # what the reference code computed
    # on white-noise sources museval's v4 SDR equals 10·log10(‖s‖²/‖s−ŝ‖²) with s the *reference*:
    expected = sdr(refs[0], est[0])
    assert ours[0] == pytest.approx(expected, abs=0.2)
    assert swapped[0] == pytest.approx(sdr(est[0], refs[0]), abs=0.2)
    assert abs(swapped[0] - ours[0]) > 0.5
