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
import tempfile
from pathlib import Path

from .errors import ConfigError


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


def check_output_folder(out: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse an output folder that is a file, lies under a file, or cannot be written (checked on the
    nearest existing folder; nothing is created). Returns it as a :class:`Path`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out}: is a file, not a folder")
    parent = out
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{option} {out}: cannot be created, {parent} is a file")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        what = "is not writable" if parent == out else f"cannot be created: {parent} is not writable"
        raise ConfigError(f"{option} {out}: the output folder {what}")
    return out


def make_output_folder(out: Path, option: str = "--out") -> None:
    """Create ``out`` and make sure a file can be written into it (as root, permission bits say little)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".ussnb-write-test."):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{option} {out}: cannot write to the output folder ({reason})") from exc
