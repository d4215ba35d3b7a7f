"""Separator registry (ussnb.separators): any-length inputs, save/load, training smoke tests, the contract."""
from __future__ import annotations

import pytest
import torch

from ussnb.checkpoint import read_checkpoint, atomic_torch_save
from ussnb.errors import CheckpointError
from ussnb.separators import (
    ResUNet30, available_separators, build_separator, load_separator, save_separator,
)

COND = 16  # small condition for the CPU-size models

# the smallest configuration of every registered separator
TINY = {
    "resunet30": dict(preset="tiny", condition_size=COND),
    "resunet60": dict(preset="tiny", condition_size=COND),
    "resunet": dict(channels=(8, 8, 16), blocks_per_stage=1, n_fft=256, hop=128, condition_size=COND),
    "unet": dict(preset="tiny", condition_size=COND),
    "meltcn": dict(preset="tiny", condition_size=COND),
}


def test_registry_lists_all():
    assert set(available_separators()) == set(TINY)
    with pytest.raises(ValueError, match="unknown separator"):
        build_separator("nope")
    with pytest.raises(ValueError, match="unknown preset"):
        build_separator("resunet30", preset="huge")


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize("length", [1, 1000, 64000, 105600])
def test_any_length_returns_same_length(name, length):
    torch.manual_seed(0)
    model = build_separator(name, **TINY[name]).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 1, length), torch.rand(2, COND))
    assert out.shape == (2, 1, length) and torch.isfinite(out).all()


def test_resunet30_paper_any_length():
    model = ResUNet30().eval()  # the paper model, random weights
    with torch.inference_mode():
        # 64000 and 105600 samples are covered by the parity tests
        for length in (1, 1000, 4321):
            assert model(torch.randn(1, 1, length), torch.rand(1, 527)).shape == (1, 1, length)
    with pytest.raises(ValueError, match="condition"):
        model(torch.randn(1, 1, 100), torch.rand(1, 10))


@pytest.mark.parametrize("name", sorted(TINY))
def test_save_load_round_trip(name, tmp_path):
    torch.manual_seed(0)
    model = build_separator(name, **TINY[name])
    # non-trivial BN statistics so the round trip covers buffers too
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 1, 4000), torch.rand(2, COND))
    model.eval()
    path = save_separator(tmp_path / f"{name}.pt", model)
    payload = read_checkpoint(path)
    assert payload["kind"] == name and payload["config"] == model.config
    loaded = load_separator(path)
    assert type(loaded) is type(model) and not loaded.training
    x, c = torch.randn(1, 1, 3000), torch.rand(1, COND)
    with torch.inference_mode():
        assert torch.equal(model(x, c), loaded(x, c))


def test_load_separator_errors(tmp_path):
    model = build_separator("resunet30", preset="tiny", condition_size=COND)
    path = save_separator(tmp_path / "m.pt", model)
    payload = read_checkpoint(path)

    bad = dict(payload, state_dict=dict(payload["state_dict"]))
    bad["state_dict"]["base.after_conv.weight"] = torch.zeros(5, 8, 1, 1)
    atomic_torch_save(bad, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"base\.after_conv\.weight"):
        load_separator(tmp_path / "shape.pt")

    bad = dict(payload, config=dict(payload["config"], condition_size=32))  # config ≠ weights
    atomic_torch_save(bad, tmp_path / "config.pt")
    with pytest.raises(CheckpointError, match=r"film\.encoder_block1->conv_block1->beta1\.weight"):
        load_separator(tmp_path / "config.pt")

    atomic_torch_save(dict(payload, config=dict(payload["config"], colour="red")), tmp_path / "kw.pt")
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_separator(tmp_path / "kw.pt")

    atomic_torch_save(dict(payload, kind="wavenet"), tmp_path / "kind.pt")
    with pytest.raises(CheckpointError, match="unknown separator kind"):
        load_separator(tmp_path / "kind.pt")


@pytest.mark.parametrize("name", ["resunet30", "meltcn"])
def test_training_step_reduces_loss(name):
    """A few Adam steps on one fixed toy batch lower the L1 waveform loss (tiny presets)."""
    torch.manual_seed(0)
    model = build_separator(name, **TINY[name]).train()
    t = torch.arange(3200) / 16000
    target = torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 1800 * t)])[:, None] * 0.3
    mixture = target + 0.3 * torch.randn(2, 1, 3200)
    condition = torch.eye(COND)[:2]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(5):
        loss = (model(mixture, condition) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_every_separator_keeps_the_contract(tmp_path):
    import pytest as _pytest

    from ussnb.errors import CheckpointError
    from ussnb.separators import MelTCN, Separator, UNet, available_separators, build_separator

    for name in available_separators():
        model = build_separator(name, condition_size=3) if name == "unet" else \
            build_separator(name, "tiny", condition_size=3) if name != "resunet" else \
            build_separator(name, channels=(8, 8, 16), n_fft=512, hop=160, sample_rate=16000, condition_size=3)
        assert isinstance(model, Separator) and model.registry_name == name
        assert model.condition_size == 3 and model.sample_rate == model.config["sample_rate"]
        assert (model.n_fft, model.hop) == (model.config["n_fft"], model.config["hop"])
    melt = build_separator("meltcn", "tiny", condition_size=3)
    path = melt.save(tmp_path / "m.pt", condition="soft")
    again = MelTCN.load(path)
    assert again.config == melt.config
    assert all((a == b).all() for a, b in zip(again.state_dict().values(), melt.state_dict().values()))
    with _pytest.raises(CheckpointError, match="holds a 'meltcn' separator, not a 'unet'"):
        UNet.load(path)
