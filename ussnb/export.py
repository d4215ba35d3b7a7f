"""``ussnb export``: a trained separator (and the query net that turns example audio into its condition) as
TorchScript or ONNX files that run without this package, with a README of the input/output contract and a
measured parity check against the eager model.

What is exported, per format:

* **torchscript** — ``separator.pt``: ``torch.jit.trace`` of the separator's own forward (``torch.stft`` →
  network → ``torch.istft``), waveform in, waveform out. ``query_net.pt``: the run's query net (tagger, or
  tagger + learned adaptor / shortcut), waveform in, condition out.
* **onnx** — ``separator.onnx``, waveform in, waveform out. ONNX has no complex tensors and no inverse STFT, and
  the exporter refuses ``torch.stft(return_complex=True)`` ("STFT does not currently support complex types"),
  so the exported graph computes the STFT and the inverse STFT as convolutions with fixed DFT kernels
  (:class:`ConvSTFT`: periodic Hann window, ``center=True``, reflect padding — ``torch.stft``'s transform;
  the overlap-add normalisation by the summed squared window is a constant of the fixed length) around the
  separator's network in real arithmetic (``model.spectral``). **Not exported to ONNX:** the query net, whose
  taggers' log-mel front ends call ``torch.stft`` with complex output too (use the TorchScript query net, or
  compute the condition elsewhere); every tagger would need the same convolution front end.

Both formats: **fixed shapes** — ``(batch, 1, samples)`` mixtures and ``(batch, C)`` conditions with the
``batch`` and ``samples`` given at export (default 8 chunks of 2 s, what ``ussnb separate`` feeds the model);
the traced graph bakes the STFT frame count, the time padding of the U-Net and the output length in. Pad a
short last batch with zeros (see :func:`run_exported`). ResUNet's oneDNN fused convolution
(``torch.ops.mkldnn._convolution_pointwise``, a CPU-only op) is switched off while tracing
(:class:`ussnb.separators.resunet.plain_convolutions`), so the graph holds plain convolutions. fp32 only.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError, ConfigError
from .io import atomic_write_text

FORMATS = ("torchscript", "onnx")
PARITY_TOLERANCE = 1e-4  # max |Δ| on the waveform between the exported and the eager separator
ONNX_OPSET = 17


class ConvSTFT(nn.Module):
    """``torch.stft`` / ``torch.istft`` (periodic Hann, ``center=True``, reflect padding, onesided) as
    convolutions with fixed kernels, for a fixed signal length ``samples`` — real arithmetic only.

    ``forward(wave (batch, channels, samples))`` → ``(real, imag)`` each ``(batch, channels, frames, bins)``;
    ``inverse(real, imag)`` → ``(batch, channels, samples)``."""

    def __init__(self, n_fft: int, hop: int, samples: int):
        super().__init__()
        if samples <= n_fft // 2:
            raise ConfigError(f"export needs chunks longer than n_fft/2 = {n_fft // 2} samples, got {samples}")
        self.n_fft, self.hop, self.samples = int(n_fft), int(hop), int(samples)
        bins = n_fft // 2 + 1
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None] / n_fft  # (bins, n_fft)
        forward = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # X = Σ x w e^{-iωn}
        self.register_buffer("forward_kernel", forward[:, None].float(), persistent=False)
        # inverse real DFT (C2R: the imaginary parts of the DC and Nyquist bins are ignored), times the window
        scale = torch.full((bins,), 2.0 / n_fft, dtype=torch.float64)
        scale[0] = 1.0 / n_fft
        if n_fft % 2 == 0:
            scale[-1] = 1.0 / n_fft
        inverse = torch.cat([torch.cos(angle) * scale[:, None], -torch.sin(angle) * scale[:, None]]) * window
        self.register_buffer("inverse_kernel", inverse[:, None].float(), persistent=False)
        self.frames = samples // hop + 1
        env = F.conv_transpose1d(torch.ones(1, 1, self.frames, dtype=torch.float64),
                                 (window ** 2)[None, None], stride=hop)[0, 0]
        pad = n_fft // 2
        self.register_buffer("envelope", env[pad:pad + samples].float(), persistent=False)

    def forward(self, wave: torch.Tensor):
        batch, channels, samples = wave.shape
        x = wave.reshape(batch * channels, 1, samples)
        x = F.pad(x, (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        spec = F.conv1d(x, self.forward_kernel, stride=self.hop)  # (batch*channels, 2*bins, frames)
        bins = self.n_fft // 2 + 1
        spec = spec.reshape(batch, channels, 2 * bins, -1).transpose(2, 3)
        return spec[..., :bins], spec[..., bins:]

    def inverse(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        batch, channels, frames, bins = real.shape
        spec = torch.cat([real, imag], dim=-1).transpose(2, 3).reshape(batch * channels, 2 * bins, frames)
        y = F.conv_transpose1d(spec, self.inverse_kernel, stride=self.hop)  # (batch*channels, 1, ...)
        pad = self.n_fft // 2
        y = y[:, 0, pad:pad + self.samples] / self.envelope
        return y.reshape(batch, channels, self.samples)


class ConvSTFTSeparator(nn.Module):
    """A separator with ``model.spectral`` (ResUNet, UNet, MelTCN) between a :class:`ConvSTFT` and its inverse:
    ``(mixture (batch, channels, samples), condition (batch, C))`` → ``(batch, channels, samples)``."""

    def __init__(self, model: nn.Module, samples: int):
        super().__init__()
        if not callable(getattr(model, "spectral", None)):
            raise ConfigError(f"{type(model).__name__} has no spectral() network to wrap for ONNX")
        self.model = model
        self.stft = ConvSTFT(int(model.n_fft), int(model.hop), samples)

    def forward(self, mixture: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(mixture)
        real, imag = self.model.spectral(real, imag, condition)
        return self.stft.inverse(real, imag)


def _raw_separator(model: nn.Module) -> nn.Module:
    from .separators.optimize import OptimizedSeparator

    return model.model if isinstance(model, OptimizedSeparator) else model


def _query_net_module(bundle) -> nn.Module | None:
    """The bundle's query net (waveform → condition), or None when it has none (one-hot models, no tagger)."""
    if bundle.kind == "onehot":
        return None
    try:
        return bundle.query_net()
    except CheckpointError:
        return None


