"""Real-time factors of ``ussnb separate``'s path, side by side in one run: fast separator (MelTCN) and
ResUNet30, query and hierarchy modes, 1 and 2 threads, eager vs exported (TorchScript, ONNX).

    nice -n 5 python perf/separate_rtf.py --run RUN_DIR [--minutes 10] [--resunet-query-seconds 60]
                                          [--resunet-hierarchy-seconds 20] [--json out.json]

RTF = wall seconds / audio seconds of :func:`ussnb.separation.separate_file` (query: one class-probability
condition, 2 s chunks, 0.25 overlap, batch 8, output at the input's rate) and
:func:`ussnb.separation.separate_hierarchy` (``--levels 1 2``, the run's tagger, θ 0.2) — exactly what the command
runs, file in, files out, including reading, resampling and writing. Lower is faster; 0.1 = ten times real time.

Input: the first ``--minutes`` of the run's starter test clips (real recordings, concatenated, 32 kHz mono WAV).
Speed does not depend on what the audio holds in query mode (every chunk costs one forward pass); in hierarchy
mode it does, through how many ontology nodes are active per segment (each active label group is one forward
pass per segment), which is why real clips and the run's trained tagger are used. The separators' weights are
random (speed does not depend on them): MelTCN ``default`` (the ``cpu`` preset's) and ResUNet30 ``paper``, both
with soft conditions over the run's classes, fp32. ResUNet30 costs ~0.4 s per second of audio per pass on 2
cores, so it is measured on shorter inputs (``--resunet-*-seconds``, the first seconds of the same input).
Exported: ``ussnb export`` of the same weights (TorchScript trace of the model's forward; ONNX with the STFT
as convolutions, run by onnxruntime with as many threads as torch), fixed at 8 chunks of the mode's chunk
length (2 s; hierarchy 2.5 s = the 2 s tagging segment + 0.25 s margins), wrapped by
:class:`ussnb.export.ExportedSeparator` so the same ``separate_file`` / ``separate_hierarchy`` path drives them.
Each configuration runs once after a 5 s warm-up call (first-call costs: kernel selection, allocations,
onnxruntime's session); the machine is shared, so compare within one run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def make_input(run, seconds: float, path: Path, sr: int = 32000) -> float:
    from ussnb.audio import load_audio

    root = Path(run.dataset_root())
    info = root / "info.json"
    members = [Path(m["path"]) for m in json.loads(info.read_text()).get("members", [])] if info.is_file() else []
    files = [f for r in (members or [root]) for f in sorted((r / "test").glob("*.flac")) + sorted((r / "test").glob("*.wav"))]
    need = int(round(seconds * sr))
    parts, have = [], 0
    for f in files:
        if have >= need:
            break
        w = load_audio(f, sr)
        parts.append(w)
        have += w.shape[0]
    if have < need:
        raise SystemExit(f"only {have / sr:.0f} s of test clips in {run.dataset_root()}, {seconds:.0f} s asked")
    wave = np.concatenate(parts)[:need].astype(np.float32)
    sf.write(path, wave, sr, subtype="FLOAT")
    return need / sr


def cut(src: Path, seconds: float, dst: Path) -> Path:
    wave, sr = sf.read(src, dtype="float32")
    sf.write(dst, wave[:int(round(seconds * sr))], sr, subtype="FLOAT")
    return dst


def main(argv: list[str] | None = None) -> int:
    from ussnb.export import export, run_exported
    from ussnb.run import Run
    from ussnb.runtime import configure_threads
    from ussnb.separation import SeparationBundle, separate_file, separate_hierarchy
    from ussnb.separators import build_separator, optimize, save_separator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a pipeline run directory (its dataset's test clips and tagger)")
    ap.add_argument("--minutes", type=float, default=10.0, help="input length for MelTCN (default 10)")
    ap.add_argument("--resunet-query-seconds", type=float, default=60.0)
    ap.add_argument("--resunet-hierarchy-seconds", type=float, default=20.0)
    ap.add_argument("--models", nargs="+", default=["meltcn", "resunet30"])
    ap.add_argument("--modes", nargs="+", default=["query", "hierarchy"])
    ap.add_argument("--runtimes", nargs="+", default=["eager", "torchscript", "onnx"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)

    run = Run(args.run)
    tagger = run.tagger()
    labels = json.loads((run.stage("sed") / "tagger.json").read_text())["labels"]  # the tagger's class order
    K = len(labels)
    tmp = Path(tempfile.mkdtemp(prefix="ussnb-rtf-"))
    long_input = tmp / "input.wav"
    total = make_input(run, args.minutes * 60, long_input)
    presets = {"meltcn": ("meltcn", "default"), "resunet30": ("resunet30", "paper")}
    lengths = {("meltcn", "query"): total, ("meltcn", "hierarchy"): total,
               ("resunet30", "query"): min(total, args.resunet_query_seconds),
               ("resunet30", "hierarchy"): min(total, args.resunet_hierarchy_seconds)}
    inputs = {}
    for key, secs in lengths.items():
        inputs[key] = long_input if secs == total else cut(long_input, secs, tmp / f"input-{secs:g}s.wav")
    warm = cut(long_input, 5.0, tmp / "warm-up.wav")
    condition = np.zeros(K, np.float32)
    condition[0] = 1.0
    print(f"input: {total / 60:.1f} min of {run.dataset_root()}/test clips at 32 kHz; {K} classes; torch "
          f"{torch.__version__}; threads {args.threads}", flush=True)

    results = []
    for name in args.models:
        torch.manual_seed(0)
        model = build_separator(*presets[name], condition_size=K).eval()
        ckpt = save_separator(tmp / f"{name}.pt", model, condition="soft", labels=labels)
        base = SeparationBundle(model=optimize(model, "fp32", device="cpu"), kind="soft", labels=labels,
                                names=labels, source=str(ckpt))
        base._tagger = tagger
        exported = {}
        for rt in args.runtimes:
            if rt == "eager":
                continue
            for mode, secs in (("query", 2.0), ("hierarchy", 2.5)):
                if mode in args.modes:
                    t0 = time.perf_counter()
                    m = export(ckpt, tmp / f"{name}-{rt}-{mode}", rt, seconds=secs, batch=8, query_net=False)
                    exported[rt, mode] = tmp / f"{name}-{rt}-{mode}"
                    print(f"exported {name} {rt} ({secs:g} s chunks) in {time.perf_counter() - t0:.0f} s, max |Δ| "
                          f"{m['parity_max_abs']['separator']:.2g}", flush=True)
        for mode in args.modes:
            src = inputs[name, mode]
            for threads in args.threads:
                configure_threads(threads)
                for rt in args.runtimes:
                    if rt == "eager":
                        bundle = base
                    else:
                        bundle = dataclasses.replace(base, model=run_exported(exported[rt, mode]))
                        bundle._tagger = tagger
                    out = tmp / "out" / f"{name}-{mode}-{rt}-{threads}"
                    out.mkdir(parents=True, exist_ok=True)
                    # warm-up on 5 s (first-call costs: kernel selection, allocations, onnxruntime's session)
                    if mode == "query":
                        separate_file(warm, out / "warm.wav", condition, bundle, resample=True, progress=False)
                    else:
                        separate_hierarchy(warm, bundle, [1, 2], 0.2, out / "warm", resample=True, progress=False)
                    t0 = time.perf_counter()
                    if mode == "query":
                        info = separate_file(src, out / "target.wav", condition, bundle, resample=True,
                                             progress=False)
                        seconds, extra = info["seconds"], ""
                    else:
                        summ = separate_hierarchy(src, bundle, [1, 2], 0.2, out, resample=True, progress=False)
                        seconds = summ["duration_seconds"]
                        extra = ", ".join(f"level {lv}: {len(v['nodes'])} node(s)" for lv, v in summ["levels"].items())
                    wall = time.perf_counter() - t0
                    row = {"model": name, "mode": mode, "runtime": rt, "threads": threads,
                           "audio_seconds": round(seconds, 1), "wall_seconds": round(wall, 2),
                           "rtf": round(wall / seconds, 4), "notes": extra}
                    results.append(row)
                    print(f"  {name:9s} {mode:9s} {rt:11s} {threads} thread(s): {seconds:6.0f} s audio in "
                          f"{wall:7.1f} s → RTF {wall / seconds:.4f} {extra}", flush=True)

    print("\n| separator | mode | input | runtime | RTF 1 thread | RTF 2 threads |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        for mode in args.modes:
            for rt in args.runtimes:
                cells = {r["threads"]: r for r in results if (r["model"], r["mode"], r["runtime"]) == (name, mode, rt)}
                if not cells:
                    continue
                secs = next(iter(cells.values()))["audio_seconds"]
                text = [f"{cells[t]['rtf']:.4f}" if t in cells else "–" for t in (1, 2)]
                print(f"| {name} | {mode} | {secs / 60:.1f} min | {rt} | {text[0]} | {text[1]} |" if secs >= 60 else
                      f"| {name} | {mode} | {secs:.0f} s | {rt} | {text[0]} | {text[1]} |")
    notes = {(r["model"], r["mode"]): r["notes"] for r in results if r["notes"]}
    for (name, mode), text in notes.items():
        print(f"\n{name} hierarchy (--levels 1 2): {text}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
