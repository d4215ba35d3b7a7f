"""``ussnb lab [RUN_DIR]``: JupyterLab on the notebooks, with a finished run's outputs wired in.

For a run directory (:func:`prepare_lab`), JupyterLab's root is the run, and the student finds

- ``RUN_DIR/NN_stage/NN_stage.ipynb``: the notebooks as the pipeline executed them, outputs included;
- ``RUN_DIR/lab/NN_stage.ipynb``: fresh copies of the stage notebooks, parameterised for the run by papermill
  without executing anything (``prepare_only``): the run's parameters from its ``config.yaml``, resolved
  exactly as the pipeline resolves them (:func:`ussnb.pipeline.run_parameters`), ``INTERACTIVE=True`` (the
  widgets of :mod:`ussnb.widgets`), every earlier stage's folder the run's own. Each copy writes into
  ``RUN_DIR/lab/NN_stage/`` instead of the run's stage folder, so running it never overwrites the run's
  recorded results. Copies are made once; an edited copy is kept (``reset=True`` makes them anew).

Without a run directory JupyterLab opens the repository's ``notebooks/`` (their placeholder paths point at
``runs/dev``). :func:`serve` starts the server on 127.0.0.1 with a random token, waits until it answers, prints
the URL and stops it (and with it its kernels) on Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError, PipelineError, UssnbError
from .run import Run

LAB_FOLDER = "lab"
NOTEBOOKS_EXTRA = 'pip install -e ".[notebooks]"'


@dataclass
class LabSetup:
    root: Path                                    # JupyterLab's root folder
    run_dir: Path | None = None
    executed: list[Path] = field(default_factory=list)  # the run's executed notebooks
    fresh: list[Path] = field(default_factory=list)     # parameterised copies (INTERACTIVE=True)
    kept: list[Path] = field(default_factory=list)      # copies that existed already and were left alone
    runner: dict[str, Any] = field(default_factory=dict)  # the run's threads / device / precision
    start: str = ""                               # path (relative to root) the URL opens

    def describe(self) -> list[str]:
        """What the student finds, one line each (printed by ``ussnb lab``)."""
        if self.run_dir is None:
            return [f"notebooks: {self.root} (placeholder paths runs/dev/...; for a finished run use "
                    "`ussnb lab RUN_DIR`)"]
        lines = [f"run: {self.run_dir}"]
        if self.executed:
            lines.append("executed by the pipeline (outputs kept; re-running one writes into the run):")
            lines += [f"  {p.relative_to(self.root)}" for p in self.executed]
        lines.append(f"fresh copies for this run (INTERACTIVE=True, widgets on; they write into "
                     f"{LAB_FOLDER}/NN_stage/; 01 and 04 resume the run's finished training):")
        lines += [f"  {p.relative_to(self.root)}" + ("  (kept from an earlier `ussnb lab`; --reset makes it anew)" if p in self.kept else "")
                  for p in self.fresh]
        return lines


def prepare_lab(run_dir: str | os.PathLike | None = None, *, notebooks_dir: str | os.PathLike | None = None,
                reset: bool = False) -> LabSetup:
    """Lay out what JupyterLab opens (see the module notes). A folder that is not a run the pipeline made
    (no ``config.yaml``, or no executed stage notebook) → :class:`PipelineError` saying how to make one."""
    from .pipeline import default_notebooks_dir, run_parameters

    if run_dir is None:
        root = Path(notebooks_dir) if notebooks_dir else default_notebooks_dir()
        return LabSetup(root=root.resolve())
    import papermill as pm

    run_dir = Path(run_dir).resolve()
    stages, resolved, runner = run_parameters(run_dir, notebooks_dir)  # no folder / no config.yaml: says so
    run = Run(run_dir)
    executed = [run.stage(s.key) / f"{s.name}.ipynb" for s in stages]
    if not any(p.is_file() for p in executed):
        raise PipelineError(f"{run_dir} has a config.yaml but no executed stage notebook (NN_stage/NN_stage.ipynb): "
                            f"run the pipeline into it first (`ussnb pipeline --run-dir {run_dir}`)")
    lab = run_dir / LAB_FOLDER
    lab.mkdir(exist_ok=True)
    setup = LabSetup(root=run_dir, run_dir=run_dir, runner=runner, executed=[p for p in executed if p.is_file()])
    for stage in stages:
        target = lab / stage.notebook.name
        setup.fresh.append(target)
        if target.is_file() and not reset:
            setup.kept.append(target)
            continue
        values = dict(resolved[stage.name])
        own = lab / stage.name  # the copy's outputs: never the run's own stage folder
        if stage.key in TRAINED_STAGES and run.has(stage.key) and not own.exists():
            _seed_training(run.stage(stage.key), own)
        values["stage_dir"] = str(own)
        if f"{stage.key}_dir" in values:
            values[f"{stage.key}_dir"] = str(own)
        if "INTERACTIVE" in stage.parameters:
            values["INTERACTIVE"] = True
        pm.execute_notebook(str(stage.notebook), str(target), parameters=values, prepare_only=True,
                            kernel_name="python3", progress_bar=False, log_output=False)
    if setup.fresh:  # the URL opens the first fresh copy, the file browser beside it on lab/
        setup.start = str(setup.fresh[0].relative_to(run_dir))
    return setup


TRAINED_STAGES = ("sed", "training")  # stages whose fresh copy starts from the run's finished training


def _seed_training(src: Path, dst: Path) -> None:
    """Copy a training stage's checkpoints and records (``*.pt``, ``*.json``; not the notebook, figures or the
    ``.done`` marker) into the fresh copy's folder, so that running the copy resumes the finished training
    instead of training again (the 01 tagger and the 04 separator: minutes to an hour on 2 cores)."""
    import shutil

    for f in src.rglob("*"):
        if f.is_file() and f.suffix in (".pt", ".json") and f.name != ".done":
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_jupyterlab() -> None:
    """JupyterLab and the widgets' lab extension (ipywidgets ≥ 8 ships ``jupyterlab_widgets``) are installed,
    else a :class:`UssnbError` with the install command."""
    missing = [m for m in ("jupyterlab", "ipywidgets", "jupyterlab_widgets") if importlib.util.find_spec(m) is None]
    if missing:
        raise UssnbError(f"JupyterLab with widgets is not installed (missing: {', '.join(missing)}): "
                         f"{NOTEBOOKS_EXTRA}")


def lab_command(root: Path, port: int) -> list[str]:
    """The JupyterLab command line: bound to 127.0.0.1, no port fallback (the printed URL must be right),
    no browser of its own, no online news or update checks. The token comes from ``JUPYTER_TOKEN`` (not on
    the command line, where other users of the machine could read it). As root (a container) ``--allow-root``."""
    return [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.open_browser=False",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--ServerApp.log_level=WARN"] + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])


def lab_url(port: int, token: str, start: str = "") -> str:
    return f"http://127.0.0.1:{port}/lab" + (f"/tree/{start}" if start else "") + f"?token={token}"


def wait_ready(port: int, token: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the server answers ``/api/status`` (or its process ended, or ``timeout``: :class:`UssnbError`)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/status"
    while True:
        if process.poll() is not None:
            raise UssnbError(f"JupyterLab exited with status {process.returncode} before it was ready "
                             f"(port {port} taken? see its messages above)")
        try:
            req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise UssnbError(f"JupyterLab did not answer on port {port} within {timeout:.0f} s")
        time.sleep(0.3)


def serve(setup: LabSetup, *, port: int | None = None, threads: int | None = None, open_browser: bool = False,
          ready_timeout: float = 120.0, echo: Callable[[str], None] = print) -> int:
    """Run JupyterLab for ``setup`` until Ctrl-C / SIGTERM; returns its exit status. The kernels get the
    pipeline's kernel environment (:func:`ussnb.pipeline.kernel_env`: this ``ussnb`` first on the path, the
    data root, the run's threads / device / precision)."""
    from .pipeline import kernel_env
    from .runtime import resolve_threads

    check_jupyterlab()
    port = port or free_port()
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    token = secrets.token_hex(24)
    n_threads = resolve_threads(threads if threads is not None else setup.runner.get("threads"))
    device = setup.runner.get("device")
    env = os.environ | kernel_env(n_threads, device, setup.runner.get("precision")) | {"JUPYTER_TOKEN": token}
    process = subprocess.Popen(lab_command(setup.root, port), env=env, cwd=setup.root, stdin=subprocess.DEVNULL)

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        wait_ready(port, token, process, ready_timeout)
        url = lab_url(port, token, setup.start)
        for line in setup.describe():
            echo(line)
        echo(f"JupyterLab: {url}")
        echo("(127.0.0.1 only; stop with Ctrl-C)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(process)


def _stop(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM (JupyterLab then shuts its kernels down), SIGKILL if it does not end within ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
