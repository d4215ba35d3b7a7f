"""Separator-training steps/s under different thread settings, measured side by side in one run.

    python perf/train_threads.py --run-dir runs/cpu [--steps 40] [--rounds 3]

Needs a run whose stage 02 (anchor mining) is done (``ussnb pipeline --preset cpu --run-dir runs/cpu --stages 00
01 02``). Trains the separator of that run's preset exactly as stage 04 would (the preset's values over notebook
04's parameter defaults), without validation: untimed warm-up steps, then from that state once 10 and once
10 + N steps; N / (the difference of the two times) is the rate without set-up costs. A fresh process per
measurement (thread pools are fixed when a process starts), alternating the settings round by round so that a noisy machine affects them alike:

- ``before``: what a stage-04 kernel did up to 520bc7f: ``torch.set_num_threads(2)``, torch's default inter-op
  pool, numpy's OpenBLAS with its default pool (one thread per core), no thread variables set;
- ``before+blas1``: ``before`` with numpy's BLAS pool limited to one thread (threadpoolctl), to tell which
  pool costs what;
- ``kit``: :func:`ussnb.runtime.configure_threads` with the cores available (torch intra-op = cores, inter-op 1,
  BLAS 1) — what the pipeline, ``ussnb separate`` and ``python -m ussnb.train`` now do;
- ``kit-env``: ``kit`` in a process started with the kit's thread variables (``ussnb.runtime.thread_env``) —
  exactly what a pipeline kernel gets;
- ``kit-1``: ``kit`` with one thread;
- ``kit-bf16``: ``kit`` with the forward pass under bfloat16 autocast (``--precision bf16``; weights, loss fp32);
- ``kit-prefetch``: ``kit`` with two batches assembled ahead in a background thread (``--prefetch 2``);
- ``kit-compile`` / ``kit-bf16-compile``: ``kit`` / ``kit-bf16`` with the training forward under ``torch.compile``
  (each call compiles again; the timed difference of two calls cancels that cost).

Measured 2026-12-01 on 2 cores of an AMD EPYC (AVX2), two runs of ``--rounds 3``, median steps/s:
before 2.053 / 1.951, before+blas1 2.163 / –, kit 2.325 / 2.434 (1.13× / 1.25× before), kit-env – / 2.371,
kit-1 1.378 / –. With ``before`` three threads are busy: torch's two (0.92, 0.75 of a core) and OpenBLAS's
worker (0.15); with ``kit`` only the two torch threads.

For each run it prints steps/s of the timed steps and the threads that were busy (≥ 5 % of a core, from
``/proc/<pid>/task/*/stat``), which shows who competes for the two cores.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ("before", "before+blas1", "kit", "kit-env", "kit-1", "kit-bf16", "kit-prefetch", "kit-compile",
            "kit-bf16-compile")
BLAS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "USSNB_THREADS")


def stage04_config(preset: str) -> dict:
    """TrainConfig fields as stage 04 builds them: the preset's values over the defaults (notebook 04's)."""
    from dataclasses import asdict

    from ussnb.pipeline import load_preset, section_values
    from ussnb.train import TrainConfig

    return asdict(TrainConfig.from_params(section_values(load_preset(preset), "train")))


def worker(setting: str, anchors: str, cfg: dict, warmup: int, steps: int) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import torch

    if setting.startswith("before"):
        torch.set_num_threads(2)
        if setting == "before+blas1":
            import numpy  # noqa: F401  (loads OpenBLAS, whose pool is then shrunk)
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=1, user_api="blas")
    else:
        from ussnb.runtime import configure_threads

        configure_threads(1 if setting == "kit-1" else None)  # kit-env: the variables are set already
    precision = "bf16" if setting.startswith("kit-bf16") else "fp32"
    kw = {"precision": precision, "prefetch": 2 if setting == "kit-prefetch" else 0,
          "compile": setting.endswith("-compile")}
    from ussnb.train import train_separator

    short = 10  # the timed figure is (time of short + steps) − (time of short) steps from the same state:
    warmup = max(warmup, short + steps + 1)  # set-up costs (loading anchors, resuming) cancel out
    with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as twin:
        cfg = dict(cfg, steps=warmup + short + steps + 1, checkpoint_every=warmup, val_every=10**9)
        train_separator(anchors, None, out, cfg, progress=False, stop_after=warmup, **kw)
        shutil.copytree(out, twin, dirs_exist_ok=True)
        t0 = time.perf_counter()
        train_separator(anchors, None, out, cfg, progress=False, stop_after=short, **kw)
        t_short = time.perf_counter() - t0
        before = _thread_times()
        t0 = time.perf_counter()
        train_separator(anchors, None, twin, cfg, progress=False, stop_after=short + steps, **kw)
        t_long = time.perf_counter() - t0
        after = _thread_times()
    wall = t_long - t_short
    busy = sorted((round((after[t] - before.get(t, 0)) / t_long, 2) for t in after), reverse=True)
    print(json.dumps({"setting": setting, "steps_per_second": steps / wall, "wall": wall,
                      "intra": torch.get_num_threads(), "inter": torch.get_num_interop_threads(),
                      "busy_threads": [b for b in busy if b >= 0.05]}))


def _thread_times() -> dict[str, float]:
    """CPU seconds (user + system) of every thread of this process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[task.name] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return out


def main() -> int:
    from ussnb.run import Run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/cpu", help="run whose stage 02 is done")
    parser.add_argument("--preset", default="cpu", help="preset whose stage-04 settings are trained")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=0, help="untimed steps first (at least steps + 1)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per setting (alternating)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    anchors = Run(args.run_dir).anchors_dir("train")
    if args.worker:
        worker(args.worker, str(anchors), json.loads(os.environ["TRAIN_THREADS_CFG"]), args.warmup, args.steps)
        return 0
    if not (anchors / "anchors.json").is_file():
        print(f"no anchors in {anchors}: run `ussnb pipeline --preset {args.preset} --run-dir {args.run_dir} "
              "--stages 00 01 02` first", file=sys.stderr)
        return 1
    cfg = stage04_config(args.preset)
    print(f"stage-04 config of preset {args.preset}: {json.dumps(cfg)}")
    print(f"{args.steps} timed steps after {max(args.warmup, 10 + args.steps + 1)} warm-up steps, {args.rounds} round(s), "
          f"load average before: {os.getloadavg()[0]:.2f}")
    results: dict[str, list[dict]] = {s: [] for s in args.settings}
    for r in range(args.rounds):
        for setting in args.settings:
            env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV}
            env |= {"TRAIN_THREADS_CFG": json.dumps(cfg), "PYTHONPATH": str(REPO)}
            if setting == "kit-env":
                from ussnb.runtime import resolve_threads, thread_env

                env |= thread_env(resolve_threads(None))
            proc = subprocess.run([sys.executable, __file__, "--worker", setting, "--run-dir", args.run_dir,
                                   "--steps", str(args.steps), "--warmup", str(args.warmup)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results[setting].append(res)
            print(f"round {r + 1} {setting:12s} {res['steps_per_second']:.3f} steps/s  (intra {res['intra']}, "
                  f"inter {res['inter']}, threads ≥5% of a core: {res['busy_threads']})", flush=True)
    print("\nmedian steps/s:")
    base = statistics.median(x["steps_per_second"] for x in results.get("before", [])) if "before" in results else None
    for setting, runs in results.items():
        med = statistics.median(x["steps_per_second"] for x in runs)
        ratio = f"  ({med / base:.2f}× before)" if base else ""
        print(f"  {setting:12s} {med:.3f}{ratio}   3,000 steps ≈ {3000 / med / 60:.1f} min")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
