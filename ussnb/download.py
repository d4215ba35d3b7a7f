"""Downloads for users who are online: atomic, never leaving a 0-byte or partial file behind.

Every default path of the kit works offline; these helpers are only called when a file is missing and
the caller allowed downloading.
"""
from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Callable

from .errors import DownloadError
from .io import atomic_path


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    validate: Callable[[Path], None] | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Fetch ``url`` into ``dest`` atomically. ``validate(tmp_path)`` may raise to refuse the content.

    A 0-byte response is always refused. Existing non-empty ``dest`` is returned as is."""
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
                total = int((getattr(resp, "headers", None) or {}).get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    while chunk := resp.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as exc:
            raise DownloadError(f"cannot download {url}: {exc} (are you offline? put the file at {dest})") from exc
        if os.path.getsize(tmp) == 0:
            raise DownloadError(f"{url} returned an empty (0-byte) file; refusing to save it as {dest}")
        if validate is not None:
            validate(tmp)
    return dest
