"""MelTCN (ussnb.separators.meltcn): shapes, conditioning and gradients, the mel mask expansion, condition norm."""
from __future__ import annotations

import torch

from ussnb.separators import MelTCN
from ussnb.separators.meltcn import mask_expansion, mel_filterbank

COND = 16  # a small condition


def test_meltcn_shapes_condition_and_gradients():
    torch.manual_seed(0)
    model = MelTCN(condition_size=COND)  # default size: 128 channels, dilations up to 128
    assert model.config["dilations"][-1] == 128 and model.sample_rate == 16000
    for length in (160, 16000, 32123):
        x = torch.randn(3, 1, length)
        assert model(x, torch.rand(3, COND)).shape == x.shape
    x = torch.randn(2, 1, 16000)
    c1, c2 = torch.eye(COND)[:2], torch.eye(COND)[2:4]
    with torch.no_grad():
        assert (model(x, c1) - model(x, c2)).abs().max() > 1e-4
    model.zero_grad()
    model(x, c1).abs().mean().backward()
    for i, block in enumerate(model.blocks):
        assert block.film.weight.grad is not None and block.film.weight.grad.abs().sum() > 0, f"block {i}"


def test_meltcn_mask_expansion_identity():
    weights, centres = mel_filterbank(16000, 512, 64)
    expand = mask_expansion(weights, centres, 16000)
    assert expand.shape == (64, 257)
    assert abs(expand.sum(0) - 1).max() < 1e-6  # a mel mask of ones is the identity on every bin
    model = MelTCN(condition_size=COND, channels=8, dilations=(1,))
    with torch.no_grad():  # force mask = 1: the model returns its input
        model.output_conv.weight.zero_()
        model.output_conv.bias.fill_(30.0)
        x = torch.randn(1, 1, 12345)
        assert (model(x, torch.rand(1, COND)) - x).abs().max() < 1e-4


def test_meltcn_condition_norm_sees_direction_not_scale(tmp_path):
    from ussnb.separators import build_separator, load_separator, save_separator

    torch.manual_seed(0)
    m = build_separator("meltcn", "condition-norm", condition_size=12).eval()
    assert m.config["condition_norm"] is True
    x = torch.randn(2, 1, 16000) * 0.1
    c = torch.rand(2, 12) + 0.1
    with torch.no_grad():
        a, b = m(x, c), m(x, 3.0 * c)  # the same embedding, louder: the same query
    assert torch.allclose(a, b, atol=1e-4)
    save_separator(tmp_path / "s.pt", m)
    loaded = load_separator(tmp_path / "s.pt")
    assert loaded.config["condition_norm"] is True
    with torch.no_grad():
        assert torch.allclose(loaded(x, c), a, atol=1e-6)
    plain = build_separator("meltcn", "default", condition_size=12)
    assert plain.config["condition_norm"] is False and not any("condition_norm" in k for k in plain.state_dict())
