"""ESC-50 (K. J. Piczak): 5 s single-class clips, 50 categories, mapped to AudioSet MIDs.

The data comes from a local folder (argument or ``USSNB_ESC50_DIR``) holding ``esc50.csv``, ``audio/`` and
``esc50_to_audioset.csv`` (category → AudioSet MID / index), or — when online — from the official archive,
downloaded once into ``<data root>/downloads``. The official archive has no AudioSet mapping; pass one.

``prepare_esc50`` turns the clips into the weak-label setting: each clip becomes one event (its non-silent
part), recordings (Freesound ``src_file``) are split train/validation/test, and 10 s clips with 1-3 tagged
events are composed exactly as for the starter set.
"""
from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path

from ...errors import DataError
from ...paths import data_root, esc50_dir
from ..compose import SourceEvent, compose_weak_dataset, is_complete

ESC50_URL = "https://github.com/karoldvl/ESC-50/archive/master.zip"
LICENCE = "CC BY-NC 3.0 (ESC-10 part CC BY 3.0); see the dataset's LICENSE"


def find_esc50(path: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """Locate an ESC-50 folder (``esc50.csv`` + ``audio/``), or download the official archive."""
    root = esc50_dir(path)
    if root is not None:
        for candidate in (root, root / "meta"):
            if (candidate / "esc50.csv").is_file():
                return root
        raise DataError(f"{root} does not look like ESC-50: no esc50.csv (or meta/esc50.csv) in it")
    if download:
        return download_esc50()
    raise DataError(
        "ESC-50 not found: set USSNB_ESC50_DIR to a folder with esc50.csv and audio/, pass a path, "
        "or allow downloading the official archive (needs internet)"
    )


def download_esc50(dest: str | os.PathLike | None = None) -> Path:
    """Download and unpack the official ESC-50 archive (about 600 MB) once."""
    from ...download import download_file

    dest = Path(dest) if dest else data_root() / "downloads"
    target = dest / "ESC-50-master"
    if (target / "meta" / "esc50.csv").is_file():
        return target
    archive = download_file(ESC50_URL, dest / "ESC-50-master.zip")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(dest)
    return target


def read_esc50(root: Path, mapping: str | os.PathLike | None = None) -> list[dict]:
    """Rows of ``esc50.csv`` joined with the AudioSet mapping (``mid``, ``audioset_name``, ``exact``)."""
    meta = root / "esc50.csv" if (root / "esc50.csv").is_file() else root / "meta" / "esc50.csv"
    mapping_path = Path(mapping) if mapping else root / "esc50_to_audioset.csv"
    if not mapping_path.is_file():
        raise DataError(
            f"no ESC-50 → AudioSet mapping at {mapping_path}; pass a CSV with columns esc50_category, "
            "audioset_mid, audioset_display_name"
        )
    with open(mapping_path, newline="") as f:
        to_audioset = {r["esc50_category"]: r for r in csv.DictReader(f)}
    audio_dir = root / "audio"
    rows = []
    with open(meta, newline="") as f:
        for r in csv.DictReader(f):
            m = to_audioset.get(r["category"])
            if m is None:
                continue
            rows.append(r | {"path": str(audio_dir / r["filename"]), "mid": m["audioset_mid"],
                             "audioset_name": m["audioset_display_name"],
                             "exact": m.get("exact", "True") == "True"})
    if not rows:
        raise DataError(f"{meta}: no clip of a mapped category")
    return rows


def esc50_events(root: Path, mapping: str | os.PathLike | None = None) -> list[SourceEvent]:
    """One :class:`SourceEvent` per ESC-50 clip; the recording id is the Freesound source file."""
    return [
        SourceEvent(path=r["path"], mid=r["mid"], label=r["audioset_name"], recording=f"esc50:{r['src_file']}",
                    source="ESC-50", licence=LICENCE)
        for r in read_esc50(root, mapping)
    ]


def prepare_esc50(
    root: str | os.PathLike | None = None,
    *,
    source: str | os.PathLike | None = None,
    n_train: int = 600,
    n_validation: int = 80,
    n_test: int = 160,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Compose the weakly labelled ``esc50`` set under ``<data root>/esc50`` (idempotent)."""
    src = find_esc50(source)
    out = data_root(root) / "esc50"
    params = {"recipe": "esc50", "source": str(src.resolve()), "n_clips": [n_train, n_validation, n_test],
              "seed": seed}
    if not force and is_complete(out, params):
        return out
    events = esc50_events(src)
    compose_weak_dataset(
        events, out, name="esc50", n_clips={"train": n_train, "validation": n_validation, "test": n_test},
        seed=seed, max_event_seconds=5.0, marker_params=params, progress=progress,
        extra_info={"origin": "ESC-50 clips laid into 10 s weakly labelled clips", "source_dir": str(src)},
    )
    return out


def esc50_source_info(source: str | os.PathLike | None = None) -> dict:
    """Classes / clips / hours of the raw ESC-50 folder (before composing)."""
    rows = read_esc50(find_esc50(source))
    import soundfile as sf

    seconds = sum(sf.info(r["path"]).duration for r in rows)
    return {"n_classes": len({r["mid"] for r in rows}), "n_source_clips": len(rows),
            "source_hours": round(seconds / 3600, 4)}

