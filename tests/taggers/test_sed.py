"""The small trainable SED model: shapes, size, save/load with config, errors, it learns from weak labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ussnb.checkpoint import save_checkpoint
from ussnb.errors import CheckpointError
from ussnb.taggers import build_tagger, get_tagger
from ussnb.taggers.sed import SedCnn, load_sed, save_sed


@pytest.mark.parametrize("pooling", ["max", "attention"])
def test_shapes_and_size(pooling):
    model = SedCnn(classes=10, pooling=pooling).eval()
    n_params = sum(p.numel() for p in model.parameters())
    assert 300_000 <= n_params <= 1_000_000, n_params
    with torch.inference_mode():
        out = model(torch.randn(2, 320000) * 0.1)
    assert out["framewise_output"].shape == (2, 1001, 10)
    assert out["clipwise_output"].shape == (2, 10)
    assert out["embedding"].shape == (2, model.embedding_size)
    assert 0 <= out["clipwise_output"].min() and out["clipwise_output"].max() <= 1
    if pooling == "max":  # interpolation never exceeds the step maximum
        assert (out["framewise_output"].max(dim=1).values <= out["clipwise_output"] + 1e-6).all()


def test_527_classes_size():
    assert sum(p.numel() for p in SedCnn(classes=527).parameters()) < 1_000_000


def test_tag_interface_silence_and_odd_lengths():
    model = build_tagger("sed", classes=5, sample_rate=16000, hop=160, n_fft=512, n_mels=32, fmax=8000)
    out = model.tag(np.zeros(16000, dtype=np.float32))
    assert out.frames.shape == (1, 101, 5)
    for t in (out.clip, out.frames, out.embedding):
        assert torch.isfinite(t).all()
    assert model.tag(np.random.default_rng(0).standard_normal(12345).astype(np.float32)).frames.shape == (1, 78, 5)
    assert model.tag(np.zeros(100, dtype=np.float32)).frames.shape == (1, 1, 5)  # shorter than the poolings


def test_save_load_round_trip(tmp_path):
    model = SedCnn(classes=3, pooling="attention", labels=["dog", "cat", "bell"]).eval()
    with torch.no_grad():  # non-trivial BN statistics so the comparison means something
        model.bn0.running_mean.normal_()
    path = save_sed(model, tmp_path / "sed.pt", step=7)
    loaded = get_tagger("sed", path=path)
    assert isinstance(loaded, SedCnn) and loaded.labels == ["dog", "cat", "bell"] and loaded.pooling == "attention"
    x = torch.randn(1, 32000) * 0.1
    with torch.inference_mode():
        a, b = model(x), loaded(x)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_load_errors(tmp_path):
    model = SedCnn(classes=3)
    # wrong kind
    save_checkpoint(tmp_path / "other.pt", model, kind="resunet", config=model.config)
    with pytest.raises(CheckpointError, match="resunet"):
        load_sed(tmp_path / "other.pt")
    # a state dict that does not match its config: the offending key is named
    payload_model = SedCnn(classes=3)
    payload_model.classifier = torch.nn.Linear(128, 4)
    save_checkpoint(tmp_path / "shape.pt", payload_model, kind="starter-sed", config=model.config)
    with pytest.raises(CheckpointError, match=r"classifier\.weight"):
        load_sed(tmp_path / "shape.pt")
    # a bad configuration
    save_checkpoint(tmp_path / "config.pt", model, kind="starter-sed", config={**model.config, "bogus": 1})
    with pytest.raises(CheckpointError, match="bogus"):
        load_sed(tmp_path / "config.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_sed(tmp_path / "missing.pt")


def test_learns_from_weak_labels_and_localises():
    """Class 0 = a 1 kHz tone burst, class 1 = a noise burst, at random places in 1.5 s clips with clip-level
    labels only. A few dozen steps lower the loss and the frame output peaks where the tone is."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and robust to a busy machine
    try:
        _train_and_check()
    finally:
        torch.set_num_threads(threads)


def _train_and_check():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sr, n = 16000, 24000
    t = np.arange(n) / sr

    def batch(size=8):
        x = 0.01 * rng.standard_normal((size, n))
        y = np.zeros((size, 2), dtype=np.float32)
        spans = []
        for i in range(size):
            for k in range(2):
                if rng.random() < 0.5:
                    a = int(rng.integers(0, n - 8000))
                    burst = np.sin(2 * np.pi * 1000 * t[:8000]) if k == 0 else rng.standard_normal(8000) * 0.5
                    x[i, a:a + 8000] += 0.5 * burst
                    y[i, k] = 1
                    if k == 0:
                        spans.append((i, a, a + 8000))
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y), spans

    model = SedCnn(classes=2, sample_rate=sr, n_fft=512, hop=160, n_mels=32, fmax=8000,
                   channels=(8, 16, 32, 64), hidden=32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x_val, y_val, spans = batch(16)

    def val_loss():
        model.eval()
        with torch.no_grad():
            return F.binary_cross_entropy(model(x_val)["clipwise_output"], y_val).item()

    before = val_loss()
    for _ in range(40):
        model.train()
        x, y, _ = batch()
        loss = F.binary_cross_entropy(model(x)["clipwise_output"].clamp(1e-6, 1 - 1e-6), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = val_loss()
    print("loss", before, after)
    assert after < 0.6 * before, (before, after)
    frames = model.tag(x_val).frames[..., 0]  # (clips, frames) tone probability
    inside = np.mean([frames[i, a // 160 + 5:b // 160 - 5].mean().item() for i, a, b in spans])
    mask = torch.ones_like(frames, dtype=torch.bool)
    for i, a, b in spans:
        mask[i, max(0, a // 160 - 20):b // 160 + 20] = False
    outside = frames[mask].mean().item()
    print("tone frames inside", inside, "outside", outside)
    assert inside > outside + 0.2, (inside, outside)


def test_tag_resamples_other_rates_with_a_note(caplog):
    import numpy as np
    import torch

    from ussnb.taggers.sed import SedCnn

    torch.manual_seed(0)
    model = SedCnn(classes=3, channels=(8, 16), time_pools=(2, 2), hidden=16).eval()
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1  # 1 s at 16 kHz
    with caplog.at_level("INFO"):
        out = model.tag(wave, sr=16000)
    assert "resampling tagger input 16000 Hz -> 32000 Hz" in caplog.text
    assert out.frames.shape[1] == model.num_frames(32000)
