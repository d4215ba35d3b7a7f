"""Small file primitives shared by the kit: atomic writes with per-process temporary names, and the JSON
forms of a stage's results (``metrics.json``, byte-identical on a re-run) and wall-clock figures (``timing.json``).

Only the standard library is imported at module level.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping


class AtomicTarget:
    """A temporary file beside ``path`` (a name unique to this call, ``tempfile.mkstemp``) that becomes ``path``
    on :meth:`commit` or disappears on :meth:`abort` — for writers that stream into it over time (a WAV written
    block by block, a download); :func:`atomic_path` is the same as a ``with`` block."""

    def __init__(self, path: str | os.PathLike, suffix: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.",
                                   suffix=f".part{self.path.suffix if suffix is None else suffix}", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write ``tmp`` in any way; on success it is renamed over ``p``.

    ``tmp`` lies in ``p``'s folder under a name unique to this call (``tempfile.mkstemp``), so concurrent
    writers (DDP ranks, two processes) never share one; a reader sees the old file or the new one, never a
    truncated one. On an exception the temporary file is removed and ``p`` is left as it was. ``suffix``
    (default: ``p``'s own, e.g. ``.npz``) matters to writers that choose a format by the file name.
    """
    target = AtomicTarget(path, suffix)
    try:
        yield target.tmp
        target.commit()
    except BaseException:
        target.abort()
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, *, wait: bool = True) -> Iterator[Path | None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the ``with`` block — so two processes
    preparing the same folder (two sweeps starting at once) take turns instead of racing. ``wait=False``: do not
    wait for a lock another process holds; the block then gets ``None`` instead of the path. POSIX ``flock`` (the
    lock dies with its process); where it is missing (Windows) the block runs unlocked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield path
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        try:
            yield path
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def stable_seed(seed: int, *parts: Any) -> int:
    """A 64-bit seed from ``seed`` and any parts (names, ids): the same on every machine and Python run
    (unlike ``hash()``), different for different parts."""
    digest = hashlib.sha256("|".join([str(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def short_hash(obj: Any, length: int = 10) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``obj`` as canonical JSON (sorted keys, ``str`` for
    what JSON cannot hold): one way to name outputs and cache folders after what made them."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def rounded(obj: Any, digits: int = 4) -> Any:
    """Floats rounded to ``digits`` (NaN/inf → None), NumPy scalars to Python numbers, mapping keys as strings."""
    if isinstance(obj, Mapping):
        return {str(k): rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, bool) or getattr(getattr(obj, "dtype", None), "kind", None) == "b":
        return bool(obj)
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        x = float(obj)
        return round(x, digits) if math.isfinite(x) else None
    return obj


def dumps_metrics(metrics: dict, digits: int = 4) -> str:
    """Canonical JSON of results: floats rounded to ``digits`` decimals, NaN/inf → null, sorted keys."""
    return json.dumps(rounded(metrics, digits), indent=1, sort_keys=True) + "\n"


def write_metrics(stage_dir: str | os.PathLike, metrics: dict, digits: int = 4) -> Path:
    """``stage_dir/metrics.json``: results only (no wall-clock figures), identical on a re-run with one seed."""
    return atomic_write_text(Path(stage_dir) / "metrics.json", dumps_metrics(metrics, digits))


def write_timing(stage_dir: str | os.PathLike, timing: dict) -> Path:
    """``stage_dir/timing.json``: wall-clock figures (seconds, speed-ups, real-time factors) — differ run to run."""
    return atomic_write_text(Path(stage_dir) / "timing.json", dumps_metrics(timing))


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """JSON content of ``path``, or ``default`` when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return default
