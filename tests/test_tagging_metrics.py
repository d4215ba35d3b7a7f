"""Tagging / SED metrics against hand-computed examples."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ussnb.tagging_metrics import (
    average_precision,
    frame_auc,
    frame_targets,
    mean_average_precision,
    roc_auc,
    segment_f1,
)


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
