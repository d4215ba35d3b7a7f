"""ResUNet30 parity with the reference vectors (shared/reference/uss_resunet30_at_soft) and the official-checkpoint
loader."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ussnb.errors import CheckpointError
from ussnb.separators import ResUNet30, load_official_uss_checkpoint
from ussnb.separators.resunet import FROZEN_STFT_KEYS


@pytest.fixture(scope="module")
def ref(reference_dir):
    folder = reference_dir / "uss_resunet30_at_soft"
    return {
        "state_dict": torch.load(folder / "state_dict.pt", map_location="cpu", weights_only=True),
        "manifest": json.loads((folder / "manifest.json").read_text()),
        "io": dict(np.load(folder / "io.npz")),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def model(ref):
    m = ResUNet30(condition_size=527)
    m.load_state_dict(ref["state_dict"], strict=True)  # the file holds exactly our keys
    return m.eval()


def _max_err(a: torch.Tensor, b: np.ndarray) -> float:
    return float(np.abs(a.detach().numpy() - b).max())


@pytest.fixture(scope="module")
def case_a(model, ref):
    """Case a computed once through the model's pieces: |X|, after_conv logits, output."""
    io = ref["io"]
    mixture, condition = torch.from_numpy(io["mixture_a"]), torch.from_numpy(io["condition_a"])
    with torch.inference_mode():
        mag, cos, sin = model.spectrogram(mixture)
        logits = model.mask_logits(mag, condition)
        out = model.apply_mask(logits, mag, cos, sin, mixture.shape[-1])
    return {"mag": mag, "logits": logits, "output": out}


def test_resunet30_parity_keys_and_parameter_count(ref):
    manifest = ref["manifest"]
    model = ResUNet30(condition_size=527)
    frozen = set(manifest["keys_not_in_state_dict_pt"])
    assert frozen == set(FROZEN_STFT_KEYS)
    expected = [(k, tuple(shape)) for k, shape, _ in manifest["state_dict"] if k not in frozen]
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == expected, "state-dict keys/shapes/order differ from the official ResUNet30"
    assert set(ref["state_dict"]) == {k for k, _ in expected}, "state_dict.pt holds other keys than expected"
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen_params = sum(np.prod(s) for k, s, _ in manifest["state_dict"] if k in frozen and k != "base.istft.ola_window")
    assert trainable == manifest["trainable_params"] == 26_595_781
    assert trainable == manifest["all_params"] - frozen_params
    # the window is a non-persistent buffer: nothing frozen is stored
    assert not any("stft" in k for k in model.state_dict())


def test_resunet30_parity_outputs(model, ref, case_a):
    io = ref["io"]
    err_a = _max_err(case_a["output"], io["output_a"])
    with torch.inference_mode():
        out_b = model(torch.from_numpy(io["mixture_b"]), torch.from_numpy(io["condition_b"]))
    assert out_b.shape == io["output_b"].shape
    err_b = _max_err(out_b, io["output_b"])
    assert err_a <= 1e-4 and err_b <= 1e-4, f"max abs error output_a {err_a:.3g}, output_b {err_b:.3g} (limit 1e-4)"


def test_resunet30_parity_debug_arrays(ref, case_a):
    io = ref["io"]
    err_mag = _max_err(case_a["mag"], io["debug_stft_magnitude_a"])
    assert case_a["logits"].shape == io["debug_after_conv_a"].shape
    err_conv = _max_err(case_a["logits"], io["debug_after_conv_a"])
    assert err_mag <= 1e-3 and err_conv <= 1e-3, (
        f"max abs error debug_stft_magnitude_a {err_mag:.3g}, debug_after_conv_a {err_conv:.3g} (limit 1e-3)")


def test_resunet30_parity_training_path_and_dict_call(model, ref):
    """With the reference weights, the autograd path (plain BN modules, no in-place ops) computes the same
    function as the fused inference path; the reference's dict call style works."""
    io = ref["io"]
    mixture = torch.from_numpy(np.concatenate([io["mixture_b"][..., :8000], io["mixture_a"][..., :8000]]))
    condition = torch.from_numpy(np.concatenate([io["condition_b"], io["condition_a"]]))
    with torch.inference_mode():
        fast = model(mixture, condition)  # batch 2: FiLM shifts added in place
        fast_single = model(mixture[:1], condition[:1])  # batch 1: FiLM shifts folded into conv biases
    with torch.enable_grad():
        plain = model({"mixture": mixture, "condition": condition})["waveform"]
    err = float((fast - plain.detach()).abs().max())
    err_single = float((fast_single - plain[:1].detach()).abs().max())
    assert err <= 1e-5 and err_single <= 1e-5, (
        f"inference fast path vs autograd path: max abs error {err:.3g} (batch 2), {err_single:.3g} (batch 1)")


