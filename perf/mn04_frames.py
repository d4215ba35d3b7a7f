"""Frame-level probabilities of the pretrained mn04 tagger: cost vs anchor-mining precision.

    python perf/mn04_frames.py [--dataset esc50] [--split test] [--clips 160] [--threads 2]

Runs the run-tagger of a ``tagger: efficientat-mn04`` pipeline (mn04 restricted to the dataset's classes) over
``--clips`` clips of a prepared dataset with each frame method, side by side in one process, and prints per
method the seconds per 10 s clip and the SED mining precision at τ = 1 s and 2 s against the dataset's true
event times (plus the random-anchor baseline on the same clips). Methods:

* ``window@H``: 1 s windows of the clip's log-mel every H s, run as one batch, probabilities interpolated;
* ``activation``: the classifier head on every time column of the last feature map (one pass).

Needs ``USSNB_WEIGHTS_DIR`` (``mn04_as_mAP_432.pt``) and the dataset prepared (``ussnb data prepare esc50``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> int:
    from ussnb import anchors as A
    from ussnb import data
    from ussnb.runtime import configure_threads
    from ussnb.taggers.stage import build_run_tagger
    from ussnb.sed_training import ClipCache

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="esc50")
    p.add_argument("--split", default="test")
    p.add_argument("--clips", type=int, default=160)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    configure_threads(args.threads)
    ds = data.load(args.dataset)
    clips = ds.clips(args.split)[: args.clips]
    cache = ClipCache(ds, args.split)
    waves = [cache(i) for i in range(len(clips))]
    methods = [("window", 0.1), ("window", 0.25), ("window", 0.5), ("activation", None)]
    print(f"{ds.name}/{args.split}: {len(clips)} clips, {args.threads} threads")
    sub = _Subset(ds, args.split, len(clips))
    for method, hop in methods:
        kw = {"frame_method": method} | ({"window_hop_seconds": hop} if hop else {})
        tagger = build_run_tagger("efficientat-mn04", ds.labels)
        for k, v in kw.items():
            setattr(tagger.base, k, v)
        tagger.tag(waves[0][None])  # warm-up
        start = time.perf_counter()
        frames = {}
        for lo in range(0, len(clips), args.batch):
            out = tagger.tag(np.stack(waves[lo:lo + args.batch])).frames.numpy()
            for j, f in enumerate(out):
                frames[clips[lo + j].clip_id] = f
        seconds = (time.perf_counter() - start) / len(clips)
        prec = A.mining_precision(sub, args.split, frames, strategies=("sed", "in-clip-random"), durations=(1.0, 2.0))
        name = f"{method}@{hop:g}s" if hop else method
        print(f"{name:14s} {seconds:6.3f} s/clip   sed precision τ=1 s {prec['sed']['1.0']:.3f}  τ=2 s "
              f"{prec['sed']['2.0']:.3f}   (random τ=2 s {prec['in-clip-random']['2.0']:.3f})")
    with torch.inference_mode():
        t = build_run_tagger("efficientat-mn04", ds.labels)
        start = time.perf_counter()
        for lo in range(0, len(clips), args.batch):
            t.tag(np.stack(waves[lo:lo + args.batch]), frames=False)
        print(f"{'clip only':14s} {(time.perf_counter() - start) / len(clips):6.3f} s/clip   (no frame output)")
    return 0


class _Subset:
    """The first ``n`` clips of a split of a dataset, with its truth (for mining_precision)."""

    def __init__(self, ds, split, n):
        self._ds, self._n, self._split = ds, n, split
        self.sample_rate, self.clip_seconds, self.label_index = ds.sample_rate, ds.clip_seconds, ds.label_index

    def clips(self, split):
        return self._ds.clips(split)[: self._n]

    def true_events(self, split):
        return self._ds.true_events(split)


if __name__ == "__main__":
    raise SystemExit(main())