def _save_onnx(module: nn.Module, example: tuple, path: Path, names: list[str]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(path), input_names=names[:-1], output_names=names[-1:],
                          opset_version=ONNX_OPSET, dynamo=False, do_constant_folding=True)


def load_exported(path: str | os.PathLike):
    """An exported file as a callable on NumPy arrays: ``.pt`` → ``torch.jit.load``, ``.onnx`` → an
    onnxruntime session (``pip install onnxruntime``). Returns ``fn(*arrays) → np.ndarray``."""
    path = Path(path)
    if path.suffix == ".onnx":
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ConfigError("running an ONNX export needs onnxruntime: pip install onnxruntime "
                              "(or pip install 'ussnb[all]')") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run(*arrays):
            feed = {n: np.ascontiguousarray(a, np.float32) for n, a in zip(names, arrays)}
            return session.run(None, feed)[0]

        return run
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript; it still runs
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run_ts(*arrays):
        with torch.inference_mode():
            return module(*[torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in arrays]).numpy()

    return run_ts


class ExportedSeparator(nn.Module):
    """An exported separator called like the kit's separators (``model(x (b, 1, n), c (b, C))``), so
    :func:`ussnb.inference.forward_chunks` and everything above it (``ussnb separate``'s path) can run it:
    batches shorter than the exported batch are zero-padded, chunks must have the exported length."""

    def __init__(self, path: str | os.PathLike, manifest: dict):
        super().__init__()
        self.fn = load_exported(path)
        self.sample_rate = int(manifest["sample_rate"])
        self.condition_size = int(manifest["condition_size"])
        self.batch, self.samples = int(manifest["batch"]), int(manifest["samples"])
        self.registry_name = manifest["separator"]
        self.device = torch.device("cpu")

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        if n != self.samples:
            raise ConfigError(f"the exported separator takes chunks of {self.samples} samples, got {n}")
        out = []
        for i in range(0, b, self.batch):
            xi, ci = x[i:i + self.batch].numpy(), c[i:i + self.batch].numpy()
            m = xi.shape[0]
            if m < self.batch:
                xi = np.concatenate([xi, np.zeros((self.batch - m, *xi.shape[1:]), np.float32)])
                ci = np.concatenate([ci, np.repeat(ci[-1:], self.batch - m, axis=0)])
            out.append(torch.from_numpy(np.asarray(self.fn(xi, ci))[:m]))
        return torch.cat(out)


def run_exported(folder: str | os.PathLike, fmt: str | None = None) -> ExportedSeparator:
    """The separator of an export folder as an :class:`ExportedSeparator` (``fmt``: the folder's format)."""
    folder = Path(folder)
    manifest = json.loads((folder / "export.json").read_text())
    fmt = fmt or manifest["format"]
    return ExportedSeparator(folder / manifest["files"]["separator"], manifest)


