"""Anchor mining with stage 01's stored p_SED (SedFrames) vs tagging the clips itself, side by side in one process.

    python perf/mining_frames.py --run runs/NAME [--split train] [--repeats 2] [--threads 1]

The run must have stages 00-01 done (01 writes sed_frames/<split>.npz). Each repeat mines the split twice into fresh
temporary folders — once tagging the clips, once reading the stored frames — alternating the order, and prints the
seconds of each and their ratio (the same anchors either way; tests/test_anchor_cache.py checks that)."""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run directory with stages 00-01 done")
    ap.add_argument("--split", default="train")
    ap.add_argument("--seconds", type=float, default=2.0, help="anchor length τ")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from ussnb import anchors as A
    from ussnb.run import Run

    torch.set_num_threads(args.threads)
    run = Run(args.run)
    ds, tagger = run.dataset(), run.tagger()
    name = getattr(tagger, "name", type(tagger).__name__)
    stored = A.SedFrames.load(run.sed_frames_path(args.split), ds, args.split, name)
    if stored is None:
        raise SystemExit(f"no stored frames for {args.split}: {A.SedFrames.why_not} (run stage 01 of {args.run})")
    times: dict[str, list[float]] = {"tagging the clips": [], "stored p_SED": []}
    starts = {}
    for r in range(args.repeats):
        order = list(times) if r % 2 == 0 else list(reversed(times))
        for kind in order:
            tmp = Path(tempfile.mkdtemp(prefix="mining-"))
            t0 = time.perf_counter()
            a = A.mine_anchor_set(ds, args.split, tmp, duration=args.seconds, tagger=tagger, progress=False,
                                  frames_in=stored if kind == "stored p_SED" else None)
            times[kind].append(time.perf_counter() - t0)
            starts[kind] = a.start.copy()
            shutil.rmtree(tmp)
    n = len(ds.clips(args.split))
    print(f"{args.run} {args.split}: {n} clips, τ = {args.seconds:g} s, {args.threads} thread(s), tagger {name}")
    for kind, ts in times.items():
        print(f"  {kind:18s} " + "  ".join(f"{t:6.1f} s" for t in ts) + f"   median {np.median(ts):.1f} s")
    ratio = np.median(times["tagging the clips"]) / np.median(times["stored p_SED"])
    same = float(np.mean(starts["tagging the clips"] == starts["stored p_SED"]))
    print(f"  stored frames: {ratio:.2f}x faster; anchors identical: {same:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
