"""HTS-AT: parity with the reference vectors (embed 32), key manifests of the released sizes (embed 96 / 256),
input lengths of ``tag``, the trainable ``htsat-small``, checkpoint loading and its errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ussnb.errors import CheckpointError
from ussnb.taggers import build_tagger, get_tagger
from ussnb.taggers.base import WeightsNotFoundError
from ussnb.taggers.htsat import FROZEN_FRONTEND_KEYS, HTSAT, OFFICIAL_FILE, load_htsat, save_htsat


def _manifest_list(model: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def htsat_dir(reference_dir):
    return reference_dir / "htsat"


@pytest.fixture(scope="module")
def htsat32(htsat_dir):
    """The embed-32 model with the parity weights, the load result and the reference vectors."""
    model = HTSAT(embed_dim=32)
    state = torch.load(htsat_dir / "state_dict.pt", weights_only=True)
    result = model.load_state_dict(state, strict=False)
    return model.eval(), result, np.load(htsat_dir / "io.npz")


@pytest.fixture(scope="module")
def fresh32():
    """An embed-32 model with fresh weights (behaviour tests that need no shared data)."""
    torch.manual_seed(0)
    return HTSAT(embed_dim=32).eval()


# ---------------------------------------------------------------- parity


def test_htsat_parity_state_dict_only_frozen_frontend_missing(htsat32, htsat_dir):
    model, result, _ = htsat32
    assert sorted(result.missing_keys) == sorted(FROZEN_FRONTEND_KEYS)
    assert result.unexpected_keys == []
    manifest = json.loads((htsat_dir / "manifest.json").read_text())
    assert manifest["frozen_frontend_keys"] == list(FROZEN_FRONTEND_KEYS)
    assert _manifest_list(model) == manifest["state_dict"]  # 200 keys, official order, shapes and dtypes
    assert _trainable(model) == manifest["trainable_params"] == 4_199_255
    # the frozen tensors the model computes itself equal those of the reference front end
    state = model.state_dict()
    for key, ref in manifest["frozen_frontend_checksums_fp64"].items():
        t = state[key].double()
        assert float(t.sum()) == pytest.approx(ref["sum"], rel=1e-6, abs=1e-4), key
        assert float((t ** 2).sum()) == pytest.approx(ref["sumsq"], rel=1e-6), key
        np.testing.assert_allclose(t.flatten()[:5].numpy(), ref["first5"], atol=1e-7)
    model.check_frontend()


def test_htsat_parity_outputs(htsat32):
    model, _, z = htsat32
    wave = torch.from_numpy(z["waveform"])
    with torch.inference_mode():
        out = model(wave)
        logmel = model.logmel(wave)
    assert out["framewise_output"].shape == (2, 1024, 527)
    errors = {key: float(np.abs(out[key].numpy() - z[key]).max())
              for key in ("clipwise_output", "framewise_output", "latent_output")}
    errors["logmel"] = float(np.abs(logmel.numpy() - z["logmel"]).max())
    print("HTS-AT (embed 32) max abs errors:", errors)
    assert errors["clipwise_output"] <= 1e-4, errors
    assert errors["framewise_output"] <= 1e-4, errors
    assert errors["latent_output"] <= 1e-3, errors
    assert errors["logmel"] <= 2e-3, errors


@pytest.mark.parametrize("embed_dim, filename, trainable", [
    (96, "manifest_embed96.json", 30_241_687),
    (256, "manifest_embed256.json", 202_007_607),
])
def test_htsat_manifest_parity(htsat_dir, embed_dim, filename, trainable):
    """The released sizes: same keys (frozen front end included), order, shapes and dtypes as the reference;
    built on the meta device, so the 202 M-parameter model costs no memory."""
    manifest = json.loads((htsat_dir / filename).read_text())
    with torch.device("meta"):
        model = HTSAT(embed_dim=embed_dim)
    assert [k for k, _, _ in manifest["state_dict"][:3]] == list(FROZEN_FRONTEND_KEYS)
    assert _manifest_list(model) == manifest["state_dict"]
    assert _trainable(model) == manifest["trainable_params"] == trainable
    assert model.embedding_size == 8 * embed_dim


def test_htsat_parity_tag_at_10s(htsat32):
    """``tag`` on exactly 10 s is the reference forward pass; its 1001 frames resample the 1024 model
    frames (the first and last frames coincide)."""
    model, _, z = htsat32
    out = model.tag(z["waveform"])
    assert out.frames.shape == (2, 1001, 527) and out.embedding.shape == (2, 256)
    ref_frames = torch.from_numpy(z["framewise_output"])
    torch.testing.assert_close(out.clip, torch.from_numpy(z["clipwise_output"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.embedding, torch.from_numpy(z["latent_output"]), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.frames[:, 0], ref_frames[:, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.frames[:, -1], ref_frames[:, -1], atol=1e-4, rtol=0)
    # kit frame n sits at model frame n * 1023 / 1000: frame 500 lies between model frames 511 and 512
    lo, hi = ref_frames[:, 511], ref_frames[:, 512]
    assert (out.frames[:, 500] >= torch.minimum(lo, hi) - 1e-4).all()
    assert (out.frames[:, 500] <= torch.maximum(lo, hi) + 1e-4).all()


# ---------------------------------------------------------------- input lengths


def test_htsat_tag_short_input_uses_reference_inference_mode(fresh32):
    wave = torch.randn(2, 96000, generator=torch.Generator().manual_seed(0)) * 0.1  # 3 s → 301 frames
    out = fresh32.tag(wave)
    assert out.clip.shape == (2, 527) and out.frames.shape == (2, 301, 527) and out.embedding.shape == (2, 256)
    for t in (out.clip, out.frames, out.embedding):
        assert torch.isfinite(t).all()
    assert 0 <= out.frames.min() and out.frames.max() <= 1
    with torch.inference_mode():
        ref = fresh32(wave, infer_mode=True)  # log-mel tiled 1024 // 301 = 3 times, then stretched
    torch.testing.assert_close(out.clip, ref["clipwise_output"])
    torch.testing.assert_close(out.embedding, ref["latent_output"])
    tiny = fresh32.tag(np.zeros(500, dtype=np.float32))  # below the STFT's minimum: zero-padded, then trimmed
    assert tiny.frames.shape == (1, 2, 527) and torch.isfinite(tiny.frames).all()


def test_htsat_tag_long_input_runs_10s_chunks(fresh32):
    wave = torch.randn(1, 448000, generator=torch.Generator().manual_seed(1)) * 0.1  # 14 s → 1401 frames
    out = fresh32.tag(wave)
    assert out.clip.shape == (1, 527) and out.frames.shape == (1, 1401, 527) and out.embedding.shape == (1, 256)
    for t in (out.clip, out.frames, out.embedding):
        assert torch.isfinite(t).all()
    # chunks [0, 10 s) and [4 s, 14 s): frames before 4 s come from the first alone, after 10 s from the last
    first, last = fresh32.tag(wave[:, :320000]), fresh32.tag(wave[:, 128000:])
    torch.testing.assert_close(out.frames[:, :400], first.frames[:, :400])
    torch.testing.assert_close(out.frames[:, 1001:], last.frames[:, 601:])
    torch.testing.assert_close(out.frames[:, 400:1001], (first.frames[:, 400:] + last.frames[:, :601]) / 2)
    torch.testing.assert_close(out.clip, (first.clip + last.clip) / 2)
    torch.testing.assert_close(out.embedding, (first.embedding + last.embedding) / 2)


def test_htsat_forward_long_input_follows_reference_eval_crops():
    model = build_tagger("htsat-small", classes=4).eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 448000) * 0.1)  # 1401 frames: crops of 700 every 350 frames, averaged
        assert out["framewise_output"].shape == (1, 1024, 4) and out["latent_output"].shape == (1, 192)
        with pytest.raises(ValueError, match="tag"):
            model(torch.zeros(1, 32000 * 21))
    model.train()
    out = model(torch.randn(2, 448000) * 0.1)  # training: a random 1024-frame crop
    assert out["clipwise_output"].shape == (2, 4)


# ---------------------------------------------------------------- htsat-small


def test_htsat_small_forward_backward():
    model = build_tagger("htsat-small", classes=10)
    assert isinstance(model, HTSAT) and model.classes == 10 and model.embedding_size == 192
    assert 1_000_000 < _trainable(model) < 1_500_000
    model.train()
    wave = torch.randn(2, 320000) * 0.1
    out = model(wave)
    assert out["clipwise_output"].shape == (2, 10) and out["framewise_output"].shape == (2, 1024, 10)
    loss = F.binary_cross_entropy(out["clipwise_output"], torch.tensor([[1.0] + [0.0] * 9] * 2))
    loss.backward()
    # every parameter but ``head`` (kept for the checkpoints, unused by the token-semantic head) gets a gradient
    grads = {k: p.grad for k, p in model.named_parameters() if not k.startswith("head.")}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert model.head.weight.grad is None
    assert model.tscam_conv.weight.grad.abs().sum() > 0 and model.patch_embed.proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="classes"):
        build_tagger("htsat-small")


def test_htsat_small_fits_weak_labels():
    """Clip labels only (three tones, at fixed times, in four clips): ten AdamW steps cut the training loss
    by more than 4x, so the gradient reaches every stage through the token-semantic head."""
    torch.manual_seed(0)
    freqs, sr = (500.0, 2000.0, 6000.0), 32000
    t = torch.arange(320000) / sr
    x = torch.randn(4, 320000, generator=torch.Generator().manual_seed(0)) * 0.01
    y = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]])
    for i, k in y.nonzero().tolist():
        a = (1 + 3 * k) * sr
        x[i, a:a + 2 * sr] += 0.3 * torch.sin(2 * math.pi * freqs[k] * t[a:a + 2 * sr])
    model = build_tagger("htsat-small", classes=3).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss = F.binary_cross_entropy(model(x)["clipwise_output"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print("htsat-small training losses:", [round(v, 3) for v in losses])
    assert losses[-1] < losses[0] / 4, losses


def test_htsat_small_save_load_round_trip(tmp_path):
    model = build_tagger("htsat-small", classes=3, labels=["dog", "cat", "bell"]).eval()
    with torch.no_grad():
        model.bn0.running_mean.normal_()
    path = save_htsat(model, tmp_path / "htsat.pt", step=3)
    loaded = get_tagger("htsat-small", path=path)
    assert isinstance(loaded, HTSAT) and loaded.labels == ["dog", "cat", "bell"] and not loaded.training
    x = torch.randn(1, 64000) * 0.1
    with torch.inference_mode():
        a, b = model(x), loaded(x)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    with pytest.raises(ValueError, match="path"):
        get_tagger("htsat-small")


# ---------------------------------------------------------------- official checkpoints


def _lightning_checkpoint(model: HTSAT, path) -> None:
    """What the reference's Lightning wrapper saves: ``state_dict`` with every key under ``sed_model.``."""
    state = {"sed_model." + k: v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "global_step": 1000, "state_dict": state}, path)


