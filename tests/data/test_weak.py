"""Weakly labelled datasets (ussnb.data.weak, ussnb.data.load): balanced sampling, an unprepared dataset."""
import json

import numpy as np
import pytest

from ussnb import data
from ussnb.data.weak import BalancedSampler
from ussnb.errors import DataError


def test_balanced_sampler_distinct_and_even():
    rng = np.random.default_rng(0)
    targets = rng.random((200, 12)) < 0.15
    targets[np.arange(12), np.arange(12)] = True  # every class has a clip
    sampler = BalancedSampler(targets, batch_size=4, seed=1)
    visits = np.zeros(12, int)
    for _ in range(30):  # 120 draws = 10 epochs of 12 classes
        batch = sampler.next_batch()
        classes = [k for k, _ in batch]
        assert len(set(classes)) == len(classes) == 4
        for k, clip in batch:
            assert targets[clip, k]
            visits[k] += 1
    assert visits.max() - visits.min() <= 1, visits


def test_balanced_sampler_ranks_shard_and_resume():
    targets = np.eye(8, dtype=bool).repeat(3, axis=0)
    a = BalancedSampler(targets, 4, seed=3, rank=0, world_size=2)
    b = BalancedSampler(targets, 4, seed=3, rank=1, world_size=2)
    for _ in range(5):
        ba, bb = a.next_batch(), b.next_batch()
        assert len(ba) == len(bb) == 2 and not {k for k, _ in ba} & {k for k, _ in bb}
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(3)]
    c = BalancedSampler(targets, 4, seed=99, rank=0, world_size=2)
    c.load_state_dict(json.loads(json.dumps(state)))
    assert [c.next_batch() for _ in range(3)] == expected
    with pytest.raises(DataError, match="distinct classes"):
        BalancedSampler(targets, 9)


def test_unprepared_dataset_message(tmp_path, monkeypatch):
    monkeypatch.setenv("USSNB_DATA", str(tmp_path))
    with pytest.raises(DataError, match="ussnb data prepare starter"):
        data.load("starter")
