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
