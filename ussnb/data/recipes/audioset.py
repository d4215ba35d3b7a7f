"""AudioSet: weakly labelled 10 s YouTube clips with clip-level tags from the 527-class ontology.

Two real sources:
- **local**: an official segments CSV (``# YTID, start_seconds, end_seconds, positive_labels``) plus a folder
  of clips named by YouTube id (``<YTID>.wav``, ``Y<YTID>.wav`` as in PANNs' packing, or
  ``<YTID>_<start>.<ext>``; any format :func:`ussnb.audio.load_audio` reads);
- **hub**: a Hugging Face dataset (online) with an audio column and a label column, converted once.

Both become the kit's weak-dataset layout (``<split>/metadata.jsonl`` + audio, ``info.json``), so every
stage reads AudioSet exactly like the starter set. AudioSet has no event times: ``events.jsonl`` is absent.
"""
from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ...audio import save_audio
from ...errors import DataError
from ...paths import data_root
from ..compose import MARKER, SPLITS, write_jsonl

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".webm")


def read_segments_csv(path: str | os.PathLike) -> list[dict]:
    """Rows ``{"ytid", "start", "end", "labels": [MIDs]}`` of an AudioSet segments CSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: AudioSet segments CSV not found")
    rows = []
    with open(path, newline="") as f:
        reader = csv.reader((line for line in f if not line.startswith("#")), skipinitialspace=True)
        for lineno, rec in enumerate(reader, 1):
            if not rec:
                continue
            if len(rec) < 4:
                raise DataError(f"{path}: row {lineno} has {len(rec)} fields, expected YTID, start, end, labels")
            rows.append({"ytid": rec[0].strip(), "start": float(rec[1]), "end": float(rec[2]),
                         "labels": [m.strip() for m in rec[3].split(",") if m.strip()]})
    if not rows:
        raise DataError(f"{path}: no segments in the CSV")
    return rows


def _index_audio(folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
            index.setdefault(p.stem, p)
    return index


def _find_clip(index: dict[str, Path], ytid: str, start: float) -> Path | None:
    for key in (ytid, f"Y{ytid}", f"{ytid}_{int(start)}", f"{ytid}_{start:.3f}", f"Y{ytid}_{int(start)}"):
        if key in index:
            return index[key]
    return None


def prepare_audioset(
    segments: dict[str, str | os.PathLike],
    audio_dirs: dict[str, str | os.PathLike],
    root: str | os.PathLike | None = None,
    *,
    name: str = "audioset",
    label_order: list[str] | None = None,
    link: bool = True,
    force: bool = False,
) -> Path:
    """Index local AudioSet clips into ``<data root>/<name>`` (idempotent).

    Args:
        segments: split → segments CSV, e.g. ``{"train": "balanced_train_segments.csv", "test": "eval_segments.csv"}``.
        audio_dirs: split → folder of the downloaded clips.
        label_order: MIDs defining the class columns (default: the 527 of the ontology if found, else sorted).
        link: symlink the audio (default) instead of copying it.

    Segments whose clip is missing are skipped and counted in ``info.json`` (``missing_clips``).
    """
    out = data_root(root) / name
    params = {"recipe": "audioset-local", "segments": {k: str(v) for k, v in segments.items()},
              "audio_dirs": {k: str(v) for k, v in audio_dirs.items()}}
    if not force and (out / MARKER).is_file() and json.loads((out / MARKER).read_text()) == params:
        return out
    if not segments:
        raise DataError("no segments CSV given: pass segments={'train': csv, ...} (--segments train=CSV)")
    unknown = (set(segments) | set(audio_dirs)) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split(s) {sorted(unknown)}; use {SPLITS}")
    no_dir = sorted(set(segments) - set(audio_dirs))
    if no_dir:
        raise DataError(f"no clip folder for split(s) {no_dir}: pass --audio-dir {no_dir[0]}=FOLDER")
    for split in segments:
        folder = Path(audio_dirs[split])
        if not folder.is_dir():
            raise DataError(f"{folder}: clip folder of split {split!r} not found (or not a folder)")
    out.mkdir(parents=True, exist_ok=True)
    counts, missing, seconds, seen = {}, {}, 0.0, Counter()
    for split, csv_path in segments.items():
        index = _index_audio(Path(audio_dirs[split]))
        split_dir = out / split
        split_dir.mkdir(exist_ok=True)
        meta, n_missing = [], 0
        for row in read_segments_csv(csv_path):
            src = _find_clip(index, row["ytid"], row["start"])
            if src is None:
                n_missing += 1
                continue
            dest = split_dir / f"{row['ytid']}{src.suffix.lower()}"
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            if link:
                dest.symlink_to(src.resolve())
            else:
                dest.write_bytes(src.read_bytes())
            meta.append({"file_name": dest.name, "clip_id": row["ytid"], "labels": row["labels"]})
            seen.update(row["labels"])
            seconds += row["end"] - row["start"]
        write_jsonl(split_dir / "metadata.jsonl", meta)
        counts[split], missing[split] = len(meta), n_missing
        if not meta:
            raise DataError(f"split '{split}': none of the segments in {csv_path} has a clip in {audio_dirs[split]}")
    _write_info(out, name, counts, seconds, seen, label_order, extra={"missing_clips": missing, "origin": "local"})
    (out / MARKER).write_text(json.dumps(params))
    return out


def convert_hf_dataset(
    dataset: Any,
    split: str,
    root: str | os.PathLike | None = None,
    *,
    name: str = "audioset",
    audio_column: str = "audio",
    labels_column: str = "labels",
    id_column: str | None = None,
    label_names: list[str] | None = None,
    sample_rate: int = 32000,
    label_order: list[str] | None = None,
) -> Path:
    """Write a Hugging Face dataset split (audio dicts with ``array`` + ``sampling_rate``, a list of MIDs — or
    of class indices into ``label_names`` — per row) into the weak-dataset layout, resampled to ``sample_rate``."""
    from ...audio import resample

    out = data_root(root) / name
    split_dir = out / split
    split_dir.mkdir(parents=True, exist_ok=True)
    meta, seen, seconds = [], Counter(), 0.0
    for i, row in enumerate(dataset):
        audio = row[audio_column]
        wave = np.asarray(audio["array"], dtype=np.float32)
        if wave.ndim > 1:
            wave = wave.mean(axis=0) if wave.shape[0] < wave.shape[-1] else wave.mean(axis=-1)
        wave = resample(wave, int(audio["sampling_rate"]), sample_rate)
        labels = [label_names[x] if label_names and isinstance(x, (int, np.integer)) else str(x)
                  for x in row[labels_column]]
        clip_id = str(row[id_column]) if id_column else f"{name}-{split}-{i:06d}"
        save_audio(split_dir / f"{clip_id}.flac", wave, sample_rate)
        meta.append({"file_name": f"{clip_id}.flac", "clip_id": clip_id, "labels": labels})
        seen.update(labels)
        seconds += wave.shape[0] / sample_rate
    write_jsonl(split_dir / "metadata.jsonl", meta)
    counts = {s: _count_lines(out / s / "metadata.jsonl") for s in SPLITS if (out / s / "metadata.jsonl").is_file()}
    _write_info(out, name, counts, seconds, seen, label_order, extra={"origin": "huggingface"})
    (out / MARKER).write_text(json.dumps({"recipe": "audioset-hf", "splits": sorted(counts)}))
    return out


def prepare_audioset_hub(repo_id: str, split: str, **kwargs: Any) -> Path:
    """Download a hub dataset split (needs internet) and convert it with :func:`convert_hf_dataset`."""
    import datasets

    ds = datasets.load_dataset(repo_id, split=split)
    return convert_hf_dataset(ds, "test" if split == "eval" else split, **kwargs)


def _write_info(out: Path, name: str, counts: dict, seconds: float, seen: Counter, label_order, extra: dict):
    if label_order is None:
        try:
            from ...ontology import find_audioset_meta, Ontology

            folder = find_audioset_meta()
            label_order = [lab.mid for lab in Ontology.from_dir(folder).labels] if folder else None
        except Exception:
            label_order = None
    label_order = label_order or sorted(seen)
    names = _label_names(label_order)
    info = {
        "name": name, "sample_rate": 32000, "clip_seconds": 10.0,
        "n_classes": len(label_order), "labels": label_order,
        "classes": [{"mid": m, "name": names.get(m, m), "n_clips": int(seen.get(m, 0))} for m in label_order],
        "n_clips": {s: counts.get(s, 0) for s in SPLITS}, "hours": round(seconds / 3600, 4),
    } | extra
    (out / "info.json").write_text(json.dumps(info, indent=1))


def _label_names(mids: Iterable[str]) -> dict[str, str]:
    try:
        from ...ontology import load_ontology

        onto = load_ontology()
        return {lab.mid: lab.name for lab in onto.labels}
    except Exception:
        return {}


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())
