"""``ussnb doctor``: is this machine ready to run the kit? Lists what is missing with the exact command to fix it.

Checks, in order: Python, the Debian packages of ``ussnb/resources/apt-packages.txt``, the Python dependencies
declared by the package, the torch build and thread settings, a Jupyter kernel for the pipeline, the starter
dataset, and the optional extras (pretrained weights, AudioSet metadata, ESC-50). Only the standard library is
imported at module level, so the doctor runs before anything is installed (``python3 -m ussnb.cli doctor``).

Exit status (:func:`run`): 0 when everything *required* is present, 1 otherwise. Optional items only inform.
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import system_packages

ROOT = Path(__file__).resolve().parents[1]
PYTHON_OK = (3, 11)
TORCH_VERSION = "2.13.0"


@dataclass
class Check:
    section: str
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""          # the exact command that fixes it
    required: bool = True  # False: informs only


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, *args, **kwargs) -> Check:
        self.checks.append(Check(*args, **kwargs))
        return self.checks[-1]

    @property
    def missing_required(self) -> list[Check]:
        return [c for c in self.checks if c.required and not c.ok]

    def fixes(self, required: bool = True) -> list[str]:
        """The distinct fix commands of the failed required (or optional) checks, in order."""
        out: list[str] = []
        for c in self.checks:
            if not c.ok and c.required == required and c.fix and c.fix not in out:
                out.append(c.fix)
        return out


# --------------------------------------------------------------------------------------------------------
def _check_python(report: Report) -> None:
    v = sys.version_info
    report.add("python", f"Python {v.major}.{v.minor}.{v.micro}", (v.major, v.minor) == PYTHON_OK,
               sys.executable, "use Python 3.11 (pyproject: requires-python >=3.11,<3.12)")


def _check_system(report: Report) -> None:
    packages = system_packages.read_list()
    missing = [p.name for p in packages if not p.installed()]
    # the browser group serves the real-browser test only: it informs, it is not required
    optional = {p.name for p in packages if p.group == "browser"}
    needed = [m for m in missing if m not in optional]
    fix = system_packages.install_command(needed) if needed else ""
    if needed and hasattr(os, "geteuid") and os.geteuid() == 0:
        fix = "make install-system"
    for p in packages:
        report.add("system", p.name, p.name not in missing, f"{p.group}: {p.purpose}",
                   system_packages.install_command([p.name]) if p.name in optional else fix,
                   required=p.name not in optional)


def _declared_requirements() -> list[str]:
    """Requirement strings of ussnb and its ``all`` extra: from the installed metadata, else pyproject.toml."""
    try:
        reqs = md.requires("ussnb") or []
        reqs = [r for r in reqs if "extra ==" not in r or re.search(r"extra == ['\"](notebooks|eval|dev)['\"]", r)]
        if reqs:
            return [r.split(";")[0].strip() for r in reqs]
    except md.PackageNotFoundError:
        pass
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return list(project["dependencies"]) + [r for k in ("notebooks", "eval", "dev") for r in extras.get(k, [])]


def _satisfied(req: str) -> tuple[bool, str]:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", req)
    name, spec = match.group(1), match.group(3).split("#")[0].strip()
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        return False, "not installed"
    if not spec:
        return True, have
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # pip vendors packaging; without it only presence is checked
        return True, have
    return SpecifierSet(spec).contains(have, prereleases=True), f"{have} (wants {spec})"


def _check_python_packages(report: Report) -> None:
    installed = True
    try:
        md.version("ussnb")
    except md.PackageNotFoundError:
        installed = False
    report.add("python packages", "ussnb", installed, "installed" if installed else "not installed",
               "make install-python")
    for req in _declared_requirements():
        name = re.match(r"\s*([A-Za-z0-9_.\-]+)", req).group(1)
        if name == "ussnb":
            continue
        ok, detail = _satisfied(req)
        fix = "pip install torch==2.13.0" if name == "torch" else "make install-python"
        report.add("python packages", name, ok, detail, fix)


def _check_torch(report: Report) -> None:
    if importlib.util.find_spec("torch") is None:
        report.add("torch", "torch build", False, "torch is not installed", f"pip install torch=={TORCH_VERSION}")
        return
    import torch

    from .runtime import available_cores, thread_report

    cuda = torch.version.cuda
    build = f"{torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU build'})"
    report.add("torch", "torch build", torch.__version__.split("+")[0] == TORCH_VERSION, build,
               f"pip install torch=={TORCH_VERSION}")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        report.add("torch", "CUDA devices", True, names, required=False)
    else:
        report.add("torch", "CUDA devices", True, "none (everything runs on the CPU)", required=False)
    report.add("torch", "bf16 on this CPU", True,
               "AMX/AVX-512 bf16 present" if _cpu_has("amx_bf16") or _cpu_has("avx512_bf16") else "no bf16 units",
               required=False)
    import numpy  # noqa: F401  (loads the BLAS pool, so its default size shows)

    from .runtime import resolve_threads

    info = thread_report()
    report.add("torch", "threads", True,
               f"{available_cores()} core(s) available; defaults here: torch {info['intra_op']} intra-op + "
               f"{info['inter_op']} inter-op, BLAS {info['blas']}; the kit sets torch {resolve_threads(None)} "
               "intra-op + 1 inter-op, BLAS 1 (--threads N / preset threads:)", required=False)


def _cpu_has(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _check_kernel(report: Report) -> None:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
        ok = "python3" in specs
        detail = "python3 kernel at " + specs["python3"] if ok else f"kernels: {', '.join(specs) or 'none'}"
    except Exception as exc:  # jupyter_client missing or broken
        ok, detail = False, f"jupyter_client unusable: {exc}"
    report.add("pipeline", "Jupyter python3 kernel", ok, detail, "make install-python")
    nb = ROOT / "notebooks"
    count = len(list(nb.glob("[0-9][0-9]_*.ipynb"))) if nb.is_dir() else 0
    report.add("pipeline", "stage notebooks", count > 0, f"{count} in {nb}", "git checkout -- notebooks")


def _check_data(report: Report) -> None:
    from .paths import audioset_meta_dir, data_root, esc50_dir, weights_dir

    root = data_root()
    starter = root / "starter" / ".complete"
    report.add("data", "starter dataset", starter.is_file(),
               f"prepared in {starter.parent.resolve()}" if starter.is_file() else f"not yet in {root.resolve()}",
               "ussnb data prepare starter", required=False)
    try:
        probe = root if root.exists() else root.resolve().parent
        free = shutil.disk_usage(probe).free / 2**30
        report.add("data", "free disk space", free >= 1.5, f"{free:.1f} GiB free at {probe.resolve()} "
                   "(the starter set needs ~1 GiB)", "free some space or set USSNB_DATA to a larger disk")
    except OSError:
        pass
    weights = weights_dir()
    mn04 = weights / "mn04_as_mAP_432.pt"
    report.add("optional", "EfficientAT mn04 weights", mn04.is_file(),
               str(mn04) if mn04.is_file() else f"not in {weights} (tagger=efficientat-mn04 downloads it when online)",
               f"put mn04_as_mAP_432.pt into {weights} (or set USSNB_WEIGHTS_DIR)", required=False)
    meta = audioset_meta_dir()
    ok = meta is not None and (meta / "ontology.json").is_file() and (meta / "class_labels_indices.csv").is_file()
    report.add("optional", "AudioSet metadata", ok,
               str(meta) if ok else "not configured: the packaged starter mini-ontology is used",
               "set USSNB_AUDIOSET_META to a folder with ontology.json + class_labels_indices.csv", required=False)
    esc = esc50_dir()
    ok = esc is not None and (esc / "esc50.csv").is_file()
    report.add("optional", "ESC-50", ok, str(esc) if ok else "not configured (the esc50 benchmarks are skipped)",
               "set USSNB_ESC50_DIR to an ESC-50 folder with esc50.csv and audio/", required=False)


def diagnose() -> Report:
    report = Report()
    for step in (_check_python, _check_system, _check_python_packages, _check_torch, _check_kernel, _check_data):
        try:
            step(report)
        except Exception as exc:  # a broken dependency must not stop the rest of the diagnosis
            report.add(step.__name__.removeprefix("_check_"), "check", False, f"could not check: {exc!r}")
    return report


def format_report(report: Report, *, verbose: bool = False) -> str:
    lines, section = [], None
    for c in report.checks:
        if not verbose and c.ok and c.section == "python packages":
            continue
        if c.section != section:
            section = c.section
            lines.append(f"{section}:")
        mark = "ok     " if c.ok else ("MISSING" if c.required else "absent ")
        lines.append(f"  {mark} {c.name:30s} {c.detail}")
    if not verbose:
        n_ok = sum(c.ok for c in report.checks if c.section == "python packages")
        lines.append(f"python packages: {n_ok} more ok (`ussnb doctor --all` lists them)")
    bad = report.missing_required
    if bad:
        lines.append(f"\n{len(bad)} required item(s) missing. To fix, run:")
        lines += [f"  {fix}" for fix in report.fixes(required=True)]
    else:
        lines.append("\nEverything required is present.")
    optional = report.fixes(required=False)
    if optional:
        lines.append("Optional:")
        lines += [f"  {fix}" for fix in optional]
    return "\n".join(lines)


def run(verbose: bool = False) -> int:
    report = diagnose()
    print(format_report(report, verbose=verbose))
    return 1 if report.missing_required else 0
