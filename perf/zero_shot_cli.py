"""Query by example through `ussnb separate --example` on 0 dB pairs of real ESC-50 recordings: seen vs unseen.

    python perf/zero_shot_cli.py RUN_DIR [--esc50 DIR] [--pairs 6] [--examples 2] [--seed 0] [--subprocess]

For every ESC-50 class of the AudioSet mapping, ``--pairs`` mixtures are made from real 5 s ESC-50 clips (read
at the separator's rate): a target clip of the class plus an interferer clip of another class scaled to the
target's energy (0 dB). The class is queried with ``--examples`` *other* recordings of it (a different
Freesound source file than the target), exactly as a user would: one `ussnb separate MIX... --example EX1 EX2
--checkpoint RUN_DIR` per class (in-process through :func:`ussnb.cli.batch.run_separate`, the CLI's own
function; ``--subprocess`` runs the real command line instead). SDRi = SDR(s, ŝ) − SDR(s, x) is measured at the
output's rate; the do-nothing estimate x/2 (the floor, ≈ 3 dB) is printed beside it.

Which recordings: a class the run *trained on* is tested only on recordings of the ESC-50 test split (the split
the composed ``esc50`` set of seed 0 uses, so never heard in training); a class *held out* of the run's
training (stage 02's excluded classes) on any of its recordings. Classes the run does not know at all are
reported as "other" (also unseen). Aggregate: per-class median, then the mean over classes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf


def main() -> int:
    from ussnb.audio import load_audio_with_rate, resample
    from ussnb.run import Run
    from ussnb.data.compose import assign_splits
    from ussnb.data.recipes.esc50 import esc50_events, find_esc50
    from ussnb.eval.metrics import sdr
    from ussnb.runtime import configure_threads
    from ussnb.cli.batch import run_separate
    from ussnb.separation import SeparationBundle

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--esc50", default=None, help="ESC-50 folder (default USSNB_ESC50_DIR)")
    p.add_argument("--pairs", type=int, default=6, help="mixtures per target class")
    p.add_argument("--examples", type=int, default=2, help="example clips per query")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0, help="seed of the esc50 recipe's recording split")
    p.add_argument("--subprocess", action="store_true", help="run the real `ussnb separate` command line")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", help="also write the per-class table here")
    args = p.parse_args()
    configure_threads(args.threads)
    run = Path(args.run_dir)
    bundle = SeparationBundle.load(run)
    held = set(Run(run).held_out_classes())
    known = set(bundle.labels)
    events = esc50_events(find_esc50(args.esc50))
    split_of = assign_splits(events, seed=args.split_seed)
    rng = np.random.default_rng(args.seed)

    def group(mid: str) -> str:
        return "unseen (held out)" if mid in held else "seen" if mid in known else "other (unknown to the run)"

    pool = defaultdict(list)  # recordings a class may be tested on
    for ev in events:
        if group(ev.mid) != "seen" or split_of[ev.recording] == "test":
            pool[ev.mid].append(ev)
    interferers = [ev for ev in events if split_of[ev.recording] == "test" or ev.mid in held or ev.mid not in known]
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for mid in sorted(pool):
            evs = pool[mid]
            recs = sorted({e.recording for e in evs})
            if len(recs) < 2:
                continue  # no other recording to query with
            label = evs[0].label
            mixes, targets = [], []
            ex_rec = recs[int(rng.integers(len(recs)))]
            examples = [e.path for e in evs if e.recording == ex_rec]
            others = [e for e in evs if e.recording != ex_rec]
            extra = [e.path for e in others if e.recording != others[0].recording] if len(examples) < args.examples else []
            examples = (examples + extra)[: args.examples]
            targets_pool = [e for e in others if e.path not in examples]
            if not targets_pool:
                continue
            for j in range(args.pairs):
                tgt_ev = targets_pool[j % len(targets_pool)]
                itf_ev = interferers[int(rng.integers(len(interferers)))]
                while itf_ev.mid == mid:
                    itf_ev = interferers[int(rng.integers(len(interferers)))]
                # mixed at the separator's rate, so the pair is 0 dB where it is scored (resampling a 44.1 kHz clip
                # to 16 kHz removes more energy from a bright sound than from a dull one)
                sr = bundle.sample_rate
                s = load_audio_with_rate(tgt_ev.path, sr)[0]
                n = load_audio_with_rate(itf_ev.path, sr)[0]
                n = np.resize(n, s.shape[0]) if n.shape[0] < s.shape[0] else n[: s.shape[0]]
                n = n * np.sqrt(np.sum(s.astype(np.float64) ** 2) / max(np.sum(n.astype(np.float64) ** 2), 1e-12))
                x = (s + n).astype(np.float32)
                peak = max(1.0, float(np.abs(x).max()) / 0.99)
                x, s = x / peak, s / peak
                f = tmp / f"{mid.strip('/').replace('/', '_')}-{j}.wav"
                sf.write(f, x, sr, subtype="FLOAT")
                mixes.append(f)
                targets.append((s.astype(np.float32), sr, itf_ev.label))
            out = tmp / "out" / mid.strip("/").replace("/", "_")
            if args.subprocess:
                cmd = [sys.executable, "-m", "ussnb.cli", "separate", *map(str, mixes), "--example", *examples,
                       "--checkpoint", str(run), "--out", str(out), "--no-progress"]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                summary = json.loads((out / "summary.json").read_text())
            else:
                summary, _ = run_separate(mixes, out, run, examples=examples, resample=True, progress=False,
                                          echo=lambda *_: None)
            outputs = {Path(it["input"]).name: it for it in summary["items"]}
            for f, (s, sr, itf) in zip(mixes, targets):
                item = outputs[f.name]
                est, sr_o = load_audio_with_rate(item["outputs"][0] if "outputs" in item else item["output"], None)
                ref = resample(s, sr, sr_o)
                mix = resample(sf.read(f, dtype="float32")[0], sr, sr_o)
                m = min(len(ref), len(est), len(mix))
                ref, est_, mix_ = ref[None, :m], est[None, :m], mix[None, :m]
                base = float(sdr(ref, mix_)[0])
                rows.append({"class": label, "group": group(mid), "interferer": itf,
                             "sdri": float(sdr(ref, est_)[0]) - base, "floor": float(sdr(ref, mix_ / 2)[0]) - base})
    seconds = time.perf_counter() - t0
    print(f"{run}: {len(rows)} mixtures, {len({r['class'] for r in rows})} classes, {seconds:.0f} s "
          f"({'command line' if args.subprocess else 'run_separate in-process'}), {args.examples} example clip(s) "
          "per query")
    table = {}
    for g in ("seen", "unseen (held out)", "other (unknown to the run)"):
        rs = [r for r in rows if r["group"] == g]
        if not rs:
            continue
        per = defaultdict(list)
        for r in rs:
            per[r["class"]].append(r)
        med = {c: float(np.median([r["sdri"] for r in v])) for c, v in per.items()}
        floor = {c: float(np.median([r["floor"] for r in v])) for c, v in per.items()}
        table[g] = {"sdri": float(np.mean(list(med.values()))), "floor": float(np.mean(list(floor.values()))),
                    "n_classes": len(per), "n_mixtures": len(rs), "per_class": med}
        print(f"  {g:28s} SDRi {table[g]['sdri']:5.2f} dB   floor x/2 {table[g]['floor']:5.2f} dB   "
              f"({len(per)} classes, {len(rs)} mixtures)")
        if g != "seen":
            print("    " + ", ".join(f"{c} {v:.1f}" for c, v in sorted(med.items(), key=lambda kv: kv[1])))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
