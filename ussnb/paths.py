"""Where ussnb finds things. Every location can be given explicitly; otherwise an environment variable;
otherwise a default under the project's ``data/`` folder. Nothing here points at developer-only folders.

Environment variables:
    USSNB_DATA           where datasets are prepared (default: ``./data``)
    USSNB_AUDIOSET_META  folder with AudioSet ``ontology.json`` + ``class_labels_indices.csv``
    USSNB_ESC50_DIR      folder of the ESC-50 (subset) with ``esc50.csv`` and ``audio/``
    USSNB_WEIGHTS_DIR    folder with pretrained weights under their official file names
"""
from __future__ import annotations

import os
from pathlib import Path


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Folder under which datasets are prepared (``USSNB_DATA`` or ``./data``)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    return _env_path("USSNB_DATA") or Path("data")


def audioset_meta_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """Folder holding AudioSet metadata, or None when none is configured."""
    if explicit is not None:
        return Path(explicit).expanduser()
    return _env_path("USSNB_AUDIOSET_META")


def esc50_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    if explicit is not None:
        return Path(explicit).expanduser()
    return _env_path("USSNB_ESC50_DIR")


def weights_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Folder of pretrained weights (``USSNB_WEIGHTS_DIR`` or ``<data root>/weights``)."""
    if explicit is not None:
        return Path(explicit).expanduser()
    return _env_path("USSNB_WEIGHTS_DIR") or data_root() / "weights"


def find_weights(filename: str, explicit_dir: str | os.PathLike | None = None) -> Path | None:
    """Path of a pretrained weight file by its official file name, or None if it is not on disk."""
    candidate = weights_dir(explicit_dir) / filename
    return candidate if candidate.is_file() else None
