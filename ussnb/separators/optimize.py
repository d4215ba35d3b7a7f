"""The fastest way to run a trained separator on this machine, as one call: :func:`optimize`.

``fast = optimize(model, precision="fp32" | "bf16" | "fp16" | "best", device="auto")`` returns an
:class:`OptimizedSeparator`: a module called exactly like the model (``fast(mixture, condition)``, same shapes,
float32 output) that runs in eval mode on ``device`` under the autocast of its precision, with the weights
kept fp32 (the master copy). Candidate modes:

``fp32``           the model as it is (eager);
``fp32-channels``  fp32 with channels-last weights (oneDNN's preferred 2-D conv layout on some CPUs);
``bf16``           bfloat16: a model with a native low-precision body (ResUNet, :meth:`ResUNet.low_precision`:
                   convs/FiLM/activations in bf16, STFT, BatchNorm statistics and mask in fp32) runs a bf16
                   copy of itself; any other model runs under autocast bfloat16. Fast where the CPU has
                   AVX-512-BF16 / AMX or on a GPU; emulated and *slower* on an AVX2-only CPU — measured, not
                   assumed;
``bf16-autocast``  autocast bfloat16 even for a model with a native body (for comparison; never chosen by "best");
``fp16``           the same as ``bf16`` in float16, CUDA only.

``"best"`` times every candidate available on the device on a short example (one warm-up, then the median
of ``repeats`` forwards) and keeps the fastest whose output stays within ``min_sdr_db`` (default 30 dB) of
fp32's; the choice and the timings are in ``fast.report``. Measured (``perf/separator_speed.py --modes``): on a
2-core AVX2 machine fp32 eager is the fastest mode for ResUNet30 and MelTCN (bf16 is emulated, ~10× slower);
on a 2-core AMX machine the native bf16 ResUNet30 is the fastest (~2.5× fp32, ~45 dB vs fp32).

``compile=True`` also wraps the model in ``torch.compile`` (inductor; needs a C++ compiler, works offline). Its
first call on each new input shape compiles (tens of seconds on 2 cores, reported by the speed script), so it
pays off only for long inputs cut into many equal chunks.
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..runtime import autocast, check_precision, resolve_device

MODES = ("fp32", "fp32-channels", "bf16", "bf16-autocast", "fp16")


def output_sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """SDR (dB) of ``estimate`` against ``reference`` (how far a faster mode moves the output)."""
    ref = reference.double()
    err = (ref - estimate.double()).pow(2).sum()
    return float("inf") if float(err) == 0.0 else float(10 * torch.log10(ref.pow(2).sum() / err))


class OptimizedSeparator(nn.Module):
    """A separator run in one mode on one device; called like the separator it wraps."""

    def __init__(self, model: nn.Module, mode: str = "fp32", device: Any = None, report: dict | None = None,
                 compile: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"unknown separator mode {mode!r}; modes: {', '.join(MODES)}")
        self.device = resolve_device(device)
        if mode == "fp16":
            check_precision("fp16", self.device)
        self.mode = mode
        model = model.to(self.device).eval()
        if mode == "fp32-channels":
            model = model.to(memory_format=torch.channels_last)
        self.precision = "fp32" if mode.startswith("fp32") else mode.split("-")[0]
        # bf16/fp16: a model with a native low-precision body (ResUNet.low_precision) runs it without autocast;
        # any other model runs under autocast with fp32 weights
        self.native = (self.precision != "fp32" and mode != "bf16-autocast"
                       and callable(getattr(model, "low_precision", None)))
        if self.native:
            model = model.low_precision(torch.bfloat16 if self.precision == "bf16" else torch.float16)
        self.model = model
        # torch.compile's wrapper is kept out of the module tree (its state dict would repeat the model's)
        object.__setattr__(self, "_call", torch.compile(model) if compile else model)
        self.compiled = bool(compile)
        self.report = dict(report or {}) | {"mode": mode, "device": str(self.device), "compiled": self.compiled,
                                            "low_precision": "native" if self.native else
                                            ("autocast" if self.precision != "fp32" else None)}

    # the attributes callers read from a separator
    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def condition_size(self) -> int:
        return int(self.model.condition_size)

    @property
    def registry_name(self) -> str:
        return getattr(self.model, "registry_name", type(self.model).__name__)

    @property
    def config(self) -> dict:
        return self.model.config

    @property
    def n_fft(self) -> int:
        return int(self.model.n_fft)

    @property
    def hop(self) -> int:
        return int(self.model.hop)

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("an OptimizedSeparator is for inference; train the model it wraps")
        return super().train(False)

    def forward(self, mixture: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        mixture = mixture.to(self.device, torch.float32)
        condition = condition.to(self.device, torch.float32)
        with autocast(self.device, "fp32" if self.native else self.precision):
            out = self._call(mixture, condition)
        return out.float()

    def extra_repr(self) -> str:
        return f"mode={self.mode}, device={self.device}" + (", compiled" if self.compiled else "")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: kernel selection, first allocations
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def candidate_modes(device) -> list[str]:
    device = resolve_device(device)
    return ["fp32", "fp32-channels", "bf16"] + (["fp16"] if device.type == "cuda" else [])


@torch.inference_mode()
def optimize(model: nn.Module, precision: str | None = "fp32", *, device: Any = None, example_seconds: float = 1.0,
             repeats: int = 2, min_sdr_db: float = 30.0, modes: list[str] | None = None,
             compile: bool = False) -> OptimizedSeparator:
    """``model`` (a separator; an :class:`OptimizedSeparator` is unwrapped first) → a module called like it,
    in ``precision`` (fp32 | bf16 | fp16) or, with ``"best"``, in the fastest mode measured on this machine
    that stays within ``min_sdr_db`` of fp32 (None: ``USSNB_PRECISION`` or fp32). ``device``: auto | cpu | cuda[:N] (default ``USSNB_DEVICE`` or
    auto). The model is moved to the device (not copied, except for the channels-last and native bf16/fp16
    candidates). ``compile``: wrap the chosen mode in ``torch.compile`` (the candidates are timed eager)."""
    if isinstance(model, OptimizedSeparator):
        model = model.model
    device = resolve_device(device)
    if precision != "best":
        return OptimizedSeparator(model, check_precision(precision, device), device, compile=compile)
    model = model.to(device).eval()
    n = max(int(getattr(model, "n_fft", 1024)) * 2, int(round(example_seconds * int(model.sample_rate))))
    gen = torch.Generator().manual_seed(0)
    x = (0.1 * torch.randn(1, int(getattr(model, "audio_channels", 1)), n, generator=gen)).to(device)
    c = torch.rand(1, int(model.condition_size), generator=gen).to(device)
    reference = OptimizedSeparator(model, "fp32", device)(x, c)
    timings: dict[str, dict] = {}
    best, best_time = "fp32", float("inf")
    for mode in modes or candidate_modes(device):
        candidate = OptimizedSeparator(copy.deepcopy(model) if mode == "fp32-channels" else model, mode, device)
        seconds = _time(lambda: candidate(x, c), repeats)
        fidelity = output_sdr(reference, candidate(x, c))
        ok = fidelity >= min_sdr_db
        timings[mode] = {"seconds": round(seconds, 4), "sdr_vs_fp32_db": round(min(fidelity, 999.0), 1),
                         "accepted": ok}
        if ok and seconds < best_time:
            best, best_time = mode, seconds
    report = {"example_seconds": round(n / int(model.sample_rate), 3), "candidates": timings,
              "min_sdr_db": min_sdr_db}
    chosen_model = copy.deepcopy(model) if best == "fp32-channels" else model
    return OptimizedSeparator(chosen_model, best, device, report, compile=compile)
