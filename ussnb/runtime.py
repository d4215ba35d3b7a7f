"""The kit's runtime set-up: how many CPU threads each library may use, decided in one place.

On a 2-core machine several thread pools compete unless told otherwise: torch's intra-op pool (OpenMP),
torch's inter-op pool, and the BLAS pool of numpy/scipy (OpenBLAS). Idle OpenMP/OpenBLAS threads spin-wait
for a while after each call, so two pools of two threads on two cores steal time from each other.
:func:`configure_threads` gives torch's intra-op pool all available cores, its inter-op pool one thread, and
BLAS one thread (numpy work in the kit is small and runs between torch calls). The environment variables it
sets are inherited by the pipeline's notebook kernels and by ``torchrun`` workers, so every process of a run
follows the same setting. ``threads`` is the ``--threads`` option of ``ussnb pipeline``/``ussnb separate``/
``python -m ussnb.train`` and the ``threads`` parameter of the presets (0 or None = the cores available).

Only the standard library is imported at module level.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV_THREADS = "USSNB_THREADS"
# environment variables read by the thread pools when a library is loaded (children inherit them)
_POOL_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def available_cores() -> int:
    """CPU cores this process may actually use: its affinity mask, capped by a cgroup CPU quota if any."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def resolve_threads(threads: Any = None) -> int:
    """``threads`` as a positive int: None/0/"auto" → ``USSNB_THREADS`` if set, else :func:`available_cores`.

    Raises :class:`ConfigError` for anything that is not a whole number ≥ 0.
    """
    if threads is None or threads == "auto" or threads == 0:
        env = os.environ.get(ENV_THREADS, "").strip()
        if env and env != "0":
            return resolve_threads(env)
        return available_cores()
    if isinstance(threads, bool):
        raise ConfigError(f"threads must be a whole number ≥ 1 (or 0 for all cores), got {threads!r}")
    try:
        n = int(str(threads).strip()) if not isinstance(threads, int) else threads
    except ValueError:
        raise ConfigError(f"threads must be a whole number ≥ 1 (or 0 for all cores), got {threads!r}") from None
    if n < 0:
        raise ConfigError(f"threads must be ≥ 1 (or 0 for all cores), got {n}")
    if n == 0:
        return available_cores()
    cap = 4 * available_cores()  # more threads than that only oversubscribe (and huge counts crash OpenMP)
    if n > cap:
        raise ConfigError(f"threads must be at most {cap} (4 × the {available_cores()} core(s) available), got {n}")
    return n


def thread_env(threads: int) -> dict[str, str]:
    """Environment for processes started by the kit (kernels, torchrun workers) with ``threads`` torch threads."""
    env = {ENV_THREADS: str(threads)}
    env.update({k: str(threads) for k in _POOL_ENV})
    env.update({k: "1" for k in _BLAS_ENV})
    return env


def configure_threads(threads: Any = None) -> int:
    """Set every thread pool of this process (and the environment its children inherit); returns the count.

    torch intra-op = ``threads``, inter-op = 1 (when still settable), BLAS = 1 (through threadpoolctl when
    numpy/scipy are already loaded, and the environment for what loads later).
    """
    n = resolve_threads(threads)
    os.environ.update(thread_env(n))
    try:
        import torch
    except ImportError:
        return n
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first inter-op parallel work; keep what is there
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="blas")
    except ImportError:
        pass
    return n


def thread_report() -> dict[str, Any]:
    """What this process uses now: torch intra-/inter-op threads, BLAS threads, the relevant variables."""
    info: dict[str, Any] = {"cores": available_cores(), "intra_op": None, "inter_op": None, "blas": "?"}
    try:
        import torch

        info["intra_op"] = torch.get_num_threads()
        info["inter_op"] = torch.get_num_interop_threads()
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        blas = [f"{p.get('internal_api')}×{p.get('num_threads')}" for p in threadpool_info() if p.get("user_api") == "blas"]
        info["blas"] = ", ".join(blas) or "not loaded"
    except ImportError:
        pass
    info["env"] = {k: os.environ[k] for k in (ENV_THREADS, *_POOL_ENV, *_BLAS_ENV) if k in os.environ}
    return info


# ============================================================================================ devices and precision
ENV_DEVICE = "USSNB_DEVICE"
ENV_PRECISION = "USSNB_PRECISION"
PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: Any = None):
    """``auto`` (default; or ``USSNB_DEVICE``) → ``cuda`` when a GPU is usable, else ``cpu``; ``cpu``, ``cuda``,
    ``cuda:N`` as given. A ``torch.device`` passes through. Asking for CUDA on a machine without it (a CPU-only
    torch build, no driver, N out of range) is a :class:`ConfigError` that says so — never a silent CPU run."""
    import torch

    if isinstance(device, torch.device):
        return device
    spec = str(device if device is not None else os.environ.get(ENV_DEVICE) or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or (spec.startswith("cuda:") and spec[5:].isdigit()):
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else "no CUDA GPU or driver is usable")
            raise ConfigError(f"device {spec!r}: {why} (torch {torch.__version__}); use --device cpu or auto")
        index = int(spec[5:]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device(spec)
    raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


def check_precision(precision: Any, device=None) -> str:
    """``fp32`` | ``bf16`` | ``fp16`` (default: ``USSNB_PRECISION`` or fp32). fp16 needs CUDA (on a CPU use bf16)."""
    value = str(precision if precision is not None else os.environ.get(ENV_PRECISION) or "fp32").strip().lower()
    if value not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if value == "fp16" and device is not None and resolve_device(device).type != "cuda":
        raise ConfigError("precision fp16 needs a CUDA device (float16 autocast); on a CPU use bf16 or fp32")
    return value


def autocast(device, precision: str):
    """The autocast context of ``precision`` on ``device`` (fp32: none). Weights stay fp32 (the master copy);
    losses and metrics are computed on ``.float()`` outputs by the callers."""
    import contextlib

    import torch

    precision = check_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(resolve_device(device).type, dtype=dtype)


def device_env(device: Any = None, precision: Any = None) -> dict[str, str]:
    """Environment that hands a device / precision to child processes (the pipeline's notebook kernels)."""
    env = {}
    if device is not None:
        env[ENV_DEVICE] = str(device)
    if precision is not None:
        env[ENV_PRECISION] = check_precision(precision)
    return env
