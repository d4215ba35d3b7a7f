"""``ussnb export`` (:mod:`ussnb.export`): TorchScript / ONNX separators (and the TorchScript query net) that
match the eager model (max |Δ| on the waveform ≤ 1e-4), with a README of the contract; the convolution STFT
of the ONNX graph against ``torch.stft`` / ``torch.istft``; the exported separator through the kit's one
inference path. Tiny models and short chunks keep it quick."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.cli.test_bad_inputs import ERROR_LINE, MIDS, SR, make_run
from ussnb.cli import main
from ussnb.errors import ConfigError
from ussnb.export import PARITY_TOLERANCE, ConvSTFT, export, load_exported, run_exported
from ussnb.inference import apply_separator
from ussnb.separators import build_separator, save_separator
from ussnb.separators.resunet import _FUSED_CONV, plain_convolutions
from ussnb.separators.stft import STFT

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

K = len(MIDS)


@pytest.mark.parametrize("n_fft, hop, samples", [(512, 160, 8000), (2048, 320, 16000), (512, 128, 1001)])
def test_conv_stft_is_torch_stft(n_fft, hop, samples):
    x = 0.1 * torch.randn(2, 1, samples, generator=torch.Generator().manual_seed(0))
    ref = STFT(n_fft, hop)
    conv = ConvSTFT(n_fft, hop, samples)
    spec = ref(x)
    real, imag = conv(x)
    scale = float(spec.abs().max())
    assert float((real - spec.real).abs().max()) < 1e-5 * scale
    assert float((imag - spec.imag).abs().max()) < 1e-5 * scale
    # inverse of a random spectrogram (not only a consistent one): the same as torch.istft
    r = torch.randn_like(real) * 0.1
    i = torch.randn_like(imag) * 0.1
    want = ref.inverse(torch.complex(r, i), samples)
    assert float((conv.inverse(r, i) - want).abs().max()) < 1e-5
    assert float((conv.inverse(real, imag) - x).abs().max()) < 1e-5  # round trip


def test_plain_convolutions_switch_restores_state():
    before = dict(_FUSED_CONV)
    with plain_convolutions():
        assert _FUSED_CONV[torch.float32] is False and _FUSED_CONV[torch.bfloat16] is False
    assert _FUSED_CONV == before


@pytest.mark.parametrize("name, preset", [("meltcn", "tiny"), ("resunet30", "tiny"), ("unet", "tiny")])
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_parity(tmp_path, monkeypatch, name, preset, fmt):
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(tmp_path / "no-meta"))
    torch.manual_seed(0)
    model = build_separator(name, preset, condition_size=K)
    ckpt = save_separator(tmp_path / "separator.pt", model, condition="soft", labels=MIDS)
    m = export(ckpt, tmp_path / "out", fmt, seconds=0.5, batch=2)
    err = m["parity_max_abs"]["separator"]
    print(f"{name} {fmt}: max |Δ| {err:.3g}")
    assert err <= PARITY_TOLERANCE
    out = tmp_path / "out"
    suffix = ".pt" if fmt == "torchscript" else ".onnx"
    assert (out / f"separator{suffix}").is_file() and (out / "classes.tsv").is_file()
    readme = (out / "README.md").read_text()
    assert f"`(2, 1, {SR // 2})`" in readme and f"{SR} Hz" in readme and "classes.tsv" in readme
    if fmt == "onnx":
        assert "no inverse STFT" in readme and "query net is not in ONNX" in readme
    # the exported file on fresh input, against the eager model (not only the export's own check)
    x = 0.1 * np.random.default_rng(1).standard_normal((2, 1, SR // 2)).astype(np.float32)
    c = np.random.default_rng(2).uniform(0, 1, (2, K)).astype(np.float32)
    with torch.inference_mode():
        eager = model.eval()(torch.from_numpy(x), torch.from_numpy(c)).numpy()
    assert np.abs(load_exported(out / f"separator{suffix}")(x, c) - eager).max() <= PARITY_TOLERANCE


def test_export_run_with_query_net_and_inference_path(tmp_path, monkeypatch, capsys):
    """A run directory: the TorchScript query net too; the exported separator runs through apply_separator
    (chunking, a short last batch padded) and gives the eager estimate; the CLI prints the parity."""
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(tmp_path / "no-meta"))
    run = make_run(tmp_path / "run")
    out = tmp_path / "ts"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out), "--seconds", "1",
                 "--batch", "3"]) == 0
    printed = capsys.readouterr().out
    assert "separator: separator.pt — max |Δ| vs eager" in printed and "query_net: query_net.pt" in printed
    m = json.loads((out / "export.json").read_text())
    assert m["parity_max_abs"]["query_net"] <= PARITY_TOLERANCE
    assert m["query_net"]["dim"] == K and (out / "class_conditions.npy").is_file()
    assert "Query net (query by example)" in (out / "README.md").read_text()
    from ussnb.separation import SeparationBundle

    bundle = SeparationBundle.load(run)
    mix = (0.1 * np.random.default_rng(3).standard_normal(int(4.3 * SR))).astype(np.float32)
    cond = bundle.class_conditions[1]
    eager = apply_separator(bundle.model, mix, cond, segment_seconds=1.0, overlap=0.25, batch_size=4)
    exported = apply_separator(run_exported(out), mix, cond, segment_seconds=1.0, overlap=0.25, batch_size=4)
    assert np.abs(exported - eager).max() <= PARITY_TOLERANCE


def test_export_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(tmp_path / "no-meta"))
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 1
    assert "no such checkpoint file or run directory" in ERROR_LINE.findall(capsys.readouterr().err)[-1]
    ckpt = save_separator(tmp_path / "s.pt", build_separator("meltcn", "tiny", condition_size=K), condition="soft",
                          labels=MIDS)
    assert main(["export", str(ckpt), "--out", str(tmp_path / "o"), "--batch", "0"]) == 1
    assert "--batch must be a whole number" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--format must be one of"):
        export(ckpt, tmp_path / "o", "tflite")
    with pytest.raises(ConfigError, match="longer than n_fft/2"):
        ConvSTFT(512, 160, 200)
