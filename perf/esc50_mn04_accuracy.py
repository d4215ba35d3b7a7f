"""Zero-shot ESC-50 accuracy of the EfficientAT mn04 AudioSet tagger.

    python perf/esc50_mn04_accuracy.py [--esc50 DIR] [--batch 16] [--pad-seconds 10] [--per-class]

Each ESC-50 clip (5 s, 44.1 kHz) is read with soundfile, resampled to 32 kHz with soxr (HQ) and tagged
with ``mn04_as`` (weights via ``USSNB_WEIGHTS_DIR`` or download). ``esc50_to_audioset.csv`` maps every
ESC-50 category to one AudioSet class index; a clip counts as correct at k if that index is among the k
most probable of the 527 AudioSet classes (no fine-tuning: a strict test, since parent classes such as
"Animal" or "Vehicle" and near classes compete for the top ranks). DIR defaults to ``$USSNB_ESC50_DIR``.
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from ussnb.taggers.efficientat import load_efficientat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--esc50", default=os.environ.get("USSNB_ESC50_DIR"), help="ESC-50 folder")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pad-seconds", type=float, default=0.0,
                        help="zero-pad each clip at the end to this length (e.g. 10, as AudioSet clips)")
    parser.add_argument("--per-class", action="store_true", help="print top-1 accuracy per category")
    args = parser.parse_args()
    if not args.esc50:
        parser.error("give --esc50 or set USSNB_ESC50_DIR")
    root = Path(args.esc50)
    torch.set_num_threads(2)

    with open(root / "esc50_to_audioset.csv", newline="") as f:
        mapping = {r["esc50_category"]: int(r["audioset_index"]) for r in csv.DictReader(f)}
    with open(root / "esc50.csv", newline="") as f:
        clips = [(r["filename"], r["category"]) for r in csv.DictReader(f) if r["category"] in mapping]

    model = load_efficientat("mn04_as")
    start = time.perf_counter()
    ranks: list[int] = []
    for i in range(0, len(clips), args.batch):
        chunk = clips[i:i + args.batch]
        waves = []
        for name, _ in chunk:
            x, sr = sf.read(root / "audio" / name, dtype="float32", always_2d=True)
            waves.append(soxr.resample(x.mean(axis=1), sr, 32000, quality="HQ"))
        n = max(max(len(w) for w in waves), int(round(args.pad_seconds * 32000)))
        batch = np.stack([np.pad(w, (0, n - len(w))) for w in waves]).astype(np.float32)
        with torch.inference_mode():
            logits, _ = model(model.mel(torch.from_numpy(batch)))
        order = torch.argsort(logits, dim=1, descending=True).numpy()
        for row, (_, category) in zip(order, chunk):
            ranks.append(int(np.flatnonzero(row == mapping[category])[0]))
    seconds = time.perf_counter() - start
    ranks_a = np.array(ranks)
    print(f"ESC-50 subset: {len(ranks)} clips, {len(set(c for _, c in clips))} categories, {seconds:.1f} s")
    print(f"mn04_as zero-shot top-1 accuracy: {np.mean(ranks_a < 1):.3f}")
    print(f"mn04_as zero-shot top-5 accuracy: {np.mean(ranks_a < 5):.3f}")
    if args.per_class:
        per = defaultdict(list)
        for (_, category), r in zip(clips, ranks):
            per[category].append(r < 1)
        for category in sorted(per, key=lambda c: np.mean(per[c])):
            print(f"  {category:18s} top-1 {np.mean(per[category]):.2f} ({len(per[category])} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
