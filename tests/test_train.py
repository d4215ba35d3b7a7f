"""Separator training: a few real steps, exact resume after SIGKILL, and 2-process gloo DDP."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ussnb import data
from ussnb.anchors import mine_anchor_set
from ussnb.separators import load_separator
from ussnb.taggers.sed import SedCnn
from ussnb.train import TrainConfig, train_separator

TINY = {"separator": "meltcn", "separator_preset": "tiny", "steps": 6, "batch_size": 4, "val_every": 3,
        "val_mixtures": 8, "checkpoint_every": 3, "warmup_steps": 2, "speed_perturb": 0.1}


@pytest.fixture(scope="module")
def anchor_dirs(tmp_path_factory, shared_dir):
    root = tmp_path_factory.mktemp("train")
    old = os.environ.get("USSNB_DATA")
    os.environ["USSNB_DATA"] = str(root / "data")
    try:
        ds = data.load(data.prepare_named("esc50", n_train=24, n_validation=8, n_test=4, progress=False))
    finally:
        os.environ.pop("USSNB_DATA") if old is None else os.environ.__setitem__("USSNB_DATA", old)
    torch.manual_seed(0)
    tagger = SedCnn(classes=len(ds.labels), channels=(8, 16), time_pools=(2, 2), hidden=16).eval()
    tr = mine_anchor_set(ds, "train", root / "anchors_train", strategy="sed", tagger=tagger, progress=False)
    va = mine_anchor_set(ds, "validation", root / "anchors_val", strategy="sed", tagger=tagger, progress=False)
    return tr.folder, va.folder


@pytest.mark.parametrize("condition", ["onehot", "soft", "embedding"])
def test_train_steps_save_and_load(anchor_dirs, tmp_path, condition):
    model, history = train_separator(*anchor_dirs, tmp_path, {**TINY, "condition": condition}, progress=False)
    assert len(history) == 6 and all(np.isfinite(h["loss"]) for h in history)
    assert "val_sdri" in history[2]
    loaded = load_separator(tmp_path / "separator.pt")
    payload = torch.load(tmp_path / "separator.pt", weights_only=False)
    assert payload["condition"] == condition
    x = torch.randn(1, 1, 16000) * 0.1
    c = torch.rand(1, loaded.condition_size)
    assert torch.allclose(loaded(x, c), model.eval()(x, c), atol=1e-6)
    val = json.loads((tmp_path / "validation.json").read_text())
    assert val["floor_sdri"] == pytest.approx(3.0, abs=0.3) and val["irm_sdri"] > val["floor_sdri"]


def _run(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "ussnb.train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_resume_after_sigkill_gives_identical_losses(anchor_dirs, tmp_path):
    train_dir, val_dir = map(str, anchor_dirs)
    cfg = json.dumps({**TINY, "steps": 40, "checkpoint_every": 4, "val_every": 1000})
    full = _run(["--anchors", train_dir, "--out", str(tmp_path / "full"), "--config", cfg, "--threads", "1"])
    assert full.wait(timeout=600) == 0, full.stderr.read()
    reference = json.loads((tmp_path / "full" / "losses_rank0.json").read_text())["losses"]

    out = tmp_path / "killed"
    proc = _run(["--anchors", train_dir, "--out", str(out), "--config", cfg, "--threads", "1"])
    deadline = time.time() + 600
    while time.time() < deadline:
        state = out / "state.pt"
        if state.is_file() and torch.load(state, weights_only=False)["step"] >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "separator.pt").exists(), "the run finished before it could be killed"
    killed_at = torch.load(out / "state.pt", weights_only=False)["step"]
    assert 8 <= killed_at < 40
    resumed = _run(["--anchors", train_dir, "--out", str(out), "--config", cfg, "--threads", "1"])
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    losses = json.loads((out / "losses_rank0.json").read_text())["losses"]
    assert losses == reference  # exactly, including the steps after the kill


def test_ddp_two_processes_gloo(anchor_dirs, tmp_path):
    train_dir, val_dir = map(str, anchor_dirs)
    cfg = json.dumps({**TINY, "steps": 3, "val_every": 1000})
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(29500 + os.getpid() % 1000), "-m", "ussnb.train",
                           "--anchors", train_dir, "--out", str(tmp_path), "--config", cfg, "--threads", "1"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "losses_rank0.json").read_text())
    r1 = json.loads((tmp_path / "losses_rank1.json").read_text())
    assert len(r0["losses"]) == len(r1["losses"]) == 3
    assert r0["losses"] != r1["losses"]  # each rank trains on its own shard of the balanced batch
    assert r0["param_sum"] == pytest.approx(r1["param_sum"], rel=0, abs=1e-9)  # gradients were all-reduced
    assert (tmp_path / "separator.pt").is_file()


def test_prefetched_batches_give_the_same_losses_and_resume_exactly(anchor_dirs, tmp_path):
    cfg = {**TINY, "steps": 8, "checkpoint_every": 2, "val_every": 1000}
    _, plain = train_separator(anchor_dirs[0], None, tmp_path / "plain", cfg, progress=False)
    _, first = train_separator(anchor_dirs[0], None, tmp_path / "ahead", cfg, progress=False, prefetch=3,
                               stop_after=4)
    assert len(first) == 4  # stopped with batches 5.. already made ahead: the state is that of batch 4
    _, resumed = train_separator(anchor_dirs[0], None, tmp_path / "ahead", cfg, progress=False, prefetch=3)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in plain]


def _torchrun(nproc, train_dir, out, cfg, *extra):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_port", str(29500 + (os.getpid() + 7 * nproc) % 1000), "-m", "ussnb.train"]
    if nproc == 1:
        cmd = [sys.executable, "-m", "ussnb.train"]
    proc = subprocess.run([*cmd, "--anchors", train_dir, "--out", str(out), "--config", cfg, "--threads", "1",
                           *extra], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ddp_resume_is_exact_on_the_same_world_and_continues_on_another(anchor_dirs, tmp_path):
    train_dir = str(anchor_dirs[0])
    cfg = json.dumps({**TINY, "steps": 6, "checkpoint_every": 3, "val_every": 1000})
    _torchrun(2, train_dir, tmp_path / "full", cfg)
    _torchrun(2, train_dir, tmp_path / "split", cfg, "--stop-after", "3")
    state = torch.load(tmp_path / "split" / "state.pt", weights_only=False)
    assert state["step"] == 3 and state["world"] == 2 and len(state["rng_ranks"]) == 2
    assert state["rng_ranks"][0]["generators"]["local"] != state["rng_ranks"][1]["generators"]["local"]
    _torchrun(2, train_dir, tmp_path / "split", cfg)
    for rank in (0, 1):  # every rank, not only rank 0, continues with its own random state
        full = json.loads((tmp_path / "full" / f"losses_rank{rank}.json").read_text())["losses"]
        split = json.loads((tmp_path / "split" / f"losses_rank{rank}.json").read_text())["losses"]
        assert len(split) == 6 and split[3:] == full[3:]  # (steps 1-3 of the history are rank 0's, from the state)
    # a 2-process state resumed by one process: finishes the run, says what was re-seeded
    _torchrun(2, train_dir, tmp_path / "w1", cfg, "--stop-after", "3")
    proc = _torchrun(1, train_dir, tmp_path / "w1", cfg)
    assert "saved by 2 process(es) on 1" in proc.stderr
    history = json.loads((tmp_path / "w1" / "history.json").read_text())["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert load_separator(tmp_path / "w1" / "separator.pt").condition_size > 0


def test_one_source_of_defaults_notebook_04_and_train_config():
    """Notebook 04's parameter defaults equal TrainConfig's, so `python -m ussnb.train` trains what stage 04 does."""
    import ast
    from dataclasses import fields

    import papermill as pm

    from ussnb.train import TrainConfig

    nb = Path(__file__).resolve().parents[1] / "notebooks" / "04_training.ipynb"
    params = {k: ast.literal_eval(v["default"]) for k, v in pm.inspect_notebook(str(nb)).items()}
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name in params}
    assert len(defaults) >= 15
    from_nb = TrainConfig.from_params(params)
    differ = {k: (params[k], v) for k, v in defaults.items() if getattr(from_nb, k) != v}
    assert not differ, f"notebook 04 vs TrainConfig defaults (notebook, dataclass): {differ}"


def test_train_cli_reads_a_preset_and_overrides():
    from ussnb.pipeline import load_preset, section_values
    from ussnb.train import TrainConfig

    cfg = TrainConfig.from_params(section_values(load_preset("cpu"), "train") | {"steps": 7})
    assert cfg.steps == 7 and cfg.warmup_steps == load_preset("cpu")["train.warmup_steps"] == 100
    assert cfg.checkpoint_every == cfg.val_every and cfg.step3_threshold is None
    assert TrainConfig.from_params({"step3_threshold": -1.0}).step3_threshold is None


def test_query_by_other_anchors_of_the_class(anchor_dirs):
    from ussnb.anchors import AnchorSet
    from ussnb.train import AnchorAudio, MixtureSampler

    anchors = AnchorSet(anchor_dirs[0])
    audio = AnchorAudio(anchors, 16000, progress=False)
    own = MixtureSampler(anchors, audio, TrainConfig(**{**TINY, "query_other": 0.0}))
    b = own.next()
    assert b["query"].shape == (len(b["anchor"]), 1) and (b["query"][:, 0] == b["anchor"]).all()
    other = MixtureSampler(anchors, audio, TrainConfig(**{**TINY, "query_other": 1.0, "query_examples": 3}))
    swapped = 0
    for _ in range(5):
        b = other.next()
        assert b["query"].shape == (len(b["anchor"]), 3)
        for a, q in zip(b["anchor"], b["query"]):
            assert (anchors.label[q] == anchors.label[a]).all()  # always the item's own class
            if (q != a).any():
                assert (anchors.clip[q] != anchors.clip[a]).all()  # ... from other clips than the mixture's
                swapped += 1
    assert swapped > 0
    # training runs with by-example queries
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _, history = train_separator(*anchor_dirs, Path(tmp), {**TINY, "condition": "embedding", "query_other": 0.5},
                                     progress=False)
    assert len(history) == 6 and all(np.isfinite(h["loss"]) for h in history)


def test_bf16_training_on_an_explicit_cpu_device(anchor_dirs, tmp_path):
    """device="cpu" + bf16 autocast: the steps run, the loss stays fp32 and finite, the checkpoint is fp32 and
    device-free, and the run resumes on the default device (one state, any device)."""
    cfg = {**TINY, "steps": 4, "val_every": 2, "checkpoint_every": 2}
    model, history = train_separator(*anchor_dirs, tmp_path, cfg, progress=False, device="cpu", precision="bf16")
    assert len(history) == 4 and all(np.isfinite(h["loss"]) for h in history) and "val_sdri" in history[1]
    payload = torch.load(tmp_path / "separator.pt", weights_only=False)
    assert all(v.device.type == "cpu" and v.dtype != torch.bfloat16 for v in payload["state_dict"].values())
    _, again = train_separator(*anchor_dirs, tmp_path, cfg, progress=False)  # finished state: nothing to redo
    assert [h["loss"] for h in again] == [h["loss"] for h in history]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (CPU-only torch build)")
def test_training_on_cuda(anchor_dirs, tmp_path):
    model, history = train_separator(*anchor_dirs, tmp_path, {**TINY, "steps": 3}, progress=False, device="cuda")
    assert next(model.parameters()).device.type == "cuda" and all(np.isfinite(h["loss"]) for h in history)
    assert all(v.device.type == "cpu" for v in torch.load(tmp_path / "separator.pt", weights_only=False)
               ["state_dict"].values())


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (np.ndarray, torch.Tensor)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def test_gradient_accumulation_draws_accumulate_batches_per_step(anchor_dirs, tmp_path):
    """accumulate=2 for 2 steps consumes exactly the batch stream of 4 plain steps (one optimizer step per
    2 balanced batches); the recorded loss is the micro-batches' mean."""
    base = {**TINY, "val_every": 1000}
    _, two = train_separator(anchor_dirs[0], None, tmp_path / "acc", {**base, "steps": 2, "accumulate": 2},
                             progress=False)
    _, four = train_separator(anchor_dirs[0], None, tmp_path / "plain", {**base, "steps": 4}, progress=False)
    acc = torch.load(tmp_path / "acc" / "state.pt", weights_only=False)
    plain = torch.load(tmp_path / "plain" / "state.pt", weights_only=False)
    assert acc["step"] == 2 and plain["step"] == 4 and len(two) == 2
    assert _same(acc["sampler"], plain["sampler"]) and _same(acc["rng"], plain["rng"])
    assert all(np.isfinite(h["loss"]) for h in two)
    with pytest.raises(ValueError, match="accumulate"):
        train_separator(anchor_dirs[0], None, tmp_path / "bad", {**base, "accumulate": 0}, progress=False)


