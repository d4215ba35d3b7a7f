"""PANNs: parity with the reference vectors, official key layout, loading errors, Tagger interface."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from ussnb.errors import AudioError, CheckpointError
from ussnb.taggers import build_tagger, get_tagger
from ussnb.taggers import base as tagger_base
from ussnb.taggers.base import WeightsNotFoundError
from ussnb.taggers.panns import Cnn6, Cnn10, Cnn14, Cnn14_DecisionLevelMax, load_panns


@pytest.fixture(scope="module")
def cnn10_ref(reference_dir):
    path = reference_dir / "panns_cnn10" / "state_dict.pt"
    return load_panns("Cnn10", path=path), path, np.load(reference_dir / "panns_cnn10" / "io.npz")


def test_cnn10_parity(cnn10_ref):
    model, _, z = cnn10_ref
    wave = torch.from_numpy(z["waveform"])
    with torch.inference_mode():
        out = model(wave)
        logmel = model.logmel(wave)
    errors = {
        "clipwise_output": float(np.abs(out["clipwise_output"].numpy() - z["clipwise_output"]).max()),
        "embedding": float(np.abs(out["embedding"].numpy() - z["embedding"]).max()),
        "logmel": float(np.abs(logmel.numpy() - z["logmel"]).max()),
    }
    print("Cnn10 max abs errors:", errors)
    assert errors["clipwise_output"] <= 1e-5, errors
    assert errors["embedding"] <= 1e-5, errors
    assert errors["logmel"] <= 2e-3, errors


def test_cnn10_parity_state_dict_loads_strictly(cnn10_ref):
    model, path, _ = cnn10_ref
    state = torch.load(path, weights_only=True)
    assert list(state) == list(model.state_dict())
    model_copy = Cnn10()
    model_copy.load_state_dict(state, strict=True)


def _manifest_list(model: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]


@pytest.mark.parametrize("cls, filename", [
    (Cnn14, "panns_cnn14_manifest.json"),
    (Cnn14_DecisionLevelMax, "panns_cnn14_decisionlevelmax_manifest.json"),
])
def test_cnn14_manifest_parity(reference_dir, cls, filename):
    manifest = json.loads((reference_dir / filename).read_text())
    model = cls()
    assert _manifest_list(model) == manifest["state_dict"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == manifest["trainable_params"], (trainable, manifest["trainable_params"])
    # the frozen front-end tensors we keep equal those of the official checkpoints
    state = model.state_dict()
    for key, ref in manifest["frozen_frontend_checksums_fp64"].items():
        t = state[key].double()
        assert float(t.sum()) == pytest.approx(ref["sum"], rel=1e-6, abs=1e-4), key
        assert float((t ** 2).sum()) == pytest.approx(ref["sum_sq"], rel=1e-6), key
        np.testing.assert_allclose(t.flatten()[:5].numpy(), ref["first5"], atol=1e-7)
    model.check_frontend()


def test_decision_level_outputs():
    model = Cnn14_DecisionLevelMax().eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 64000) * 0.1)
    assert out["framewise_output"].shape == (2, 201, 527)
    assert out["clipwise_output"].shape == (2, 527)
    assert out["embedding"].shape == (2, 2048)
    torch.testing.assert_close(out["framewise_output"].max(dim=1).values, out["clipwise_output"])


def test_cnn6_shapes_and_registry():
    model = build_tagger("panns-cnn6")
    assert isinstance(model, Cnn6)
    assert model.state_dict()["conv_block1.conv1.weight"].shape == (64, 1, 5, 5)
    out = model.tag(np.zeros(32000, dtype=np.float32))
    assert out.clip.shape == (1, 527) and out.frames.shape == (1, 101, 527) and out.embedding.shape == (1, 512)


def test_tag_interface_and_silence(cnn10_ref):
    model, _, z = cnn10_ref
    out = model.tag(z["waveform"][0])  # numpy (samples,)
    assert out.clip.shape == (1, 527) and out.frames.shape == (1, 1001, 527) and out.embedding.shape == (1, 512)
    torch.testing.assert_close(out.clip, torch.from_numpy(z["clipwise_output"]), atol=1e-5, rtol=0)
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    silent = model.tag(torch.zeros(2, 320000))
    for t in (silent.clip, silent.frames, silent.embedding):
        assert torch.isfinite(t).all()
    short = model.tag(np.zeros(1000, dtype=np.float32))  # shorter than the pooling stack: zero-padded
    assert short.frames.shape == (1, 4, 527)
    with pytest.raises(AudioError):
        model.tag(np.full(32000, np.nan, dtype=np.float32))
    with pytest.raises(AudioError):
        model.tag(np.zeros((1, 2, 32000), dtype=np.float32))


def test_class_activation_frames_match_clip_for_stationary_input(cnn10_ref):
    """The documented property of the frame output of clip-level models: on a stationary sound, the
    decision-level head applied per step sees inputs on the clip pooling's scale (max + mean = 2x)."""
    model, _, _ = cnn10_ref
    noise = torch.randn(1, 320000, generator=torch.Generator().manual_seed(0)) * 0.05
    out = model.tag(noise)
    diff = (out.frames[0, 100:900] - out.clip[0]).abs()
    assert diff.max() < 0.02, float(diff.max())