def export(source: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "torchscript", *,
           seconds: float = 2.0, batch: int = 8, query_net: bool = True, parity: bool = True) -> dict:
    """Export the separator of ``source`` (a run directory or a ``separator.pt``) — and, for TorchScript, the
    run's query net — into ``out_dir`` with ``README.md``, ``classes.tsv``, ``class_conditions.npy`` and
    ``export.json``; check parity on random input (``parity``). Returns the manifest (with ``parity``:
    max |Δ| per exported file). Raises :class:`ConfigError` when the parity error exceeds
    :data:`PARITY_TOLERANCE`."""
    from .separation import SeparationBundle
    from .separators.resunet import plain_convolutions

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not (isinstance(batch, int) and batch >= 1):
        raise ConfigError(f"--batch must be a whole number ≥ 1, got {batch!r}")
    if not (isinstance(seconds, (int, float)) and 0 < seconds <= 60):
        raise ConfigError(f"--seconds must be in (0, 60], got {seconds!r}")
    bundle = SeparationBundle.load(source, device="cpu", precision="fp32")
    model = _raw_separator(bundle.model).eval()
    sr, csize = int(model.sample_rate), int(model.condition_size)
    samples = int(round(seconds * sr))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(batch, 1, samples, generator=gen)
    c = torch.rand(batch, csize, generator=gen)
    t0 = time.perf_counter()
    files, parity_err, notes = {}, {}, []
    with torch.inference_mode():
        eager = model(x, c).numpy()
    with torch.no_grad(), plain_convolutions():
        if fmt == "torchscript":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on shapes baked in: the fixed-shape contract
                traced = torch.jit.trace(model, (x, c), check_trace=False)
                path = out / "separator.pt"
                torch.jit.save(traced, str(path))
        else:
            path = out / "separator.onnx"
            _save_onnx(ConvSTFTSeparator(model, samples).eval(), (x, c), path, ["mixture", "condition", "estimate"])
    files["separator"] = path.name
    if parity:
        parity_err["separator"] = float(np.abs(load_exported(path)(x.numpy(), c.numpy()) - eager).max())
    qnet = _query_net_module(bundle) if query_net else None
    q_info = None
    if qnet is not None and fmt == "torchscript":
        qsr = int(qnet.sample_rate)
        w = 0.1 * torch.randn(batch, int(round(seconds * qsr)), generator=gen)
        with torch.inference_mode():
            q_eager = qnet(w).float().numpy()
        with torch.no_grad():
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                q_traced = torch.jit.trace(qnet, (w,), check_trace=False)
                qpath = out / "query_net.pt"
                torch.jit.save(q_traced, str(qpath))
        files["query_net"] = qpath.name
        q_info = {"sample_rate": qsr, "samples": int(w.shape[1]), "dim": int(q_eager.shape[1])}
        if parity:
            parity_err["query_net"] = float(np.abs(load_exported(qpath)(w.numpy()) - q_eager).max())
    elif qnet is not None:
        notes.append("query net not exported to ONNX: the tagger's log-mel front end calls torch.stft with complex "
                     "output, which the ONNX exporter refuses; export --format torchscript for query_net.pt")
    elif query_net:
        notes.append(f"no query net: {'a one-hot model is queried by class only' if bundle.kind == 'onehot' else 'no tagger known for this checkpoint (pass the run directory)'}")
    rows = ["index\tmid\tname"] + [f"{i}\t{m}\t{n}" for i, (m, n) in enumerate(zip(bundle.labels, bundle.names))]
    atomic_write_text(out / "classes.tsv", "\n".join(rows) + "\n")
    files["classes"] = "classes.tsv"
    if bundle.class_conditions is not None:
        np.save(out / "class_conditions.npy", np.asarray(bundle.class_conditions, np.float32))
        files["class_conditions"] = "class_conditions.npy"
    manifest = {
        "format": fmt, "source": str(source), "separator": getattr(model, "registry_name", type(model).__name__),
        "config": getattr(model, "config", {}), "condition": bundle.kind, "condition_size": csize,
        "classes": bundle.classes, "sample_rate": sr, "batch": batch, "samples": samples, "seconds": seconds,
        "files": files, "query_net": q_info, "parity_max_abs": parity_err, "parity_tolerance": PARITY_TOLERANCE,
        "notes": notes, "torch": torch.__version__, "export_seconds": round(time.perf_counter() - t0, 2),
    }
    if fmt == "onnx":
        import onnx

        manifest["onnx"] = {"opset": ONNX_OPSET, "onnx": onnx.__version__}
    atomic_write_text(out / "export.json", json.dumps(manifest, indent=1, ensure_ascii=False))
    atomic_write_text(out / "README.md", readme(manifest))
    bad = {k: v for k, v in parity_err.items() if not v <= PARITY_TOLERANCE}
    if bad:
        raise ConfigError(f"exported {', '.join(bad)} differ from the eager model by max |Δ| "
                          f"{', '.join(f'{v:.3g}' for v in bad.values())} > {PARITY_TOLERANCE} (files kept in {out})")
    return manifest


