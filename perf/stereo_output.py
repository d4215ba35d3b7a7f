"""Output like the input: which way to give a stereo input a stereo estimate, measured.

    python perf/stereo_output.py --checkpoint RUN_OR_SEPARATOR_PT [--pairs BENCHMARK_DIR] [--per-class 2]
                                 [--rate 48000] [--json results.json]

The separator works on one channel at its own rate. Two ways to return the input's channels and rate:

- **mask** (``ussnb separate``'s default): separate the channels' mean once, resample the estimate Ŝ back to
  the input's rate, and apply the time-frequency ratio mask ``clip(|Ŝ| / |X_mono|, 0, 1)`` (STFT at the input's
  rate, :func:`ussnb.audio.mask_channels`) to every channel;
- **per-channel**: run the separator on each channel separately (each resampled to the model's rate) and
  resample each estimate back;
- and, for reference, **mono copy**: today's mono estimate, resampled back and copied to every channel, and
  the **band-limit ceiling**: the true stereo target without what lies above the model's Nyquist frequency
  (the best an estimate made at the model's rate could do; 30-60 dB here, so the band limit costs little).

Mixtures: the starter-pairs benchmark (``<USSNB_DATA>/benchmarks/starter-pairs-*``, 0 dB pairs of real starter
test recordings, 2 s at 32 kHz; ``--per-class`` pairs of each target class), resampled to ``--rate`` and made
stereo by panning the target and the interferer to different places (constant-power pan law, pan -1 = left,
+1 = right), once with a time difference as well (a spaced microphone pair: each source reaches the far
channel later). Score: SDRi of each channel against that channel of the stereo target,
``SDR(t_c, ŝ_c) − SDR(t_c, x_c)``, averaged over pairs and over both channels (and per channel). All methods
share the separator settings of ``ussnb separate`` (2 s chunks, 0.25 overlap) and the class's class-average
condition (one-hot for a ``soft`` checkpoint without averages). The first mixture is also separated through
:func:`ussnb.separation.separate_file` to check that the command's default path gives the mask row's numbers.

Measured (2 shared CPU cores, 18 s; ``--checkpoint`` a MelTCN ``soft`` separator at 16 kHz trained 3000 steps on
the starter set, validation SDRi 8.4 dB, queried with one-hot conditions; 54 pairs, 48 kHz stereo, mask STFT
2048 points)::

    python perf/stereo_output.py --checkpoint runs/cpu/04_training/separator.pt

    mean SDRi (dB) per channel against the stereo target, 54 pairs: both channels (L / R)
    layout                                         mask            per-channel              mono copy     band-limit ceiling
    opposite (-0.5 / +0.5)         7.09 ( 2.69 / 11.49)   6.46 ( 1.23 / 11.68)   4.01 (-1.82 /  9.83)  39.68 (32.03 / 47.34)
    centre / right (0 / +0.8)      3.52 (-2.52 /  9.56)   2.56 (-4.80 /  9.92)   3.54 (-4.47 / 11.54)  34.58 (26.58 / 42.59)
    same side (+0.3 / +0.7)        5.92 ( 3.08 /  8.76)   5.44 ( 1.97 /  8.92)   3.74 (-0.57 /  8.05)  36.75 (32.69 / 40.82)
    hard (-0.9 / +0.9)             1.09 (-10.95 / 13.13)  -0.94 (-14.44 / 12.57)  -5.03 (-17.81 /  7.76)  39.68 (17.60 / 61.76)
    opposite + 0.5 ms delay        6.83 ( 2.52 / 11.15)   6.41 ( 1.19 / 11.64)   1.21 (-3.88 /  6.30)  39.36 (32.03 / 46.70)
    mean over layouts                              4.89                   3.99                   1.49                  38.01

    separate_file's default output on the first mixture: 48000 Hz, shape [96000, 2], max |difference| from the mask row's estimate 0.0

The mask wins on every layout's mean (by 0.4-2.0 dB over per-channel separation, which also costs one
separator pass per channel) and is what ``ussnb separate`` does. The difference is in the channel where the
target dominates (L in every layout): per-channel separation loses 1.1-3.5 dB there, since a channel already
cleaner than the separator's estimates suffers more from the separator's own distortion than from a mask ≤ 1;
in the other channel it is ahead by 0.2-0.5 dB in four layouts and behind by 0.6 dB in the fifth. The mono copy
ties the mask only when the target is centred (3.54 vs 3.52 dB). The STFT size hardly matters (mean 4.85 /
4.89 / 4.93 dB for 1024 / 2048 / 4096 points, ``--n-fft``). Negative SDRi in the target-dominated channel
means that channel's input (about 22 dB SDR for the hard pan) is cleaner than the estimate; it is not the
band limit (see the ceiling).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

# (name, target pan, interferer pan, far-channel delay in ms)
LAYOUTS = [
    ("opposite (-0.5 / +0.5)", -0.5, 0.5, 0.0),
    ("centre / right (0 / +0.8)", 0.0, 0.8, 0.0),
    ("same side (+0.3 / +0.7)", 0.3, 0.7, 0.0),
    ("hard (-0.9 / +0.9)", -0.9, 0.9, 0.0),
    ("opposite + 0.5 ms delay", -0.5, 0.5, 0.5),
]


def pan(wave: np.ndarray, position: float, delay: int) -> np.ndarray:
    """``(n,)`` → ``(n, 2)``: constant-power gains; the channel away from the source delayed by ``delay`` samples."""
    theta = (position + 1.0) * np.pi / 4.0
    left, right = np.cos(theta) * wave, np.sin(theta) * wave
    if delay:
        far = right if position < 0 else left
        far[:] = np.concatenate([np.zeros(delay, np.float32), far[:-delay]])
    return np.stack([left, right], axis=1).astype(np.float32)


def find_pairs(folder: str | None) -> Path:
    from ussnb.data.testsets.common import benchmarks_root

    if folder:
        return Path(folder)
    found = sorted(benchmarks_root().glob("starter-pairs-*"))
    if not found:
        raise SystemExit(f"no starter-pairs benchmark under {benchmarks_root()}: pass --pairs, or prepare it (the "
                         "pipeline's evaluation stage does)")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    from ussnb.audio import mask_channels, resample, stft_size
    from ussnb.data.testsets.common import Benchmark
    from ussnb.eval.metrics import sdr
    from ussnb.inference import apply_separator
    from ussnb.runtime import configure_threads
    from ussnb.separation import SeparationBundle, resolve_query, separate_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a pipeline run directory or a separator.pt")
    ap.add_argument("--pairs", help="a starter-pairs benchmark folder (default: the first under USSNB_DATA)")
    ap.add_argument("--per-class", type=int, default=2, help="pairs per target class (default 2)")
    ap.add_argument("--rate", type=int, default=48000, help="the stereo mixtures' sample rate (default 48000)")
    ap.add_argument("--n-fft", type=int, default=None, help="the mask's STFT size (default: stft_size(rate), "
                                                             "what ussnb separate uses)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    configure_threads(args.threads)

    bundle = SeparationBundle.load(args.checkpoint)
    bench = Benchmark(find_pairs(args.pairs))
    msr, rate = bundle.sample_rate, args.rate
    n_fft = args.n_fft or stft_size(rate)
    seen: dict[str, int] = {}
    items = []
    for i, it in enumerate(bench.items):
        if it["target_mid"] in bundle.labels and seen.get(it["target_mid"], 0) < args.per_class:
            seen[it["target_mid"]] = seen.get(it["target_mid"], 0) + 1
            items.append(i)
    print(f"{len(items)} pairs ({len(seen)} classes) from {bench.folder.name}; separator {bundle.source} "
          f"({bundle.kind}, {msr} Hz); mixtures {rate} Hz stereo; mask STFT {n_fft} points", flush=True)

    def separate(mono: np.ndarray, cond: np.ndarray) -> np.ndarray:
        """one channel at the input rate → the estimate at the input rate (model-rate separation in between)"""
        y = apply_separator(bundle.model, resample(mono, rate, msr), cond, segment_seconds=2.0, overlap=0.25,
                            batch_size=8)
        back = resample(y, msr, rate)
        return np.pad(back, (0, max(0, mono.shape[0] - back.shape[0])))[:mono.shape[0]]

    def _band_limited(x: np.ndarray) -> np.ndarray:
        back = resample(resample(x, rate, msr), msr, rate)
        return np.pad(back, (0, max(0, x.shape[0] - back.shape[0])))[:x.shape[0]]

    methods = ("mask", "per-channel", "mono copy", "band-limit ceiling")
    results: dict[str, dict[str, list]] = {}
    t0 = time.perf_counter()
    check = None
    for name, tpan, ipan, delay_ms in LAYOUTS:
        delay = int(round(delay_ms * 1e-3 * rate))
        scores = {m: [] for m in methods}
        for i in items:
            it = bench.items[i]
            t = resample(bench["target"][i], bench.sample_rate, rate)
            n = resample(bench["interferer"][i], bench.sample_rate, rate)
            target, mix = pan(t, tpan, delay), pan(t, tpan, delay) + pan(n, ipan, delay)
            cond = resolve_query(it["target_mid"], bundle).vector
            mono_est = separate(mix.mean(axis=1), cond)
            est = {"mask": mask_channels(mix, mono_est, n_fft),
                   "per-channel": np.stack([separate(mix[:, c], cond) for c in range(2)], axis=1),
                   "mono copy": np.stack([mono_est, mono_est], axis=1),
                   # not a method: the true target with everything above the model's Nyquist frequency removed,
                   # the best any estimate made at the model's rate can do
                   "band-limit ceiling": np.stack([_band_limited(target[:, c]) for c in range(2)], axis=1)}
            base = sdr(target.T, mix.T)
            for m in methods:
                scores[m].append(sdr(target.T, est[m].T) - base)  # (2,) per channel
            if check is None and n_fft == stft_size(rate):  # the command's own path on the same mixture
                with tempfile.TemporaryDirectory() as tmp:
                    sf.write(Path(tmp) / "mix.wav", mix, rate, subtype="FLOAT")
                    separate_file(Path(tmp) / "mix.wav", Path(tmp) / "out.wav", it["target_mid"], bundle,
                                  resample=True, progress=False)
                    out, out_sr = sf.read(Path(tmp) / "out.wav", dtype="float32", always_2d=True)
                same = out.shape == est["mask"].shape
                check = {"rate": out_sr, "shape": list(out.shape),
                         "max_abs_diff_vs_mask_row": float(np.abs(out - est["mask"]).max()) if same else None}
        results[name] = {m: np.asarray(v).tolist() for m, v in scores.items()}
        print(f"  {name}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    print(f"\nmean SDRi (dB) per channel against the stereo target, {len(items)} pairs: both channels (L / R)")
    print(f"{'layout':28s} " + " ".join(f"{m:>22s}" for m in methods))
    means = {}
    for name, per in results.items():
        cells = []
        for m in methods:
            a = np.asarray(per[m])
            means.setdefault(m, []).append(a.mean())
            cells.append(f"{a.mean():6.2f} ({a[:, 0].mean():5.2f} / {a[:, 1].mean():5.2f})")
        print(f"{name:28s} " + " ".join(f"{c:>22s}" for c in cells))
    print(f"{'mean over layouts':28s} " + " ".join(f"{np.mean(means[m]):22.2f}" for m in methods))
    if check:
        print(f"\nseparate_file's default output on the first mixture: {check['rate']} Hz, shape {check['shape']}, "
              f"max |difference| from the mask row's estimate {check['max_abs_diff_vs_mask_row']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"pairs": len(items), "rate": rate, "results": results,
                                               "check": check}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
