"""The Debian packages the kit needs, read from ``ussnb/resources/apt-packages.txt``.

That plain file is the single list: the Makefile's ``install-system`` reads it with awk, ``ussnb doctor`` and the
starter recipe read it here. Standard library only, so it works before anything is installed.
"""
from __future__ import annotations

import ctypes.util
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LIST_FILE = Path(__file__).resolve().parent / "resources" / "apt-packages.txt"
GROUPS = ("core", "starter", "browser")  # browser: only the real-browser test needs it


@dataclass(frozen=True)
class AptPackage:
    name: str
    group: str   # "core", "starter" or "browser"
    marker: str  # a path the package ships, "bin:PROGRAM" or "lib:SONAME"
    purpose: str

    def installed(self) -> bool:
        """Whether the package's marker is present (a file, a program on PATH, or a loadable library)."""
        kind, _, value = self.marker.partition(":")
        if kind == "bin" and value:
            return shutil.which(value) is not None
        if kind == "lib" and value:
            stem = value.removeprefix("lib").split(".so")[0]
            return ctypes.util.find_library(stem) is not None or _dpkg_installed(self.name)
        return Path(self.marker).exists()


def _dpkg_installed(name: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True)
    return out.returncode == 0 and "install ok installed" in out.stdout


def read_list(path: Path = LIST_FILE) -> list[AptPackage]:
    """Every package of the list, in file order. A malformed line raises ``ValueError`` naming it."""
    packages = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line, _, comment = raw.partition("#")
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or fields[1] not in GROUPS:
            raise ValueError(f"{path}:{number}: expected 'NAME GROUP MARKER' with GROUP in {GROUPS}: {raw!r}")
        packages.append(AptPackage(fields[0], fields[1], fields[2], comment.strip()))
    return packages


def apt_packages(group: str | None = None) -> list[str]:
    """Names of the listed packages (of one group, or all)."""
    return [p.name for p in read_list() if group is None or p.group == group]


def missing(names: list[str] | None = None) -> list[str]:
    """Listed packages (all, or those named) that are not installed."""
    return [p.name for p in read_list() if (names is None or p.name in names) and not p.installed()]


def install_command(names: list[str]) -> str:
    """The exact shell line that installs ``names``."""
    return "sudo apt-get install -y --no-install-recommends " + " ".join(names)
