"""A tiny starter set (4 classes, 6/2/4 clips) and its test sets, built once per session (tests/conftest.py
makes the fixtures available) for the tests of ussnb.data.testsets, ussnb.eval.protocol and zero-shot's
anchor exclusion. Without the starter packages the fixtures skip, naming them."""
from __future__ import annotations

import pytest

from ussnb.data import testsets
from ussnb.data.recipes import starter

CLASSES = ["Bass drum", "Snare drum", "Hi-hat", "Male speech, man speaking"]


@pytest.fixture(scope="session")
def tiny_starter(tmp_path_factory):
    apt, pip = starter.missing_requirements()
    if apt or pip:
        pytest.skip(f"starter packages missing: {' '.join(apt + pip)}")
    root = tmp_path_factory.mktemp("starter")
    out = starter.prepare_starter(root, n_train=6, n_validation=2, n_test=4, classes=CLASSES, pieces_per_class=2,
                                  max_per_speaker=3, cache_dir=root / "cache", progress=False)
    return out, testsets.starter_source(out, root / "cache")


@pytest.fixture(scope="session")
def pairs(tiny_starter, tmp_path_factory):
    out, src = tiny_starter
    return testsets.prepare_starter_pairs(out, n_per_class=3, n_examples=3, root=tmp_path_factory.mktemp("b"), source=src)


@pytest.fixture(scope="session")
def music(tiny_starter, tmp_path_factory):
    return testsets.prepare_starter_music(n_pieces=1, seconds=3.0, source=tiny_starter[1],
                                   root=tmp_path_factory.mktemp("m"))


@pytest.fixture(scope="session")
def speech(tiny_starter, tmp_path_factory):
    out, src = tiny_starter
    return testsets.prepare_starter_speech(out, n_per_snr=1, source=src, root=tmp_path_factory.mktemp("s"))