def test_in_clip_random_mixes_each_anchor_with_another_segment_of_its_own_clip(anchor_dirs, tmp_path):
    """Table 7's in-clip-random baseline: the same anchors as out-clip-random (its own random stream), each mixed
    with a non-overlapping segment of its *own* clip; out-clip mixes segments of different clips. The two train
    different separators (they were byte-identical before the in-clip partner existed)."""
    from ussnb.anchors import AnchorSet, partner_start
    from ussnb.train import AnchorAudio, MixtureSampler

    ds = data.load(Path(AnchorSet(anchor_dirs[0]).meta["dataset"]))
    torch.manual_seed(0)
    tagger = SedCnn(classes=len(ds.labels), channels=(8, 16), time_pools=(2, 2), hidden=16).eval()
    sets = {}
    for strategy in ("in-clip-random", "out-clip-random"):
        for split in ("train", "validation"):
            sets[strategy, split] = mine_anchor_set(ds, split, tmp_path / strategy / split, strategy=strategy,
                                                    tagger=tagger, seed=3, progress=False)
    inc, outc = sets["in-clip-random", "train"], sets["out-clip-random", "train"]
    np.testing.assert_array_equal(inc.start, outc.start)
    assert outc.partner is None and inc.partner is not None
    seg = inc.segment
    assert (np.abs(inc.partner - inc.start) >= seg).all()  # 10 s clips hold two 2 s segments apart
    assert ((inc.partner >= 0) & (inc.partner <= 10 * ds.sample_rate - seg)).all()

    audio = AnchorAudio(inc, 16000, progress=False)
    assert (inc.folder / "partner_16000.npy").is_file()
    cfg = TrainConfig(**{**TINY, "speed_perturb": 0.0, "augmentation": "none"})
    b = MixtureSampler(inc, audio, cfg).next()
    for m, t, a in zip(b["mixture"], b["target"], b["anchor"]):
        np.testing.assert_allclose(t / np.abs(t).max(), audio[a] / np.abs(audio[a]).max(), atol=1e-4)
        rest = m - t  # the interferer is the anchor's in-clip partner (same clip, same scale)
        np.testing.assert_allclose(rest / np.abs(rest).max(), audio.partners(a) / np.abs(audio.partners(a)).max(),
                                   atol=1e-4)
    with pytest.raises(Exception, match="n_sources must be 2"):
        MixtureSampler(inc, audio, TrainConfig(**{**TINY, "n_sources": 3}))

    runs = {}
    for strategy in ("in-clip-random", "out-clip-random"):
        _, runs[strategy] = train_separator(sets[strategy, "train"].folder, sets[strategy, "validation"].folder,
                                            tmp_path / f"run-{strategy}", TINY, progress=False)
    assert [h["loss"] for h in runs["in-clip-random"]] != [h["loss"] for h in runs["out-clip-random"]]

    rng = np.random.default_rng(0)
    assert partner_start(0, 100, 150, rng) != 0  # a clip shorter than two segments: any other start
    assert partner_start(0, 100, 100, rng) == 0  # a clip of one segment: the only start
    assert all(abs(partner_start(200, 100, 1000, rng) - 200) >= 100 for _ in range(50))
