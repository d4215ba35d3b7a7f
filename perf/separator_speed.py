"""Separator inference speed and peak memory on CPU (batch 1, eval mode, ``torch.inference_mode``, 2 threads).

Every (model, clip length) runs in its own subprocess so that its peak RSS (``ru_maxrss``) is its own. The child
builds the model (random weights), runs one untimed warm-up forward (oneDNN kernel generation, first page faults),
then ``--runs`` timed forwards, and reports the median / min wall time, the median CPU time (user + sys; less
sensitive to other processes sharing the cores), and peak RSS — total and above the pre-forward baseline.

    python perf/separator_speed.py               # full table
    python perf/separator_speed.py --quick       # paper ResUNet30 only
    python perf/separator_speed.py --json out.json

Reference (bytedance/uss ResUNet30 with conv STFT, same machine kind, 2 threads): 5.8 s for 10 s of audio,
0.95 s for 2 s (median).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REFERENCE_SECONDS = {10.0: 5.8, 2.0: 0.95}  # bytedance/uss ResUNet30, from shared/notes/reference-facts.md

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


def _row(label: str, r: dict, reference: float | None) -> str:
    ratio = f"{reference / r['wall_median']:.2f}x" if reference else ""
    return (f"{label:<17}{r['seconds']:>5.0f}s{r['params']:>12,}{r['wall_median']:>9.3f}s{r['wall_min']:>9.3f}s"
            f"{r['cpu_median']:>8.2f}s{ratio:>8}{r['peak_rss_mb']:>8.0f}MB{r['peak_above_baseline_mb']:>6.0f}MB")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed forwards per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="only the paper ResUNet30")
    parser.add_argument("--json", type=Path, help="also write all results here")
    parser.add_argument("--thp", action="store_true",
                        help="also time the paper ResUNet30 with THP_MEM_ALLOC_ENABLE=1 (torch's transparent huge "
                             "page allocation; a process-level setting, not something the library can switch)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

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
              f"{'vs ref':>8}{'peak RSS':>10}{'+fwd':>8}")
    print(header)
    print("-" * len(header))
    results = []
    for label, name, preset, _ in models:
        for seconds in (10.0, 2.0):
            r = measure(name, preset, seconds, args.runs, args.threads)
            r["label"] = label
            results.append(r)
            ref = REFERENCE_SECONDS.get(seconds) if (name, preset) == ("resunet30", "paper") else None
            print(_row(label, r, ref), flush=True)
    if args.thp:
        for seconds in (10.0, 2.0):
            r = measure("resunet30", "paper", seconds, args.runs, args.threads, env={"THP_MEM_ALLOC_ENABLE": "1"})
            r["label"] = "ResUNet30 +THP"
            results.append(r)
            print(_row(r["label"], r, REFERENCE_SECONDS[seconds]), flush=True)
    print(f"reference bytedance/uss ResUNet30: {REFERENCE_SECONDS[10.0]} s (10 s clip), "
          f"{REFERENCE_SECONDS[2.0]} s (2 s clip); 'vs ref' = reference time / our median (higher is faster). "
          f"Small presets and MelTCN run at 16 kHz. Load average at end {os.getloadavg()[0]:.2f}.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
