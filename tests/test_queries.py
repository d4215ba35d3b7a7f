import numpy as np
import pytest
import soundfile as sf
import torch

from ussnb.errors import AudioError
from ussnb.queries import (ClassConditions, QueryNet, class_average_conditions, non_silent, onehot,
                           query_by_example, save_conditions, split_segments)
from ussnb.taggers.sed import SedCnn


@pytest.fixture(scope="module")
def tagger():
    torch.manual_seed(0)
    return SedCnn(classes=5, channels=(8, 16), time_pools=(2, 2), hidden=24).eval()


def test_onehot():
    np.testing.assert_array_equal(onehot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize("kind,dim", [("soft", 5), ("embedding", 24)])
def test_frozen_conditions_have_no_trainable_parameters(tagger, kind, dim):
    net = QueryNet(tagger, kind)
    assert net.dim == dim and not [p for p in net.parameters() if p.requires_grad]
    out = net(torch.randn(2, 32000) * 0.1)
    assert out.shape == (2, dim)


@pytest.mark.parametrize("kind", ["finetune", "shortcut", "adaptor"])
def test_learnable_parameters_reach_the_optimizer_and_change(kind):
    torch.manual_seed(1)
    tagger = SedCnn(classes=5, channels=(8, 16), time_pools=(2, 2), hidden=24).eval()
    net = QueryNet(tagger, kind, output="embedding")
    params = [p for p in net.parameters() if p.requires_grad]
    assert params, "a learnable query net must expose trainable parameters"
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-2)
    net.train()
    x = torch.randn(3, 32000) * 0.1
    loss = (net(x) - 1.0).pow(2).mean()
    loss.backward()
    opt.step()
    changed = sum(not torch.equal(a, p.detach()) for a, p in zip(before, params))
    assert changed >= 1, f"{kind}: no trainable parameter changed after a step"
    frozen = [p for n, p in net.named_parameters() if n.startswith("tagger.")]
    if kind != "finetune":
        assert all(not p.requires_grad for p in frozen)


def test_class_average_hand_example():
    conds = np.array([[1, 0], [3, 2], [0, 4], [5, 5]], np.float32)
    avg, counts = class_average_conditions(conds, np.array([0, 0, 2, 2]), 3)
    np.testing.assert_allclose(avg, [[2, 1], [0, 0], [2.5, 4.5]])
    assert counts.tolist() == [2, 0, 2]


def test_save_and_load_conditions(tmp_path):
    path = save_conditions(tmp_path / "c.npz", np.eye(3), kind="soft", labels=["/m/a", "/m/b", "/m/c"],
                           counts=np.array([2, 0, 1]))
    cc = ClassConditions(path)
    assert cc.kind == "soft" and cc["/m/c"].tolist() == [0, 0, 1]
    with pytest.raises(Exception, match="no anchors"):
        cc["/m/b"]


def test_split_segments_tiles_last():
    segs = split_segments(np.arange(5, dtype=np.float32), 1, 2.0)
    np.testing.assert_array_equal(segs, [[0, 1], [2, 3], [4, 4]])
    assert non_silent(np.array([[0.0, 0.0], [0.5, -0.5]])).tolist() == [False, True]


class _MeanAbs(torch.nn.Module):
    sample_rate = 1000

    def forward(self, x):
        return x.abs().mean(dim=1, keepdim=True)


def test_query_by_example_averages_non_silent_segments(tmp_path):
    sr = 1000
    a = np.concatenate([np.full(2000, 0.5), np.zeros(2000)]).astype(np.float32)  # one loud, one silent segment
    b = np.full(2000, 0.1, np.float32)
    sf.write(tmp_path / "a.wav", a, sr)
    sf.write(tmp_path / "b.wav", b, sr)
    c = query_by_example([tmp_path / "a.wav", tmp_path / "b.wav"], _MeanAbs(), hop_seconds=None)
    assert c.shape == (1,) and c[0] == pytest.approx((0.5 + 0.1) / 2, rel=1e-4)
    # default: 2 s segments every 1 s, and only those within 20 dB of the file's loudest — a quiet stretch
    # (here 34 dB down) does not water the query down
    q = np.concatenate([np.full(2000, 0.5), np.full(4000, 0.01)]).astype(np.float32)
    sf.write(tmp_path / "q.wav", q, sr)
    assert query_by_example([tmp_path / "q.wav"], _MeanAbs())[0] == pytest.approx(0.5 * 0.75 + 0.01 * 0.25, rel=1e-3)
    assert query_by_example([tmp_path / "q.wav"], _MeanAbs(), relative_db=None)[0] < 0.2
    sf.write(tmp_path / "silent.wav", np.zeros(3000, np.float32), sr)
    with pytest.raises(AudioError, match="silent.wav: example is silent"):
        query_by_example([tmp_path / "silent.wav"], _MeanAbs())


@pytest.mark.parametrize("kind", ["soft", "embedding", "adaptor", "shortcut", "finetune"])
def test_pretrained_mn04_query_net_conditions(kind, shared_dir):
    """The pretrained AudioSet query net as a run uses it (mn04 restricted to a dataset's classes): condition
    shapes, determinism, and the learnable kinds on top of it train."""
    from ussnb.taggers.stage import build_run_tagger

    mids = ["/m/0bt9lr", "/m/01yrx", "/m/05r5c"]  # Dog, Cat, Piano
    net = QueryNet(build_run_tagger("efficientat-mn04", mids), kind, output="embedding" if kind != "soft" else None)
    x = torch.from_numpy((0.1 * np.random.default_rng(0).standard_normal((2, 64000))).astype(np.float32))
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert a.shape == (2, 3 if kind == "soft" else 384) and torch.equal(a, b)
    if kind == "soft":
        assert (a >= 0).all() and (a <= 1).all()
    params = [p for p in net.parameters() if p.requires_grad]
    assert bool(params) == (kind in ("adaptor", "shortcut", "finetune"))
    if params:
        net.train()
        net(x).pow(2).mean().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
