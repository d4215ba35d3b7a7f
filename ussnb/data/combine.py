"""Combine prepared weakly labelled datasets into one, and hold classes out of training.

``combine([starter_dir, esc50_dir], holdout=[...])`` writes a small *view* under
``<data root>/combined/<names>-<hash>/``: no audio is copied — each split's ``metadata.jsonl`` points at the
member datasets' files by absolute path — so the view costs kilobytes and is rebuilt in a second.

* **Splits are kept per source.** A member's train clips stay train clips, and so on, so no recording is in
  two splits (each member was split by recording when it was composed).
* **Labels are the union** of the members' classes, in the members' order (a class two members share is one
  column). Clip ids are prefixed with the member's name (``esc50/esc50-train-00003``) so they stay unique.
* **True event times** (``events.jsonl``) are merged when every member has them.
* **Held-out classes** (zero-shot): every *train* and *validation* clip in which a held-out class occurs is
  dropped — judged by the true events when the member has them (so an *untagged* occurrence also counts: the
  class is never heard in training, neither as a target nor as an interferer), else by the clip tags. Test
  clips are kept: that is where the held-out classes are evaluated. A one-member "combination" is how a
  single dataset gets a hold-out view.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from ..io import atomic_write_text, short_hash
from ..paths import data_root
from .compose import MARKER, SPLITS, write_jsonl

VIEW_VERSION = 1


def _member_identity(root: Path) -> dict:
    marker = (root / MARKER).read_text()
    return {"path": str(root.resolve()), "marker": hashlib.sha256(marker.encode()).hexdigest()[:16]}


def combine(
    members: Sequence[str | os.PathLike],
    *,
    holdout: Sequence[str] = (),
    root: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Write (idempotently) the combined view of the prepared dataset folders ``members``; return its folder.

    ``holdout``: MIDs of classes no train/validation clip may contain (see the module docstring)."""
    from .weak import WeakDataset

    if not members:
        raise DataError("nothing to combine: give at least one prepared dataset")
    datasets = [WeakDataset(m) for m in members]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise DataError(f"the same dataset appears twice in the combination: {names}")
    rates = {d.sample_rate for d in datasets}
    lengths = {d.clip_seconds for d in datasets}
    if len(rates) > 1 or len(lengths) > 1:
        raise DataError("datasets to combine must share sample rate and clip length; got "
                        + ", ".join(f"{d.name}: {d.sample_rate} Hz, {d.clip_seconds:g} s" for d in datasets))
    labels: list[str] = []
    label_names: dict[str, str] = {}
    for d in datasets:
        for mid in d.labels:
            if mid not in label_names:
                labels.append(mid)
                label_names[mid] = d.label_names.get(mid, mid)
    holdout = sorted(set(holdout))
    unknown = [m for m in holdout if m not in label_names]
    if unknown:
        raise DataError(f"held-out classes {unknown} are in none of {names}")
    identity = {"version": VIEW_VERSION, "members": [_member_identity(d.root) for d in datasets], "holdout": holdout}
    key = short_hash(identity)
    out = data_root(root) / "combined" / f"{'+'.join(names)}-{key}"
    if not force and (out / MARKER).is_file() and json.loads((out / MARKER).read_text()) == identity:
        return out
    out.mkdir(parents=True, exist_ok=True)
    with_truth = all((d.root / "events.jsonl").is_file() for d in datasets)
    held = set(holdout)
    counts = {s: 0 for s in SPLITS}
    dropped = {s: 0 for s in SPLITS}
    truth_rows: list[dict] = []
    per_class: dict[str, int] = {m: 0 for m in labels}
    for split in SPLITS:
        rows = []
        for d in datasets:
            if split not in d.splits:
                continue
            truth = d.true_events(split) if (d.root / "events.jsonl").is_file() else None
            for clip in d.clips(split):
                events = truth.get(clip.clip_id, []) if truth is not None else None
                present = {e["mid"] for e in events} if events is not None else set(clip.labels)
                if split != "test" and present & held:
                    dropped[split] += 1
                    continue
                clip_id = f"{d.name}/{clip.clip_id}"
                rows.append({"file_name": str(clip.path.resolve()), "clip_id": clip_id, "labels": list(clip.labels),
                             "source_dataset": d.name})
                for m in clip.labels:
                    per_class[m] += 1
                if with_truth:
                    truth_rows.append({"clip_id": clip_id, "split": split, "events": events})
        if rows:
            (out / split).mkdir(exist_ok=True)
            write_jsonl(out / split / "metadata.jsonl", rows)
        counts[split] = len(rows)
    if counts["train"] == 0:
        raise DataError(f"the combination of {names} has no training clip left (held out: {holdout})")
    if with_truth:
        write_jsonl(out / "events.jsonl", truth_rows)
    elif (out / "events.jsonl").exists():
        (out / "events.jsonl").unlink()
    clip_seconds = datasets[0].clip_seconds
    sources = [s for d in datasets for s in d.info.get("sources", [])]
    info = {
        "name": "+".join(names), "sample_rate": datasets[0].sample_rate, "clip_seconds": clip_seconds,
        "labels": labels, "n_classes": len(labels),
        "classes": [{"mid": m, "name": label_names[m], "n_clips": per_class[m]} for m in labels],
        "n_clips": counts, "hours": round(sum(counts.values()) * clip_seconds / 3600, 4),
        "members": [{"name": d.name, "path": str(d.root.resolve()), "n_classes": len(d.labels),
                     "n_clips": {s: len(d.clips(s)) if s in d.splits else 0 for s in SPLITS}} for d in datasets],
        "holdout": holdout, "holdout_names": [label_names[m] for m in holdout], "dropped_clips": dropped,
        "origin": "combined view of " + ", ".join(names) + (f", {len(holdout)} classes held out" if holdout else ""),
    }
    if sources:
        info["sources"] = sources
        info["n_packages"] = len(sources)
    atomic_write_text(out / "info.json", json.dumps(info, indent=1))
    atomic_write_text(out / MARKER, json.dumps(identity))
    return out


__all__ = ["combine"]
