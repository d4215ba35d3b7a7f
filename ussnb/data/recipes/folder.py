"""Your own sounds: a folder of audio files with clip tags becomes a weakly labelled dataset.

    ussnb data prepare folder PATH --tags tags.csv [--name NAME]

``tags.csv`` has a header and one row per file: ``file`` (path relative to PATH, or absolute), ``labels``
(AudioSet display names or MIDs, comma-separated — names that themselves hold a comma, such as
``"Chicken, rooster"``, are recognised as one name; ``;`` also separates) and optionally ``split``
(``train`` / ``validation`` / ``test``). Without a ``split`` column every file is assigned by
:func:`ussnb.data.compose.assign_splits` — per class, by file (each file is one recording) — so no file is in
two splits. Unknown label names stop the recipe with the closest AudioSet names.

Each file is read at 32 kHz mono and cut into consecutive 10 s clips (a file shorter than 10 s, or a last
piece of at least 2 s, is zero-padded to 10 s; shorter tails are dropped); every clip of a file carries the
file's tags. The clips go to ``<data root>/<name>/<split>/`` as 16-bit FLAC with the kit's ``metadata.jsonl``,
so every stage reads the folder like the starter set. There are no true event times (``events.jsonl``).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from ...audio import load_audio, save_audio
from ...errors import AudioError, DataError, OntologyError
from ...io import short_hash
from ...paths import data_root
from ..compose import MARKER, SPLITS, SourceEvent, assign_splits, write_jsonl

SAMPLE_RATE = 32000
CLIP_SECONDS = 10.0
MIN_TAIL_SECONDS = 2.0


def parse_labels(text: str, ontology) -> list[str]:
    """MIDs of a ``labels`` cell: comma/semicolon separated names or MIDs; adjacent comma pieces are joined
    when together they are one label's name (``Chicken, rooster``). Unknown → :class:`DataError` with the
    closest names."""
    out: list[str] = []
    for group in text.split(";"):
        pieces = [p.strip() for p in group.split(",") if p.strip()]
        i = 0
        while i < len(pieces):
            for j in range(len(pieces), i, -1):  # longest run of pieces that is a label
                try:
                    mid = ontology.label(", ".join(pieces[i:j])).mid
                except OntologyError:
                    continue
                out.append(mid)
                i = j
                break
            else:
                close = ontology.closest(pieces[i])
                hint = "; closest AudioSet labels: " + ", ".join(repr(c) for c in close) if close else ""
                raise DataError(f"unknown label {pieces[i]!r}{hint} (`ussnb labels TEXT` searches the names)")
    return list(dict.fromkeys(out))


def read_tags(folder: Path, tags_csv: Path, ontology) -> list[dict]:
    """Rows ``{"path", "labels": [MIDs], "split" or None}`` of ``tags.csv`` (checked)."""
    if not tags_csv.is_file():
        raise DataError(f"{tags_csv}: tags file not found (a CSV with columns file, labels[, split])")
    with open(tags_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields = [c.strip().lower() for c in (reader.fieldnames or [])]
        if "file" not in fields or "labels" not in fields:
            raise DataError(f"{tags_csv}: needs a header with columns 'file' and 'labels' (and optionally "
                            f"'split'); found {reader.fieldnames}")
        rows = []
        for lineno, raw in enumerate(reader, 2):
            r = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            if not r.get("file"):
                continue
            path = Path(r["file"]) if Path(r["file"]).is_absolute() else folder / r["file"]
            if not path.is_file():
                raise DataError(f"{tags_csv}:{lineno}: audio file {r['file']!r} not found in {folder}")
            try:
                labels = parse_labels(r["labels"], ontology)
            except DataError as exc:
                raise DataError(f"{tags_csv}:{lineno}: {exc}") from None
            if not labels:
                raise DataError(f"{tags_csv}:{lineno}: {r['file']!r} has no labels")
            split = r.get("split") or None
            if split is not None and split not in SPLITS:
                raise DataError(f"{tags_csv}:{lineno}: split {split!r} is not one of {', '.join(SPLITS)}")
            rows.append({"path": path, "labels": labels, "split": split})
    if not rows:
        raise DataError(f"{tags_csv}: no rows")
    return rows


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "clip"


def prepare_folder(
    folder: str | os.PathLike,
    tags: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Build ``<data root>/<name>`` from ``folder`` and its ``tags`` CSV (default ``folder/tags.csv``)."""
    from ...ontology import load_ontology
    from ...progress import progress_bar

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of audio files")
    tags_csv = Path(tags).expanduser() if tags else folder / "tags.csv"
    name = name or _slug(folder.resolve().name)
    ontology = load_ontology()
    rows = read_tags(folder, tags_csv, ontology)
    fingerprint = hashlib.sha256(tags_csv.read_bytes()).hexdigest()[:16]
    files = sorted((str(r["path"].resolve()), os.path.getsize(r["path"])) for r in rows)
    params = {"recipe": "folder", "folder": str(folder.resolve()), "tags": fingerprint, "seed": seed,
              "files": short_hash(files, 16), "ontology": ontology.source}
    out = data_root(root) / name
    if not force and (out / MARKER).is_file() and json.loads((out / MARKER).read_text()) == params:
        return out
    # a split per file: given, or per class by file (each file is one recording)
    events = [SourceEvent(path=str(r["path"]), mid=r["labels"][0], label=ontology.name(r["labels"][0]),
                          recording=str(r["path"].resolve()), source="folder", licence="the user's")
              for r in rows if r["split"] is None]
    auto = assign_splits(events, seed=seed) if events else {}
    for r in rows:
        r["split"] = r["split"] or auto[str(r["path"].resolve())]
    if out.exists():
        for split in SPLITS:
            for f in (out / split).glob("*.flac") if (out / split).is_dir() else ():
                f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    n_clip = int(CLIP_SECONDS * SAMPLE_RATE)
    meta: dict[str, list[dict]] = {s: [] for s in SPLITS}
    seen: dict[str, int] = {}
    bar = progress_bar(total=len(rows), desc=f"preparing {name}", unit="file", disable=not progress)
    for i, r in enumerate(rows):
        try:
            wave = load_audio(r["path"], SAMPLE_RATE)
        except AudioError as exc:
            raise DataError(f"{r['path']}: cannot read it as audio ({exc})") from None
        pieces = [wave[s:s + n_clip] for s in range(0, max(len(wave), 1), n_clip)]
        pieces = [p for j, p in enumerate(pieces) if j == 0 or len(p) >= MIN_TAIL_SECONDS * SAMPLE_RATE]
        split_dir = out / r["split"]
        split_dir.mkdir(exist_ok=True)
        for j, piece in enumerate(pieces):
            if not np.any(piece):
                continue
            clip_id = f"{i:05d}-{_slug(r['path'].stem)}-{j}"
            save_audio(split_dir / f"{clip_id}.flac", np.pad(piece, (0, n_clip - len(piece))), SAMPLE_RATE)
            meta[r["split"]].append({"file_name": f"{clip_id}.flac", "clip_id": clip_id, "labels": r["labels"],
                                     "source_file": str(r["path"])})
            for m in r["labels"]:
                seen[m] = seen.get(m, 0) + 1
        bar.update(1)
    bar.close()
    if not meta["train"]:
        raise DataError(f"{tags_csv}: no training clip (give some files split=train, or more files per class)")
    for split in SPLITS:
        if meta[split]:
            write_jsonl(out / split / "metadata.jsonl", meta[split])
        elif (out / split / "metadata.jsonl").is_file():
            (out / split / "metadata.jsonl").unlink()
    labels = [m for m in dict.fromkeys(m for r in rows for m in r["labels"])]
    counts = {s: len(meta[s]) for s in SPLITS}
    info = {"name": name, "sample_rate": SAMPLE_RATE, "clip_seconds": CLIP_SECONDS, "labels": labels,
            "n_classes": len(labels),
            "classes": [{"mid": m, "name": ontology.name(m), "n_clips": seen.get(m, 0)} for m in labels],
            "n_clips": counts, "hours": round(sum(counts.values()) * CLIP_SECONDS / 3600, 4),
            "origin": f"the user's folder {folder.resolve()} tagged by {tags_csv.name}",
            "n_files": len(rows)}
    (out / "info.json").write_text(json.dumps(info, indent=1))
    (out / MARKER).write_text(json.dumps(params))
    return out


__all__ = ["parse_labels", "prepare_folder", "read_tags"]
