"""Datasets: weakly labelled clip collections prepared under ``<data root>/<name>`` (``USSNB_DATA``).

``prepare(name)`` builds one (idempotent), ``load(name)`` opens it as a :class:`WeakDataset`, ``info(name)``
summarises it. Names: ``starter`` (offline default), ``esc50`` (needs ``USSNB_ESC50_DIR`` or internet),
``audioset`` (local CSV + clips, or a hub dataset; see :mod:`ussnb.data.recipes.audioset`), ``folder`` (your
own tagged files, :mod:`ussnb.data.recipes.folder`). :func:`prepare_for_run` is what stage 00 calls: one
name / folder or a list of them (combined by :func:`ussnb.data.combine.combine`), with held-out classes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..paths import data_root
from .compose import SPLITS, SourceEvent
from .weak import BalancedSampler, Clip, WeakDataset

DEFAULT_DATASET = "starter"
DATASETS = ("starter", "esc50", "audioset")  # by name; `folder` is prepared from a path (prepare_folder)


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / name


def prepare(name: str, *, root: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """Prepare dataset ``name`` (idempotent; a completion marker skips finished work)."""
    if name in ("starter", "esc50"):
        return _recipe(name)(root, **kwargs)
    if name == "audioset":
        from .recipes.audioset import prepare_audioset

        if "segments" not in kwargs or "audio_dirs" not in kwargs:
            raise DataError(
                "audioset needs its segments CSVs and clip folders: prepare_audioset(segments={'train': csv}, "
                "audio_dirs={'train': folder}) — or prepare_audioset_hub(repo_id, split) when online"
            )
        return prepare_audioset(root=root, **kwargs)
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} (or a path to a prepared folder)")


def prepare_named(
    name_or_path: str | os.PathLike,
    *,
    n_train: int | None = None,
    n_validation: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Path:
    """Prepare a dataset with the given sizes without disturbing other sizes of it.

    The recipe's default sizes live at ``<data root>/<name>``; any other sizes/seed at
    ``<data root>/variants/<train>-<validation>-<test>-seed<seed>/<name>`` — so a quick ``smoke`` run never
    overwrites the full set. A path to an already prepared folder is returned as is."""
    import inspect
    import numbers

    for key, value in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test), ("seed", seed)):
        if value is None:
            continue
        low = 0 if key == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            what = "a non-negative whole number" if key == "seed" else "a whole number of clips ≥ 1"
            raise ConfigError(f"--{key.replace('_', '-')} ({key}) must be {what}, got {value!r}")
    path = Path(name_or_path)
    if str(name_or_path) not in DATASETS:
        if (path / ".complete").is_file():
            return path
        raise DataError(f"{name_or_path!r} is neither a known dataset ({', '.join(DATASETS)}) nor a prepared folder")
    name = str(name_or_path)
    sizes = {k: v for k, v in (("n_train", n_train), ("n_validation", n_validation), ("n_test", n_test)) if v is not None}
    if name == "audioset":
        folder = dataset_dir(name, root)
        if (folder / ".complete").is_file():
            return folder
        if kwargs:
            return prepare(name, root=root, **kwargs)
        raise DataError(
            f"AudioSet is not prepared at {folder}: run `ussnb data prepare audioset --segments train=CSV "
            "--audio-dir train=FOLDER` (local clips) first"
        )
    recipe = _recipe(name)
    defaults = {k: p.default for k, p in inspect.signature(recipe).parameters.items()}
    is_default = all(defaults.get(k) == v for k, v in sizes.items()) and defaults.get("seed", 0) == seed
    if not is_default:
        tag = "-".join(str(sizes.get(k, defaults.get(k))) for k in ("n_train", "n_validation", "n_test"))
        root = data_root(root) / "variants" / f"{tag}-seed{seed}"
    from ..io import file_lock

    with file_lock(data_root(root) / f".{name}.lock"):  # a second process waits, then finds it prepared
        return recipe(root, seed=seed, **sizes, **kwargs)


def resolve_classes(classes, datasets) -> list[str]:
    """MIDs of ``classes`` (display names, case-insensitive, or MIDs) among the ``datasets``' labels; unknown
    names → :class:`DataError` listing the classes there are."""
    by_name: dict[str, str] = {}
    for ds in datasets:
        for mid in ds.labels:
            by_name.setdefault(ds.label_names.get(mid, mid).lower(), mid)
            by_name.setdefault(mid.lower(), mid)
    out, unknown = [], []
    for c in classes:
        mid = by_name.get(str(c).strip().lower())
        (out if mid else unknown).append(mid or str(c))
    if unknown:
        names = sorted({ds.label_names.get(m, m) for ds in datasets for m in ds.labels})
        raise DataError(f"zero_shot_classes {unknown} are not classes of the dataset; its classes: {', '.join(names)}")
    return list(dict.fromkeys(out))


def prepare_for_run(
    dataset: str | os.PathLike | list,
    *,
    n_train: int | None = None,
    n_validation: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    holdout: list | tuple = (),
    root: str | os.PathLike | None = None,
) -> Path:
    """The dataset folder a pipeline run trains on (stage 00).

    ``dataset``: a name, a prepared folder, or a list of them — each prepared with the given sizes
    (:func:`prepare_named`; sizes are per member) and combined into one view (:func:`combine`: splits kept
    per source, labels the union). ``holdout``: class names or MIDs that no training or validation clip may
    contain (zero-shot); with a single dataset and no hold-out the prepared folder itself is returned."""
    from .combine import combine

    members = list(dataset) if isinstance(dataset, (list, tuple)) else [dataset]
    if not members:
        raise ConfigError("dataset is an empty list: name at least one (e.g. [starter, esc50])")
    roots = [prepare_named(m, n_train=n_train, n_validation=n_validation, n_test=n_test, seed=seed, root=root)
             for m in members]
    if len(roots) == 1 and not holdout:
        return roots[0]
    held = resolve_classes(holdout, [WeakDataset(r) for r in roots])
    from ..io import file_lock

    with file_lock(data_root(root) / ".combine.lock"):  # two runs starting at once build the view once
        return combine(roots, holdout=held, root=root)


def _recipe(name: str):
    if name == "starter":
        from .recipes.starter import prepare_starter

        return prepare_starter
    if name == "esc50":
        from .recipes.esc50 import prepare_esc50

        return prepare_esc50
    raise DataError(f"no size-parametrised recipe for {name!r}")


def load(name_or_path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> WeakDataset:
    """Open a prepared dataset by name (under the data root) or by folder path."""
    path = Path(name_or_path)
    if not path.is_dir() and str(name_or_path) in DATASETS:
        path = dataset_dir(str(name_or_path), root)
    if not path.is_dir():
        if str(name_or_path) in DATASETS:
            raise DataError(f"dataset {name_or_path!r} is not prepared (looked in {path}); run "
                            f"`ussnb data prepare {name_or_path}`")
        if path.exists():
            raise DataError(f"{path} is a file, not a dataset folder (known datasets: {', '.join(DATASETS)})")
        raise DataError(f"no dataset {str(name_or_path)!r}: neither a known dataset ({', '.join(DATASETS)}) nor a "
                        "prepared dataset folder")
    return WeakDataset(path)


def info(name_or_path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> dict:
    """Summary for ``ussnb data info``: n_classes, n_clips per split, hours (+ recipe-specific fields)."""
    ds = load(name_or_path, root=root)
    out = {
        "name": ds.name,
        "path": str(ds.root),
        "n_classes": len(ds.labels),
        "n_clips": {s: len(ds.clips(s)) if s in ds.splits else 0 for s in SPLITS},
        "hours": ds.info.get("hours"),
        "sample_rate": ds.sample_rate,
        "clip_seconds": ds.clip_seconds,
    }
    for key in ("n_packages", "min_recordings_per_class", "sources", "classes", "members", "holdout_names",
                "dropped_clips"):
        if key in ds.info:
            out[key] = ds.info[key]
    return out


__all__ = ["BalancedSampler", "Clip", "DATASETS", "DEFAULT_DATASET", "SPLITS", "SourceEvent", "WeakDataset",
           "dataset_dir", "info", "load", "prepare", "prepare_for_run", "prepare_named", "resolve_classes"]
