"""Set-up cannot silently lose a system package: one list, read by Make, the doctor and the starter recipe."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ussnb import doctor, system_packages
from ussnb.cli import main
from ussnb.data.recipes import starter
from ussnb.data.recipes.starter import requirements

REPO = Path(__file__).resolve().parents[1]


def _make_n_install_system() -> str:
    proc = subprocess.run(["make", "-n", "install-system"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_apt_line_holds_every_declared_package():
    out = _make_n_install_system()
    line = next(ln for ln in out.splitlines() if "apt-get install" in ln)
    names = set(line.split("--no-install-recommends", 1)[1].replace(";", " ").split())
    declared = set(starter.STARTER_APT_PACKAGES) | set(system_packages.apt_packages())
    assert declared <= names, f"missing from `make install-system`: {sorted(declared - names)}"
    assert {"hydrogen-drumkits", "asterisk-core-sounds-en-g722", "ffmpeg", "libsndfile1"} <= names


def test_starter_recipe_reads_the_same_list():
    assert set(system_packages.apt_packages("starter")) <= set(starter.STARTER_APT_PACKAGES)
    assert len(system_packages.apt_packages("starter")) >= 9


def test_malformed_list_line_is_named(tmp_path):
    bad = tmp_path / "apt.txt"
    bad.write_text("ffmpeg core bin:ffmpeg\nbroken-line-without-group\n")
    with pytest.raises(ValueError, match=r"apt.txt:2"):
        system_packages.read_list(bad)


def test_missing_package_marker_kinds(tmp_path):
    assert system_packages.AptPackage("x", "core", "bin:sh", "").installed()
    assert not system_packages.AptPackage("x", "core", "bin:no-such-program-ussnb", "").installed()
    assert system_packages.AptPackage("x", "core", str(tmp_path), "").installed()
    assert not system_packages.AptPackage("x", "core", str(tmp_path / "nope"), "").installed()


def test_doctor_names_a_missing_package_and_its_fix(monkeypatch, capsys):
    real = system_packages.AptPackage.installed
    monkeypatch.setattr(system_packages.AptPackage, "installed",
                        lambda self: False if self.name == "klettres-data" else real(self))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: the exact sudo line is printed
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"MISSING\s+klettres-data", out)
    assert "sudo apt-get install -y --no-install-recommends klettres-data" in out


def test_doctor_passes_when_everything_required_is_here(monkeypatch, capsys):
    monkeypatch.setattr(system_packages.AptPackage, "installed", lambda self: True)
    report = doctor.diagnose()
    problems = [f"{c.section}/{c.name}: {c.detail}" for c in report.missing_required]
    assert not problems, problems
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Everything required is present" in out and "torch build" in out and "threads" in out


def test_doctor_and_cli_import_no_third_party_module():
    """`python3 -m ussnb.cli doctor` must work before anything is installed."""
    code = ("import sys, ussnb.cli, ussnb.doctor, ussnb.system_packages, ussnb.runtime\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'torch', 'yaml', 'scipy', 'packaging'})\n"
            "print(','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_prepare_install_flag_exists_and_advises_sudo_when_not_root(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("USSNB_DATA", str(tmp_path))
    monkeypatch.setattr(requirements, "_package_present", lambda package: package != "lmms-common")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code = main(["data", "prepare", "starter", "--install"])
    err = capsys.readouterr().err
    assert code == 1
    assert "lmms-common" in err and "sudo apt-get install" in err
    assert "Traceback" not in err


def test_missing_requirements_advice_names_commands_that_exist(monkeypatch):
    monkeypatch.setattr(requirements, "_package_present", lambda package: package != "sonic-pi-samples")
    with pytest.raises(Exception) as info:
        starter.check_requirements()
    message = str(info.value)
    assert "ussnb data prepare starter --install" in message
    # every `ussnb ...` command the advice names must parse
    from ussnb.cli import build_parser

    for cmd in re.findall(r"`(ussnb [^`]+)`", message):
        build_parser().parse_args(cmd.split()[1:])