def readme(m: dict) -> str:
    """The export folder's README: the input/output contract."""
    b, n, sr, C = m["batch"], m["samples"], m["sample_rate"], m["condition_size"]
    sep = m["files"]["separator"]
    kind_text = {
        "soft": f"tagging probabilities over the {m['classes']} classes of classes.tsv (the query net's output "
                "for example audio, or a row of class_conditions.npy: the class's average, eq. 9 of Kong et al. "
                "2023)",
        "onehot": f"a one-hot (or any non-negative mix) over the {m['classes']} classes of classes.tsv",
        "embedding": "the tagger's clip embedding of example audio (query_net), or a row of class_conditions.npy",
    }.get(m["condition"], f"the learned '{m['condition']}' condition: query_net's output for example audio, or a "
                          "row of class_conditions.npy")
    load = ("import torch\nsep = torch.jit.load('separator.pt')\nestimate = sep(mixture, condition)"
            if m["format"] == "torchscript" else
            "import onnxruntime as ort\nsep = ort.InferenceSession('separator.onnx')\n"
            "estimate = sep.run(None, {'mixture': mixture, 'condition': condition})[0]")
    lines = [
        f"# ussnb export: {m['separator']} separator ({m['format']})",
        "",
        f"Exported from `{m['source']}` with torch {m['torch']}.",
        "",
        "## Separator",
        f"- file: `{sep}`",
        f"- input `mixture`: float32 `({b}, 1, {n})` — {b} mono chunks of {m['seconds']:g} s at **{sr} Hz** "
        "(fixed shape: pad a short last batch with zeros; cut long audio into chunks and overlap-add them, "
        "as `ussnb separate` does with 25 % cross-faded overlap)",
        f"- input `condition`: float32 `({b}, {C})` — {kind_text}",
        f"- output `estimate`: float32 `({b}, 1, {n})`, the queried source, same rate",
        "- classes: `classes.tsv` (index, AudioSet MID, name) gives the order of class-probability vectors; "
        + ("`class_conditions.npy` `(classes, C)` holds one condition per class (query a class by its row)."
           if "class_conditions" in m["files"] else "no class-average conditions were available."),
        "",
        "```python",
        load,
        "```",
    ]
    if m.get("query_net"):
        q = m["query_net"]
        lines += ["", "## Query net (query by example)",
                  "- file: `query_net.pt` (TorchScript)",
                  f"- input: float32 `({b}, {q['samples']})` — {b} mono segments of {m['seconds']:g} s at "
                  f"**{q['sample_rate']} Hz** (the tagger's rate)",
                  f"- output: float32 `({b}, {q['dim']})` — conditions; average them over the non-silent segments "
                  "of your examples to get the separator's condition"]
    lines += ["", "## What is not exported, and why",
              "- Shapes are fixed at export (the trace bakes in the STFT frame count, the U-Net's time padding and "
              "the output length); re-export with `--batch` / `--seconds` for others.",
              "- fp32 only; ResUNet's oneDNN fused convolution (a CPU-only op) is replaced by plain convolutions."]
    if m["format"] == "onnx":
        lines += ["- ONNX has no complex tensors and no inverse STFT, and the exporter refuses `torch.stft` with "
                  "complex output: the graph computes STFT and iSTFT as convolutions with fixed DFT kernels "
                  "(periodic Hann, centred, reflect padding — the same transform).",
                  "- The query net is not in ONNX: the taggers' log-mel front ends call `torch.stft` with complex "
                  "output too. Use `ussnb export --format torchscript` for `query_net.pt`."]
    lines += [f"- {note}" for note in m.get("notes", []) if "ONNX" not in note]
    lines += ["", "## Parity (random input, this machine)",
              *[f"- `{k}`: max |Δ| vs the eager model = {v:.3g} (tolerance {m['parity_tolerance']:g})"
                for k, v in m["parity_max_abs"].items()], ""]
    return "\n".join(lines)


__all__ = ["FORMATS", "PARITY_TOLERANCE", "ConvSTFT", "ConvSTFTSeparator", "ExportedSeparator", "export",
           "load_exported", "run_exported"]
