"""The cached anchor set on a real (tiny, composed) dataset: completeness, resuming, precision, speed; held-out
classes left out of it (zero-shot) on the tiny starter set of tests/tiny_starter.py."""
import os

import numpy as np
import pytest
import torch

from ussnb import data
from ussnb.anchors import AnchorSet, batch_from_cache, measure_cache_speedup, mine_anchor_set, mining_precision
from ussnb.data.recipes.starter.catalogue import NAME_TO_MID
from ussnb.taggers.sed import SedCnn


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, shared_dir):
    root = tmp_path_factory.mktemp("cache")
    old = os.environ.get("USSNB_DATA")
    os.environ["USSNB_DATA"] = str(root / "data")
    try:
        ds = data.load(data.prepare_named("esc50", n_train=16, n_validation=4, n_test=8, progress=False))
    finally:
        os.environ.pop("USSNB_DATA") if old is None else os.environ.__setitem__("USSNB_DATA", old)
    torch.manual_seed(0)
    tagger = SedCnn(classes=len(ds.labels), channels=(8, 16), time_pools=(2, 2), hidden=16).eval()
    return ds, tagger, root


def test_one_anchor_per_clip_and_tag_with_conditions(tiny):
    ds, tagger, root = tiny
    a = mine_anchor_set(ds, "train", root / "a", tagger=tagger, part_size=5, progress=False)
    n_tags = sum(len(c.labels) for c in ds.clips("train"))
    assert len(a) == n_tags  # no composed clip is silent
    assert a.conditions("soft").shape == (n_tags, len(ds.labels))
    assert a.conditions("embedding").shape == (n_tags, 16)
    for i in range(len(a)):
        assert ds.clips("train")[a.clip[i]].labels.count(ds.labels[a.label[i]]) == 1
        assert 0 <= a.start[i] <= 10 * ds.sample_rate - 2 * ds.sample_rate
    assert a.segment_audio(0).shape == (2 * ds.sample_rate,)


def test_mining_resumes_from_finished_parts(tiny):
    ds, tagger, root = tiny
    first = mine_anchor_set(ds, "train", root / "b", tagger=tagger, part_size=5, progress=False)
    parts = sorted((root / "b" / "parts").glob("part-*.npz"))
    assert len(parts) == 4
    kept = parts[0].stat().st_mtime_ns
    parts[-1].unlink()  # as if interrupted during the last part
    (root / "b" / "anchors.npz").unlink()
    again = mine_anchor_set(ds, "train", root / "b", tagger=tagger, part_size=5, progress=False)
    assert parts[0].stat().st_mtime_ns == kept  # finished parts were not redone
    np.testing.assert_array_equal(first.start, again.start)
    np.testing.assert_allclose(first.conditions("soft"), again.conditions("soft"))


def test_excluded_classes_are_left_out(tiny):
    ds, tagger, root = tiny
    some = ds.clips("train")[0].labels[0]
    a = mine_anchor_set(ds, "train", root / "c", tagger=tagger, exclude_classes=[some], progress=False,
                        condition_types=())
    assert ds.label_index[some] not in set(a.label.tolist())


def test_precision_and_batches_and_speed(tiny):
    ds, tagger, root = tiny
    frames = {c.clip_id: tagger.tag(ds.load(c)).frames[0].numpy() for c in ds.clips("test")}
    prec = mining_precision(ds, "test", frames, durations=(1.0, 2.0))
    assert set(prec) == {"sed", "in-clip-random", "out-clip-random"}
    assert all(0 <= v <= 1 for per in prec.values() for v in per.values()) and set(prec["sed"]) == {"1.0", "2.0"}
    a = AnchorSet(root / "a") if (root / "a" / "anchors.json").is_file() else \
        mine_anchor_set(ds, "train", root / "a", tagger=tagger, progress=False)
    by = a.by_class()
    picks = [int(v[0]) for v in list(by.values())[:4]]
    batch = batch_from_cache(a, picks, n_sources=2, rng=np.random.default_rng(0))
    assert batch.mixture.shape == batch.target.shape == (4, 2 * ds.sample_rate)
    speed = measure_cache_speedup(ds, "train", a, tagger, batches=1, batch_size=4)
    assert speed["speedup"] > 1.0


def test_anchor_exclusion_leaves_held_out_classes_out(tiny_starter, tmp_path):
    """The training half of zero-shot: mine_anchor_set(..., exclude_classes) mines no anchor of those classes."""
    ds = data.load(tiny_starter[0])
    tagger = SedCnn(classes=len(ds.labels)).eval()
    hihat = NAME_TO_MID["Hi-hat"]
    full = mine_anchor_set(ds, "train", tmp_path / "all", strategy="in-clip-random", tagger=tagger,
                           condition_types=("soft",), progress=False)
    held = mine_anchor_set(ds, "train", tmp_path / "held", strategy="in-clip-random", tagger=tagger,
                           condition_types=("soft",), exclude_classes=[hihat], progress=False)
    k = ds.label_index[hihat]
    assert (full.label == k).any() and not (held.label == k).any()
    assert set(held.label.tolist()) == set(full.label.tolist()) - {k}
    assert held.meta["exclude"] == [hihat]


def test_stage_01_frames_are_mined_without_tagging_the_clips_again(tiny, tmp_path):
    """SedFrames: the run tagger's p_SED of each clip's tags, written once (stage 01) and read by every mining of the
    run; the anchors are those of mining that tags the clips itself, and the clips are not tagged again."""
    from ussnb.anchors import SedFrames

    ds, tagger, _ = tiny
    path = SedFrames.write(tmp_path / "sed_frames" / "train.npz", tagger, ds, "train", batch_size=1, progress=False)
    name = getattr(tagger, "name", type(tagger).__name__)
    stored = SedFrames.load(path, ds, "train", name)
    assert stored is not None and len(stored) == len(ds.clips("train"))
    clip = ds.clips("train")[0]
    full = tagger.tag(ds.load(clip)).frames[0].numpy()
    got = stored[clip.clip_id]
    ks = [ds.label_index[m] for m in clip.labels]
    np.testing.assert_allclose(got[:, ks], full[:got.shape[0], ks], atol=1e-6)
    assert not np.delete(got, ks, axis=1).any()  # only the tagged classes are kept (all that eq. 3 reads)

    calls = []

    class Counting:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, k):
            return getattr(self.inner, k)

        def tag(self, x, frames=True):
            calls.append(frames)
            return self.inner.tag(x, frames=frames)

    for tau in (1.0, 2.0):
        own = mine_anchor_set(ds, "train", tmp_path / f"own{tau}", tagger=tagger, duration=tau, tag_batch=1,
                              progress=False)
        calls.clear()
        cached = mine_anchor_set(ds, "train", tmp_path / f"cached{tau}", tagger=Counting(tagger), duration=tau,
                                 tag_batch=1, progress=False, frames_in=stored)
        assert calls and not any(calls)  # only the anchors' conditions (frames=False), no clip tagging
        np.testing.assert_array_equal(own.start, cached.start)
        np.testing.assert_allclose(own.score, cached.score, rtol=1e-5)
    assert SedFrames.load(path, ds, "train", "another-tagger") is None and "tagger" in SedFrames.why_not
    assert SedFrames.load(path, ds, "test", name) is None and "split" in SedFrames.why_not
    assert SedFrames.load(tmp_path / "none.npz", ds, "train", name) is None and "not found" in SedFrames.why_not
