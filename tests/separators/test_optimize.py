"""separators.optimize: one call for the fastest faithful mode on a device; the bundle runs through it on its
device and precision. CUDA cases skip with a reason on a machine without a GPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ussnb.errors import ConfigError
from ussnb.separators import OptimizedSeparator, build_separator, optimize
from ussnb.separators.optimize import output_sdr

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(2, 1, 16000, generator=g), torch.rand(2, 8, generator=g)


@pytest.mark.parametrize("name,preset", [("meltcn", "tiny"), ("resunet30", "tiny")])
def test_optimize_is_called_like_the_model(name, preset, inputs):
    torch.manual_seed(0)
    model = build_separator(name, preset, condition_size=8).eval()
    x, c = inputs
    if name == "resunet30":
        x = x[..., :32000] if x.shape[-1] >= 32000 else torch.nn.functional.pad(x, (0, 32000 - x.shape[-1]))
    with torch.inference_mode():
        ref = model(x, c)
        fast = optimize(model, "fp32", device="cpu")
        assert isinstance(fast, OptimizedSeparator) and fast.mode == "fp32"
        assert torch.equal(fast(x, c), ref)  # fp32 eager: the very same computation
        assert (fast.sample_rate, fast.condition_size, fast.registry_name) == (model.sample_rate, 8, name)
        bf = optimize(model, "bf16", device="cpu")
        y = bf(x, c)
        assert y.dtype == torch.float32 and y.shape == ref.shape
        assert output_sdr(ref, y) >= 30.0  # bf16 autocast stays within 30 dB of fp32 (measured ~50 dB here)
    with pytest.raises(RuntimeError, match="for inference"):
        fast.train()


def test_optimize_best_measures_and_keeps_a_faithful_mode():
    torch.manual_seed(0)
    model = build_separator("meltcn", "tiny", condition_size=8).eval()
    fast = optimize(model, "best", device="cpu", example_seconds=0.5, repeats=1)
    cands = fast.report["candidates"]
    assert set(cands) >= {"fp32", "fp32-channels", "bf16"} and "fp16" not in cands  # fp16: CUDA only
    assert all(v["seconds"] > 0 for v in cands.values())
    assert cands[fast.mode]["accepted"] and cands[fast.mode]["sdr_vs_fp32_db"] >= 30.0
    chosen = cands[fast.mode]["seconds"]
    assert all(chosen <= v["seconds"] for v in cands.values() if v["accepted"])
    # a mode below the fidelity bar is never chosen
    strict = optimize(model, "best", device="cpu", example_seconds=0.5, repeats=1, min_sdr_db=1e9,
                      modes=["bf16"])
    assert strict.mode == "fp32" and not strict.report["candidates"]["bf16"]["accepted"]


def test_bundle_runs_on_its_device_and_precision(tmp_path):
    from ussnb.queries import save_conditions
    from ussnb.run import Run
    from ussnb.separation import SeparationBundle, separate
    from ussnb.separators import save_separator

    run = Run(tmp_path / "r")
    mids = ["/m/05zppz", "/m/05r5c"]
    torch.manual_seed(0)
    save_separator(run.separator_path, build_separator("meltcn", "tiny", condition_size=2), condition="soft",
                   labels=mids)
    save_conditions(run.conditions_path("soft"), np.eye(2), kind="soft", labels=mids)
    wave = (0.1 * np.random.default_rng(0).standard_normal(16000 * 3)).astype(np.float32)
    fp32 = SeparationBundle.load(tmp_path / "r", device="cpu")
    bf16 = SeparationBundle.load(tmp_path / "r", device="cpu", precision="bf16")
    assert fp32.device == torch.device("cpu") and fp32.model.mode == "fp32" and bf16.model.mode == "bf16"
    a, b = separate(wave, "Piano", fp32, progress=False), separate(wave, "Piano", bf16, progress=False)
    assert output_sdr(torch.from_numpy(a), torch.from_numpy(b)) >= 30.0
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        SeparationBundle.load(tmp_path / "r", device="cpu", precision="fp16")


@pytest.mark.skipif(NO_CUDA, reason="no CUDA GPU on this machine (CPU-only torch build)")
def test_cuda_output_agrees_with_cpu(inputs):
    torch.manual_seed(0)
    model = build_separator("meltcn", "tiny", condition_size=8).eval()
    x, c = inputs
    with torch.inference_mode():
        ref = optimize(model, "fp32", device="cpu")(x, c)
        gpu = optimize(model, "fp32", device="cuda")
        assert output_sdr(ref, gpu(x, c).cpu()) >= 60.0


def _randomise_bn(model):
    """Non-trivial BatchNorm statistics, as a trained model has (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(0.5 + 1.5 * torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.data.copy_(0.4 * torch.rand(m.num_features, generator=g) - 0.2)


def test_resunet_bf16_runs_a_native_low_precision_body(inputs):
    torch.manual_seed(0)
    model = build_separator("resunet30", "tiny", condition_size=8).eval()
    _randomise_bn(model)
    x, c = inputs
    with torch.inference_mode():
        ref = model(x, c)
        native = optimize(model, "bf16", device="cpu")
        auto = OptimizedSeparator(model, "bf16-autocast", "cpu")
        assert native.native and native.report["low_precision"] == "native"
        assert not auto.native and auto.report["low_precision"] == "autocast"
        body = native.model
        assert body is not model and body.base.encoder_block1.conv_block1.conv1.weight.dtype == torch.bfloat16
        assert body.film.state_dict()[next(iter(body.film.state_dict()))].dtype == torch.bfloat16
        assert body.base.bn0.weight.dtype == torch.float32  # BN statistics stay fp32
        assert body.base.encoder_block1.conv_block1.bn1.running_var.dtype == torch.float32
        assert model.base.encoder_block1.conv_block1.conv1.weight.dtype == torch.float32  # original untouched
        y, z = native(x, c), auto(x, c)
        assert y.dtype == torch.float32 and y.shape == ref.shape
        assert output_sdr(ref, y) >= 30.0 and output_sdr(ref, z) >= 30.0
        # the native body really computes in bf16 (it is not the fp32 model in disguise)
        assert not torch.equal(y, ref)


def test_compiled_mode_matches_eager(inputs):
    pytest.importorskip("torch._inductor")
    torch.manual_seed(0)
    model = build_separator("meltcn", "tiny", condition_size=8).eval()
    x, c = inputs
    with torch.inference_mode():
        ref = model(x, c)
        fast = optimize(model, "fp32", device="cpu", compile=True)
        assert fast.compiled and fast.report["compiled"]
        assert "_call" not in dict(fast.named_children())  # the compiled wrapper is not a second copy of the state
        assert list(fast.state_dict()) == ["model." + k for k in model.state_dict()]
        assert output_sdr(ref, fast(x, c)) >= 60.0
