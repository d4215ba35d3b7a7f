"""Separator inference speed and peak memory on CPU (batch 1, eval mode, ``torch.inference_mode``, 2 threads).

Every (model, clip length) runs in its own subprocess so that its peak RSS (``ru_maxrss``) is its own. The child
builds the model (random weights), runs one untimed warm-up forward (oneDNN kernel generation, first page faults),
then ``--runs`` timed forwards, and reports the median / min wall time, the median CPU time (user + sys; less
sensitive to other processes sharing the cores), and peak RSS — total and above the pre-forward baseline.

    python perf/separator_speed.py               # full table
    python perf/separator_speed.py --quick       # paper ResUNet30 only
    python perf/separator_speed.py --json out.json

    python perf/separator_speed.py --modes   # fp32 vs bf16 vs optimize(best), side by side in one run

``--modes``: for the paper ResUNet30 and MelTCN on 10 s, each mode of :func:`ussnb.separators.optimize` in its own
subprocess (fp32, fp32 channels-last, bf16 autocast, native bf16, the mode ``optimize(model, "best")`` picks and,
with ``--compile``, that mode under ``torch.compile`` with its compile time), with the
output SDR against fp32 on the same input, the FLOPs of one forward (``torch.utils.flop_counter``) and the
fraction of this machine's fp32 matmul throughput (a 2048² matmul with the same threads, measured in the same
run; the bf16 matmul rate is printed beside it) that the forward reaches. No other code's timing is quoted: the reference implementation is not
part of this repository, so a side-by-side with it is timed outside it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


# (label, registry name, preset or None, extra kwargs)
MODELS = [
    ("ResUNet30 paper", "resunet30", "paper", {}),
    ("ResUNet30 small", "resunet30", "small", {}),
    ("ResUNet30 tiny", "resunet30", "tiny", {}),
    ("ResUNet60 small", "resunet60", "small", {}),
    ("UNet small", "unet", "small", {}),
    ("MelTCN", "meltcn", "default", {}),
]


def _child(name: str, preset: str | None, seconds: float, runs: int, threads: int) -> dict:
    import resource
    import statistics
    import time

    import torch

    torch.set_num_threads(threads)
    from ussnb.separators import build_separator

    torch.manual_seed(0)
    model = build_separator(name, preset=preset, condition_size=527).eval()
    samples = int(round(seconds * model.sample_rate))
    mixture = torch.randn(1, 1, samples) * 0.1
    condition = torch.rand(1, 527)

    def usage():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024  # seconds, MB (Linux reports KB)

    _, baseline_mb = usage()
    walls, cpus = [], []
    with torch.inference_mode():
        model(mixture, condition)  # warm-up
        for _ in range(runs):
            cpu0, _ = usage()
            t0 = time.perf_counter()
            out = model(mixture, condition)
            walls.append(time.perf_counter() - t0)
            cpus.append(usage()[0] - cpu0)
    assert out.shape == mixture.shape
    _, peak_mb = usage()
    return {
        "model": name, "preset": preset, "seconds": seconds, "samples": samples, "sample_rate": model.sample_rate,
        "params": sum(p.numel() for p in model.parameters()), "runs": runs,
        "wall_median": statistics.median(walls), "wall_min": min(walls), "cpu_median": statistics.median(cpus),
        "peak_rss_mb": peak_mb, "peak_above_baseline_mb": peak_mb - baseline_mb, "walls": walls,
    }


def measure(name: str, preset: str | None, seconds: float, runs: int = 5, threads: int = 2,
            env: dict | None = None) -> dict:
    """Run one measurement in a fresh subprocess and return its result dict."""
    cmd = [sys.executable, __file__, "--child", name, str(preset), str(seconds), str(runs), str(threads)]
    root = str(Path(__file__).resolve().parents[1])
    child_env = dict(os.environ, **(env or {}))
    child_env["PYTHONPATH"] = root + os.pathsep + child_env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed for {name}/{preset}/{seconds}s:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _row(label: str, r: dict) -> str:
    return (f"{label:<17}{r['seconds']:>5.0f}s{r['params']:>12,}{r['wall_median']:>9.3f}s{r['wall_min']:>9.3f}s"
            f"{r['cpu_median']:>8.2f}s{r['peak_rss_mb']:>8.0f}MB{r['peak_above_baseline_mb']:>6.0f}MB")


def _child_matmul(threads: int) -> dict:
    import time

    import torch

    torch.set_num_threads(threads)
    n = 2048
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        reps, t0 = 0, time.perf_counter()
        while reps < 3 or time.perf_counter() - t0 < 1.0:
            a @ b
            reps += 1
            if time.perf_counter() - t0 > 20:
                break
        out[name] = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9
    return {"gflops": out}


def _child_mode(name: str, preset: str | None, seconds: float, runs: int, threads: int, mode: str) -> dict:
    compile_ = mode.endswith("+compile")
    mode = mode.removesuffix("+compile")
    import statistics
    import time

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    from ussnb.separators import build_separator, optimize
    from ussnb.separators.optimize import output_sdr

    torch.manual_seed(0)
    model = build_separator(name, preset=preset, condition_size=527).eval()
    g = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(1, 1, int(round(seconds * model.sample_rate)), generator=g)
    c = torch.rand(1, 527, generator=g)
    with torch.inference_mode():
        ref = model(x, c)
        from ussnb.separators import resunet

        fused, resunet._FUSED_CONV = resunet._FUSED_CONV, {torch.float32: False, torch.bfloat16: False}
        with FlopCounterMode(display=False) as counter:  # the counter does not see oneDNN's fused conv ops
            model(x, c)
        resunet._FUSED_CONV = fused
        flops = counter.get_total_flops()
        t0 = time.perf_counter()
        fast = optimize(model, "best" if mode == "best" else "fp32", device="cpu") if mode in ("best", "fp32") \
            else None
        choose_seconds = time.perf_counter() - t0
        if fast is None:
            from ussnb.separators import OptimizedSeparator

            fast = OptimizedSeparator(model, mode, "cpu")
        if compile_:
            from ussnb.separators import OptimizedSeparator

            fast = OptimizedSeparator(fast.model, fast.mode, "cpu", fast.report, compile=True) if fast.mode != "bf16" \
                else OptimizedSeparator(model, "bf16", "cpu", fast.report, compile=True)
        t0 = time.perf_counter()
        y = fast(x, c)  # warm-up (with compile: the compilation)
        first_call = time.perf_counter() - t0
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            y = fast(x, c)
            walls.append(time.perf_counter() - t0)
    return {"model": name, "preset": preset, "seconds": seconds, "mode": mode, "chosen": fast.mode,
            "wall_median": statistics.median(walls), "runs": runs, "flops": flops,
            "sdr_vs_fp32_db": min(output_sdr(ref, y), 999.0), "choose_seconds": choose_seconds,
            "first_call_seconds": first_call, "compiled": compile_,
            "report": getattr(fast, "report", {})}


def _spawn(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, *args]
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({args}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def modes_table(threads: int, runs: int, bf16_runs: int, seconds: float = 10.0, compile_: bool = False) -> list[dict]:
    mm = _spawn(["--child-matmul", str(threads)])["gflops"]
    print(f"this machine, {threads} threads, 2048² matmul: fp32 {mm['fp32']:.0f} GFLOP/s, bf16 {mm['bf16']:.1f} GFLOP/s")
    print(f"{'model':<17}{'mode':<22}{'s / 10 s':>9}{'GFLOP/s':>9}{'% fp32 mm':>10}{'% own mm':>9}"
          f"{'SDR vs fp32':>12}{'1st call':>9}")
    rows = []
    modes = ["fp32", "fp32-channels", "bf16-autocast", "bf16", "best"] + (["best+compile"] if compile_ else [])
    for label, name, preset in (("ResUNet30 paper", "resunet30", "paper"), ("MelTCN", "meltcn", "default")):
        for mode in modes:
            n = bf16_runs if mode.startswith("bf16") else runs
            r = _spawn(["--child-mode", name, str(preset), str(seconds), str(n), str(threads), mode])
            achieved = r["flops"] / r["wall_median"] / 1e9
            r |= {"label": label, "gflops_achieved": achieved, "percent_of_limit": 100 * achieved / mm["fp32"],
                  "percent_of_own_precision_matmul": 100 * achieved / mm["bf16" if r["chosen"].startswith("bf16")
                                                                           else "fp32"],
                  "matmul_gflops": mm}
            shown = f"{mode} → {r['chosen']}" if mode.startswith("best") else mode
            print(f"{label:<17}{shown:<22}{r['wall_median'] * 10 / seconds:>8.2f}s{achieved:>9.1f}"
                  f"{r['percent_of_limit']:>9.0f}%{r['percent_of_own_precision_matmul']:>8.0f}%"
                  f"{r['sdr_vs_fp32_db']:>9.1f} dB{r['first_call_seconds']:>8.1f}s", flush=True)
            rows.append(r)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed forwards per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="only the paper ResUNet30")
    parser.add_argument("--json", type=Path, help="also write all results here")
    parser.add_argument("--thp", action="store_true",
                        help="also time the paper ResUNet30 with THP_MEM_ALLOC_ENABLE=1 (torch's transparent huge "
                             "page allocation; a process-level setting, not something the library can switch)")
    parser.add_argument("--modes", action="store_true", help="fp32 vs bf16 vs optimize(best), side by side")
    parser.add_argument("--bf16-runs", type=int, default=1, help="timed bf16 forwards with --modes (slow on AVX2)")
    parser.add_argument("--compile", action="store_true",
                        help="with --modes: also optimize(best, compile=True); its first call (the compilation) is "
                             "reported beside the steady time")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--child-mode", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--child-matmul", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_matmul:
        print(json.dumps(_child_matmul(int(args.child_matmul[0]))))
        return 0
    if args.child_mode:
        name, preset, seconds, runs, threads, mode = args.child_mode
        print(json.dumps(_child_mode(name, None if preset == "None" else preset, float(seconds), int(runs),
                                     int(threads), mode)))
        return 0
    if args.modes:
        rows = modes_table(args.threads, args.runs, args.bf16_runs, compile_=args.compile)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0

    if args.child:
        name, preset, seconds, runs, threads = args.child
        result = _child(name, None if preset == "None" else preset, float(seconds), int(runs), int(threads))
        print(json.dumps(result))
        return 0

    models = MODELS[:1] if args.quick else MODELS
    load = os.getloadavg()[0]
    print(f"torch threads {args.threads}, {args.runs} timed runs after 1 warm-up, batch 1; "
          f"load average at start {load:.2f} on {os.cpu_count()} CPUs")
    header = (f"{'model':<17}{'clip':>6}{'params':>12}{'wall med':>10}{'wall min':>10}{'cpu med':>9}"
              f"{'peak RSS':>10}{'+fwd':>8}")
    print(header)
    print("-" * len(header))
    results = []
    for label, name, preset, _ in models:
        for seconds in (10.0, 2.0):
            r = measure(name, preset, seconds, args.runs, args.threads)
            r["label"] = label
            results.append(r)
            print(_row(label, r), flush=True)
    if args.thp:
        for seconds in (10.0, 2.0):
            r = measure("resunet30", "paper", seconds, args.runs, args.threads, env={"THP_MEM_ALLOC_ENABLE": "1"})
            r["label"] = "ResUNet30 +THP"
            results.append(r)
            print(_row(r["label"], r), flush=True)
    print(f"Small presets and MelTCN run at 16 kHz. Load average at end {os.getloadavg()[0]:.2f}.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
