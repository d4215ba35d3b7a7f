"""download_file: atomic (one helper, ussnb.io), refuses empty or invalid content, leaves no temporary file."""
from __future__ import annotations

import pytest

from ussnb.download import download_file
from ussnb.errors import DownloadError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_download_is_atomic_and_validated(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights" * 100)
    dest = tmp_path / "out" / "w.pt"
    assert download_file(src.as_uri(), dest, progress=False) == dest
    assert dest.read_bytes() == src.read_bytes() and _leftovers(dest.parent) == []
    src.write_bytes(b"changed")
    assert download_file(src.as_uri(), dest, progress=False).read_bytes() == b"weights" * 100  # kept as is

    def refuse(path):
        assert path.read_bytes() == b"changed"  # the content is checked before it becomes dest
        raise DownloadError("checksum mismatch")

    other = tmp_path / "out" / "v.pt"
    with pytest.raises(DownloadError, match="checksum"):
        download_file(src.as_uri(), other, validate=refuse, progress=False)
    assert not other.exists() and _leftovers(other.parent) == []


def test_empty_and_unreachable_downloads_are_refused(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(DownloadError, match="0-byte"):
        download_file(empty.as_uri(), tmp_path / "e.pt", progress=False)
    with pytest.raises(DownloadError, match="are you offline"):
        download_file((tmp_path / "missing.bin").as_uri(), tmp_path / "m.pt", progress=False)
    assert not (tmp_path / "e.pt").exists() and not (tmp_path / "m.pt").exists() and _leftovers(tmp_path) == []
