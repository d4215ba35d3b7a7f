"""EfficientAT mn04: strict loading of the real weights, parity, top-1 labels, localisation, errors."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from ussnb.errors import CheckpointError
from ussnb.taggers import get_tagger
from ussnb.taggers import base as tagger_base
from ussnb.taggers.base import WeightsNotFoundError
from ussnb.taggers.efficientat import MobileNetAT, load_efficientat

WEIGHTS = "mn04_as_mAP_432.pt"


@pytest.fixture(scope="module")
def mn04(shared_dir):
    return load_efficientat("mn04_as", path=shared_dir / "weights" / WEIGHTS)


@pytest.fixture(scope="module")
def ref_io(reference_dir):
    return np.load(reference_dir / "efficientat_mn04" / "io.npz")


@pytest.fixture(scope="module")
def labels(shared_dir):
    with open(shared_dir / "data" / "audioset" / "class_labels_indices.csv", newline="") as f:
        return [row["display_name"] for row in csv.DictReader(f)]


def _esc50_clip(shared_dir, name: str) -> np.ndarray:
    import soundfile as sf
    import soxr

    x, sr = sf.read(shared_dir / "data" / "esc50" / "audio" / name, dtype="float32")
    return soxr.resample(x, sr, 32000, quality="HQ").astype(np.float32)


def test_mn04_state_dict_parity_with_manifest(mn04, reference_dir):
    manifest = json.loads((reference_dir / "efficientat_mn04" / "manifest.json").read_text())
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in mn04.state_dict().items()]
    assert ours == [list(x) for x in manifest["state_dict"]]
    assert sum(p.numel() for p in mn04.parameters()) == manifest["parameters"] == 983_599


def test_mn04_parity(mn04, ref_io):
    with torch.inference_mode():
        mel = mn04.mel(torch.from_numpy(ref_io["waveform"]))  # the 3 clips as one batch
        logits, features = mn04(mel)
    errors = {
        "mel": float(np.abs(mel.numpy() - ref_io["mel"]).max()),
        "logits": float(np.abs(logits.numpy() - ref_io["logits"]).max()),
        "probs": float(np.abs(torch.sigmoid(logits).numpy() - ref_io["probs"]).max()),
        "features": float(np.abs(features.numpy() - ref_io["features"]).max()),
    }
    print("mn04 max abs errors:", errors)
    assert errors["mel"] <= 2e-4, errors
    assert errors["logits"] <= 1e-4, errors
    assert errors["probs"] <= 1e-5, errors
    assert errors["features"] <= 5e-5, errors


def test_mn04_top1_labels(mn04, ref_io, labels):
    out = mn04.tag(ref_io["waveform"])
    top1 = [labels[i] for i in out.clip.argmax(dim=1).tolist()]
    assert top1 == ["Cat", "Helicopter", "Alarm clock"]
    assert out.embedding.shape == (3, 384) and out.frames.shape == (3, 1001, 527)
    torch.testing.assert_close(out.clip, torch.from_numpy(ref_io["probs"]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", ["window", "activation"])
def test_mn04_frames_localise_an_event(mn04, shared_dir, method):
    """A real cat recording (2 s of it) at 6-8 s inside 10 s of low noise: the Cat frame probability is high
    inside the event and low elsewhere."""
    cat = _esc50_clip(shared_dir, "4-133047-A-5.flac")
    energy = np.convolve(cat ** 2, np.ones(64000), "valid")
    start = int(energy.argmax())
    clip = (1e-3 * np.random.default_rng(0).standard_normal(320000)).astype(np.float32)
    clip[192000:256000] += cat[start:start + 64000]
    mn04.frame_method = method
    try:
        frames = mn04.tag(clip).frames[0, :, 81].numpy()  # 81 = Cat
    finally:
        mn04.frame_method = "window"
    inside, before, after = frames[600:800].mean(), frames[:500].max(), frames[900:].max()
    assert inside > 0.2 and inside > 10 * max(before, after), (inside, before, after)
    assert 550 <= frames.argmax() <= 850


def test_mn04_silence_and_short_input(mn04):
    out = mn04.tag(np.zeros(320000, dtype=np.float32))
    for t in (out.clip, out.frames, out.embedding):
        assert torch.isfinite(t).all()
    short = mn04.tag(np.zeros(3200, dtype=np.float32))  # 0.1 s: zero-padded inside, 11 frames out
    assert short.frames.shape == (1, 11, 527)


def test_mn04_wrong_key_and_shape(shared_dir, tmp_path):
    state = torch.load(shared_dir / "weights" / WEIGHTS, map_location="cpu", weights_only=True)
    renamed = dict(state)
    renamed["classifier.5.weightX"] = renamed.pop("classifier.5.weight")
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"classifier\.5\.weight"):
        load_efficientat(path=tmp_path / "renamed.pt")
    reshaped = dict(state)
    reshaped["features.4.block.2.conc_se_layers.0.fc1.weight"] = torch.zeros(16, 32)
    torch.save({"model": reshaped}, tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointError, match=r"features\.4\.block\.2\.conc_se_layers\.0\.fc1\.weight"):
        load_efficientat(path=tmp_path / "reshaped.pt")


def test_mn04_found_via_weights_dir_and_offline_error(tmp_path, monkeypatch, shared_dir):
    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(shared_dir / "weights"))
    assert isinstance(get_tagger("efficientat-mn04", frame_method="activation"), MobileNetAT)
    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tagger_base.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsNotFoundError) as info:
        load_efficientat()
    assert WEIGHTS in str(info.value) and str(tmp_path) in str(info.value)
    assert "github.com/fschmid56/EfficientAT/releases/download/v0.0.1" in str(info.value)
