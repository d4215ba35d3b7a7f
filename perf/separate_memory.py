"""Peak memory and speed of ``ussnb separate --levels 1 2`` on a 10-minute and a 60-minute recording.

The claim tested: separation streams from disk to disk, so peak memory does not grow with the input's length
(the 60-minute peak must be ≤ 1.1 × the 10-minute peak).

1. Inputs: 44.1 kHz 16-bit WAV files of the requested lengths, written block by block from ESC-50 clips
   (``$USSNB_ESC50_DIR``): each 5 s slot holds one clip, half of them with a second clip mixed in at a random
   gain — real sounds of many classes. Without ESC-50, pink-ish noise bursts. They are at another rate than
   the separator, so ``--resample`` (the streaming soxr path) is exercised too.
2. Checkpoint: ``--checkpoint RUN_DIR_OR_CKPT`` if given, else a tiny run directory made here in seconds
   (MelTCN "tiny" separator with soft conditions + a small SED tagger, random weights, over the ESC-50 classes
   mapped to AudioSet). A random tagger gives ~0.5 to every class, so every node of every level is active in
   every segment — the worst case for compute and for the number of open output tracks.
3. Each length runs ``python -m ussnb.cli separate IN --levels 1 2 --checkpoint CK --out DIR --resample`` in its
   own subprocess; its peak RSS comes from ``os.wait4`` (the child's own ``ru_maxrss``), wall time from the clock.

    python perf/separate_memory.py                     # 10 and 60 minutes
    python perf/separate_memory.py --minutes 1 5       # quicker
    python perf/separate_memory.py --checkpoint runs/cpu --json results.json

Outputs (several GB for 60 minutes with all nodes active) are deleted afterwards unless ``--keep``.

Measured (2 shared CPU cores, 2 threads, tiny random run, 28 tracks = every node of levels 1-2 active):
peak RSS 462.9 / 476.5 MB (10 min) vs 493.1 / 486.3 MB (60 min) in two runs → ratio 1.065 / 1.021; RSS sampled
every 10 s through a whole 60-minute run stays at 458-465 MB (no growth with length). Wall time depends on
the other jobs sharing the cores: RTF 0.023 (60 min, 84 s) on a quiet machine, 0.2-0.9 under heavy load.
A single ``--query`` (with ``--residual``): 292 vs 296 MB peak, RTF 0.025.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100
SLOT = 5.0


def _esc50_rows() -> list[dict]:
    try:
        from ussnb.data.recipes.esc50 import find_esc50, read_esc50

        return read_esc50(find_esc50())
    except Exception as exc:  # no ESC-50 here: noise instead
        print(f"(ESC-50 not available: {exc}; using noise)", file=sys.stderr)
        return []


def make_input(path: Path, minutes: float, rows: list[dict], seed: int = 0) -> Path:
    """Write ``minutes`` of audio at 44.1 kHz block by block (never the whole file in memory)."""
    if path.is_file() and abs(sf.info(str(path)).duration - minutes * 60) < 1:
        return path
    rng = np.random.default_rng(seed)
    slot = int(SLOT * RATE)
    tmp = path.with_suffix(".part.wav")
    with sf.SoundFile(str(tmp), "w", samplerate=RATE, channels=1, subtype="PCM_16") as f:
        for _ in range(int(np.ceil(minutes * 60 / SLOT))):
            out = np.zeros(slot, np.float32)
            for k in range(1 + int(rng.random() < 0.5)):
                if rows:
                    x, sr = sf.read(rows[int(rng.integers(len(rows)))]["path"], dtype="float32", always_2d=True)
                    x = x.mean(axis=1)
                    if sr != RATE:
                        from ussnb.audio import resample

                        x = resample(x, sr, RATE)
                else:
                    x = rng.standard_normal(slot).astype(np.float32) * np.linspace(0, 1, slot, dtype=np.float32) ** 2
                x = x[:slot]
                peak = float(np.abs(x).max()) or 1.0
                out[:x.size] += x / peak * (0.5 if k == 0 else float(rng.uniform(0.1, 0.5)))
            f.write(np.clip(out, -1, 1))
    os.replace(tmp, path)
    return path


def make_checkpoint(folder: Path, rows: list[dict]) -> Path:
    """A tiny run directory (random weights): 01 tagger, 03 class-average conditions, 04 separator."""
    import torch

    from ussnb.ontology import load_ontology
    from ussnb.queries import save_conditions
    from ussnb.separators import build_separator, save_separator
    from ussnb.taggers.sed import SedCnn, save_sed
    from ussnb.run import Run
    from ussnb.taggers.stage import save_stage_tagger

    run = Run(folder)
    if run.separator_path.is_file():
        return folder
    mids = sorted({r["mid"] for r in rows}) if rows else [lab.mid for lab in load_ontology().labels][:40]
    torch.manual_seed(0)
    k = len(mids)
    sep = build_separator("meltcn", "tiny", condition_size=k)
    save_separator(run.separator_path, sep, condition="soft", labels=mids, tagger="starter-sed")
    tagger = SedCnn(classes=k, channels=(16, 32, 64), time_pools=(2, 2, 2), hidden=64, labels=mids).eval()
    run.stage("sed").mkdir(parents=True, exist_ok=True)
    save_sed(tagger, run.stage("sed") / "tagger.pt")
    save_stage_tagger(run.stage("sed"), "starter-sed", mids, checkpoint="tagger.pt")
    save_conditions(run.conditions_path("soft"), np.eye(k), kind="soft", labels=mids)
    return folder


def run_one(inp: Path, checkpoint: Path, out: Path, levels: list[int], threads: int) -> dict:
    cmd = [sys.executable, "-m", "ussnb.cli", "separate", str(inp), "--levels", *map(str, levels),
           "--checkpoint", str(checkpoint), "--out", str(out), "--resample", "--force", "--no-progress",
           "--threads", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the max over every child so far)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"separate failed ({code}):\n{stdout}\n{stderr}")
    summary = json.loads((out / inp.stem / "summary.json").read_text())
    audio = summary["duration_seconds"]
    tracks = sum(len(v["nodes"]) for v in summary["levels"].values())
    return {"minutes": round(audio / 60, 2), "audio_seconds": audio, "wall_seconds": round(wall, 1),
            "rtf": round(wall / audio, 4), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1), "tracks": tracks,
            "segments": summary["segments"], "inner_rtf": summary["real_time_factor"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", nargs="+", type=float, default=[10.0, 60.0], help="input lengths (minutes)")
    parser.add_argument("--levels", nargs="+", type=int, default=[1, 2], help="ontology levels (default 1 2)")
    parser.add_argument("--checkpoint", help="run directory or separator.pt (default: a tiny random one made here)")
    parser.add_argument("--workdir", default=None, help="where inputs and outputs go (default: a temp folder)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the separate command")
    parser.add_argument("--keep", action="store_true", help="keep the inputs and separated tracks")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="ussnb_sepmem_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = _esc50_rows()
    checkpoint = Path(args.checkpoint) if args.checkpoint else make_checkpoint(work / "run", rows)
    results = []
    try:
        for minutes in args.minutes:
            inp = make_input(work / f"input_{minutes:g}min.wav", minutes, rows)
            out = work / f"out_{minutes:g}min"
            print(f"separating {inp.name} ({minutes:g} min) ...", flush=True)
            res = run_one(inp, checkpoint, out, args.levels, args.threads)
            results.append(res)
            print(f"  {res}", flush=True)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"ussnb separate --levels {' '.join(map(str, args.levels))} --resample  (checkpoint: "
          f"{args.checkpoint or 'tiny random run'}; 44.1 kHz input → {'16 kHz'} model)")
    print(f"{'input':>9} {'tracks':>6} {'wall s':>8} {'RTF':>7} {'CPU s':>8} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['minutes']:>7.1f} m {r['tracks']:>6d} {r['wall_seconds']:>8.1f} {r['rtf']:>7.4f} {r['cpu_seconds']:>8.1f}"
              f" {r['peak_rss_mb']:>12.1f}")
    verdict = 0
    if len(results) >= 2:
        ratio = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        ok = ratio <= 1.1
        print(f"peak RSS ratio {results[-1]['minutes']:g} min / {results[0]['minutes']:g} min = {ratio:.3f} "
              f"({'OK' if ok else 'FAIL'}: must be ≤ 1.1)")
        verdict = 0 if ok else 1
    if args.json:
        Path(args.json).write_text(json.dumps({"levels": args.levels, "results": results}, indent=1))
    return verdict


if __name__ == "__main__":
    raise SystemExit(main())