def test_resunet30_parity_unused_reference_layers(model):
    """decoder_blockN.bn2 and film.decoder_blockN->beta2 are registered but unused (parity holds without them);
    the residual blocks' conv_block2->beta2 are used."""
    unused = {f"decoder_block{i}->beta2" for i in range(1, 7)}
    film = {name for name, _ in model.film.named_children()}
    assert unused <= film and not unused & set(model._used_film)
    assert all(f"decoder_block{i}->conv_block2->beta2" in model._used_film for i in range(1, 7))
    x, c = torch.randn(1, 1, 8000), torch.rand(1, 527)
    layer = model.film.get_submodule("decoder_block6->conv_block2->beta2")
    with torch.inference_mode():
        before = model(x, c)
        saved = layer.bias.clone()
        layer.bias.add_(1.0)
        try:
            after = model(x, c)
        finally:
            layer.bias.copy_(saved)
    assert (after - before).abs().max() > 1e-4


# -- official Lightning checkpoint ------------------------------------------------------------------------------

def _lightning(state_dict, **extra_keys):
    state = {f"ss_model.{k}": v for k, v in state_dict.items()}
    state.update({f"ss_model.{k}": torch.zeros(2) for k in FROZEN_STFT_KEYS})  # ignored by the loader
    state.update(extra_keys)
    return {"epoch": 0, "global_step": 1000000, "pytorch-lightning_version": "1.9.0", "state_dict": state}


def test_resunet_official_checkpoint_loads(ref, tmp_path):
    query = {
        "query_net.base.conv_block1.conv1.weight": torch.randn(64, 1, 3, 3),
        "query_net.base.fc_audioset.bias": torch.randn(527),
    }
    detector = {"anchor_segment_detector.anchor_segment_scorer.smooth_filter": torch.ones(1, 1, 201)}
    path = tmp_path / "fake.ckpt"
    torch.save(_lightning(ref["state_dict"], **query, **detector), path)
    model, query_state = load_official_uss_checkpoint(path)
    assert isinstance(model, ResUNet30) and not model.training and model.condition_size == 527
    own = model.state_dict()
    for k, v in ref["state_dict"].items():
        assert torch.equal(own[k], v.to(own[k].dtype)), k
    assert set(query_state) == {"conv_block1.conv1.weight", "fc_audioset.bias"}
    # a bare separator state dict (the parity file itself) loads too, without a query net
    model2, none = load_official_uss_checkpoint(ref["folder"] / "state_dict.pt")
    assert none is None and torch.equal(model2.state_dict()["base.after_conv.bias"], own["base.after_conv.bias"])


def test_resunet_official_checkpoint_errors(ref, tmp_path):
    state = dict(ref["state_dict"])
    state["base.after_conv.weight"] = torch.zeros(4, 32, 1, 1)  # wrong shape
    del state["base.bn0.running_var"]  # missing
    state["base.extra.weight"] = torch.zeros(1)  # unexpected
    path = tmp_path / "broken.ckpt"
    torch.save(_lightning(state), path)
    with pytest.raises(CheckpointError) as info:
        load_official_uss_checkpoint(path)
    message = str(info.value)
    for key in ("base.after_conv.weight", "base.bn0.running_var", "base.extra.weight"):
        assert key in message

    torch.save({"state_dict": {"query_net.base.fc1.weight": torch.zeros(1)}}, tmp_path / "noseparator.ckpt")
    with pytest.raises(CheckpointError, match="no separator weights"):
        load_official_uss_checkpoint(tmp_path / "noseparator.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        load_official_uss_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 0.1)])
def test_fused_conv_post_ops_equal_the_plain_ops(dtype, tol, monkeypatch):
    """_conv3x3's oneDNN post-op path (LeakyReLU / residual add) computes what conv2d + the op computes."""
    from ussnb.separators import resunet as R

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 20, 16, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    w = (0.2 * torch.randn(8, 8, 3, 3, generator=g)).to(dtype).contiguous(memory_format=torch.channels_last)
    b = torch.randn(8, generator=g).to(dtype)
    res = torch.randn(1, 8, 20, 16, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        monkeypatch.setattr(R, "_FUSED_CONV", {})
        fused = R._conv3x3(x, w, b, leaky=True), R._conv3x3(x, w, None, add=res)
        assert R._FUSED_CONV.get(dtype) is True  # the fused op really ran on this CPU build
        monkeypatch.setattr(R, "_FUSED_CONV", {dtype: False})
        plain = R._conv3x3(x, w, b, leaky=True), R._conv3x3(x, w, None, add=res)
    expected = (F.leaky_relu(F.conv2d(x.float(), w.float(), b.float(), padding=1), 0.01),
                F.conv2d(x.float(), w.float(), padding=1) + res.float())
    for f, p, e in zip(fused, plain, expected):
        assert f.shape == e.shape and torch.allclose(f.float(), e, atol=tol, rtol=tol)
        assert torch.allclose(p.float(), e, atol=tol, rtol=tol)