def test_htsat_parity_lightning_checkpoint_via_registry(htsat32, tmp_path, monkeypatch):
    """``get_tagger("htsat")`` finds the official file name in the weights folder, strips ``sed_model.`` and
    loads strictly (here the parity weights at embed 32 stand in for the released file)."""
    model, _, z = htsat32
    _lightning_checkpoint(model, tmp_path / OFFICIAL_FILE)
    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(tmp_path))
    loaded = get_tagger("htsat", embed_dim=32)
    assert isinstance(loaded, HTSAT) and not loaded.training
    with torch.inference_mode():
        out = loaded(torch.from_numpy(z["waveform"]))
    assert float(np.abs(out["clipwise_output"].numpy() - z["clipwise_output"]).max()) <= 1e-4


def test_htsat_checkpoint_errors_name_the_key(fresh32, tmp_path):
    state = {"sed_model." + k: v for k, v in fresh32.state_dict().items()}
    renamed = dict(state)
    renamed["sed_model.tscam_conv.weightX"] = renamed.pop("sed_model.tscam_conv.weight")
    torch.save({"state_dict": renamed}, tmp_path / "renamed.ckpt")
    with pytest.raises(CheckpointError, match=r"tscam_conv\.weight"):
        load_htsat(tmp_path / "renamed.ckpt", embed_dim=32)
    with pytest.raises(CheckpointError, match=r"patch_embed\.proj\.weight"):  # an embed-32 file into embed 96
        load_htsat(_save(state, tmp_path / "small.ckpt"))
    bad = dict(state)
    bad["sed_model.logmel_extractor.melW"] = bad["sed_model.logmel_extractor.melW"] * 1.5
    with pytest.raises(CheckpointError, match="logmel_extractor.melW"):
        load_htsat(_save(bad, tmp_path / "mel.ckpt"), embed_dim=32)


def _save(state, path):
    torch.save({"state_dict": state}, path)
    return path


def test_htsat_missing_weights_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        get_tagger("htsat")
    message = str(info.value)
    assert OFFICIAL_FILE in message and str(tmp_path) in message and "USSNB_WEIGHTS_DIR" in message
    assert "drive.google.com" in message and "RetroCirce/HTS-Audio-Transformer" in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(WeightsNotFoundError, match="nowhere.ckpt"):
        load_htsat(tmp_path / "nowhere.ckpt")
