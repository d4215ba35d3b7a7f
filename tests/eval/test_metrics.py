"""Metrics (ussnb.eval.metrics): SDR, its aggregate and references, against hand-computed examples; tagging /
SED metrics likewise."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ussnb.eval.metrics import (
    average_precision,
    class_aggregate,
    frame_auc,
    frame_targets,
    mean_average_precision,
    museval_sdr,
    oracle_cirm,
    oracle_irm,
    reference_scores,
    roc_auc,
    sdr,
    sdri,
    segment_f1,
    segmental_snr,
)


# ------------------------------------------------------------------------------------------------- separation
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
    from ussnb.eval.metrics import pesq_wb

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


# ------------------------------------------------------------------------------------------------- tagging, SED
def test_average_precision_hand_example():
    # ranked: pos (P=1, R=.5), neg, pos (P=2/3, R=1), neg → AP = .5·1 + .5·2/3
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([1, 1, 0], [0.9, 0.8, 0.1]) == pytest.approx(1.0)
    assert average_precision([0, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(1 / 3)
    # ties form one threshold: P = 1/2 at R = 1
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_mean_average_precision_skips_classes_without_positives():
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.7, 0.6, 0.1], [0.1, 0.9, 0.0]])
    # class 0: ranks pos, neg, pos, neg → 5/6; class 1: scores .9(neg) .7(pos) .6(pos) .1(neg) → .5·.5 + .5·2/3
    value, per_class = mean_average_precision(targets, scores, per_class=True)
    assert per_class[0] == pytest.approx(5 / 6)
    assert per_class[1] == pytest.approx(0.25 + 1 / 3)
    assert math.isnan(per_class[2])
    assert value == pytest.approx((5 / 6 + 0.25 + 1 / 3) / 2)
    with pytest.raises(ValueError):
        mean_average_precision(targets, scores[:, :2])


def test_roc_auc_hand_example():
    # pos .9, .7 vs neg .8, .1: pairs won 1 + 1 + 0 + 1 = 3 of 4
    assert roc_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.75)
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts half
    assert roc_auc([1, 0, 0], [0.5, 0.5, 0.1]) == pytest.approx(0.75)
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_frame_auc_over_clips_and_frames():
    targets = np.zeros((2, 4, 3), dtype=bool)
    scores = np.zeros((2, 4, 3))
    targets[0, 1:3, 0] = True
    scores[0, :, 0] = [0.1, 0.9, 0.8, 0.2]  # class 0 perfectly separated → 1
    targets[1, 0, 1] = True
    scores[..., 1] = 0.5  # class 1 constant → 0.5
    value, per_class = frame_auc(targets, scores, per_class=True)  # class 2 absent: skipped
    assert per_class[0] == pytest.approx(1.0) and per_class[1] == pytest.approx(0.5)
    assert math.isnan(per_class[2])
    assert value == pytest.approx(0.75)


def test_frame_targets():
    targets = frame_targets([[(0.1, 0.3, 1)], []], frames=5, frame_rate=10, classes=2)
    assert targets.shape == (2, 5, 2)
    assert targets[0, :, 1].tolist() == [False, True, True, False, False]  # 0.1 <= t < 0.3
    assert not targets[1].any() and not targets[0, :, 0].any()


def test_segment_f1_hand_example():
    # one clip, 3 s at 10 frames/s (31 frames), 2 classes, 1 s segments
    probs = np.zeros((1, 31, 2))
    probs[0, 5:9, 0] = 0.9  # class 0 detected in segment 0
    probs[0, 25, 1] = 0.6  # class 1 detected in segment 2 (false positive)
    events = [[(0.5, 1.2, 0)]]  # class 0 in segments 0 and 1
    counts = segment_f1(probs, events, frame_rate=10, return_counts=True)
    assert (counts["tp"], counts["fp"], counts["fn"]) == (1, 1, 1)
    assert counts["f1"] == pytest.approx(0.5)
    assert counts["precision"] == pytest.approx(0.5) and counts["recall"] == pytest.approx(0.5)
    assert segment_f1(probs, events, frame_rate=10) == pytest.approx(0.5)
    # a higher threshold removes the false positive: TP 1, FN 1 → 2/3
    assert segment_f1(probs, events, frame_rate=10, threshold=0.7) == pytest.approx(2 / 3)
    # 0.5 s segments: reference segments 1, 2 (class 0; 0.5-1.2 s overlaps [0.5,1) and [1,1.5));
    # predicted 0.5-0.8 s → segment 1 only; class 1 at 2.5 s → segment 5
    counts = segment_f1(probs, events, frame_rate=10, segment_seconds=0.5, return_counts=True)
    assert (counts["tp"], counts["fp"], counts["fn"]) == (1, 1, 1)


def test_segment_f1_multiple_clips_and_edges():
    probs = [np.ones((1001, 1)), np.zeros((1001, 1))]  # 10 s each at 100 frames/s → 10 segments
    events = [[(0.0, 10.0, 0)], [(2.0, 3.0, 0)]]
    counts = segment_f1(probs, events, frame_rate=100, return_counts=True)
    assert (counts["tp"], counts["fp"], counts["fn"]) == (10, 0, 1)
    assert math.isnan(segment_f1([np.zeros((11, 1))], [[]], frame_rate=10))
    with pytest.raises(ValueError):
        segment_f1([np.zeros((11, 1))], [[(0.0, 1.0, 3)]], frame_rate=10)
    with pytest.raises(ValueError):
        segment_f1([np.zeros((11, 1))], [[], []], frame_rate=10)