def test_wrong_key_names_the_key(cnn10_ref, tmp_path):
    _, path, _ = cnn10_ref
    state = torch.load(path, weights_only=True)
    state["conv_block1.conv1.weightX"] = state.pop("conv_block1.conv1.weight")
    bad = tmp_path / "bad.pth"
    torch.save({"model": state}, bad)
    with pytest.raises(CheckpointError, match=r"conv_block1\.conv1\.weight"):
        load_panns("Cnn10", path=bad)


def test_wrong_shape_names_the_key(cnn10_ref, tmp_path):
    _, path, _ = cnn10_ref
    state = torch.load(path, weights_only=True)
    state["fc_audioset.weight"] = state["fc_audioset.weight"][:10]
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)  # a bare state dict is accepted too
    with pytest.raises(CheckpointError, match=r"fc_audioset\.weight"):
        load_panns("Cnn10", path=bad)


def test_inconsistent_frontend_is_rejected(cnn10_ref, tmp_path):
    _, path, _ = cnn10_ref
    state = torch.load(path, weights_only=True)
    state["logmel_extractor.melW"] = state["logmel_extractor.melW"] * 1.5
    bad = tmp_path / "bad.pth"
    torch.save({"model": state}, bad)
    with pytest.raises(CheckpointError, match="logmel_extractor.melW"):
        load_panns("Cnn10", path=bad)


def test_offline_without_file_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tagger_base.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsNotFoundError) as info:
        load_panns("Cnn14")
    message = str(info.value)
    assert "Cnn14_mAP=0.431.pth" in message and str(tmp_path) in message and "zenodo.org" in message
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
    with pytest.raises(WeightsNotFoundError, match="Cnn10_mAP=0.380.pth"):
        get_tagger("panns-cnn10", download=False)


def test_download_writes_official_file_atomically(cnn10_ref, tmp_path, monkeypatch):
    _, path, _ = cnn10_ref
    buffer = io.BytesIO()
    torch.save({"model": torch.load(path, weights_only=True)}, buffer)
    urls = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(buffer.getvalue())

    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(tagger_base.urllib.request, "urlopen", fake_urlopen)
    model = load_panns("cnn10")
    assert urls == ["https://zenodo.org/record/3987831/files/Cnn10_mAP%3D0.380.pth"]
    assert [p.name for p in tmp_path.iterdir()] == ["Cnn10_mAP=0.380.pth"]
    assert not model.training


def test_training_checkpoint_with_numpy_state_loads_with_warning(cnn10_ref, tmp_path):
    _, path, _ = cnn10_ref
    checkpoint = {"iteration": 600000, "model": torch.load(path, weights_only=True),
                  "sampler": {"random_state": np.random.RandomState(0).get_state()}}
    torch.save(checkpoint, tmp_path / "train.pth")
    with pytest.warns(UserWarning, match="full unpickling"):
        model = load_panns("Cnn10", path=tmp_path / "train.pth")
    assert isinstance(model, Cnn10)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"), pytest.warns(UserWarning):
        load_panns("Cnn10", path=tmp_path / "garbage.pth")
