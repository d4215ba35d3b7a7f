"""Run the notebooks as one reproducible pipeline with papermill.

``run_pipeline("cpu", "runs/cpu")`` executes ``notebooks/NN_*.ipynb`` in order. Each stage gets its own folder
``runs/cpu/NN_stage/`` (parameter ``stage_dir``), the folders of the stages before it (``data_dir``,
``sed_dir``, ...), ``INTERACTIVE=False``, and those preset parameters its tagged ``parameters`` cell declares.
Parameter names are validated against the notebooks before anything runs; the fully resolved parameters go
to ``runs/cpu/config.yaml``. A finished stage leaves a ``.done`` marker holding the hash of its parameters, so
re-running skips it (nothing is lost on interruption) unless its parameters changed or ``force`` is given.
A failed stage keeps its executed notebook and stops the run with a message naming it.

``stage_dirs`` takes upstream stage folders from another run (``{"data": "runs/a/00_data", ...}``): such a
stage is never run here — it must be done there with the very parameters this run gives it — and the stages
run after it record its ``.done`` digest in their ``.upstream.json``, so they re-run when it is redone.
``ussnb sweep`` shares unchanged upstream stages between its arms this way (:mod:`ussnb.sweep`).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import PipelineError
from .io import short_hash
from .config import SECTIONS, STAGE_SECTION, section_fields
from .run import STAGES, Run

log = logging.getLogger(__name__)

RESERVED = {"stage_dir", "run_dir", "INTERACTIVE"} | {f"{key}_dir" for _, key in STAGES}
# settings of the runner itself (not notebook parameters): preset keys or ``ussnb pipeline`` options
RUNNER_SETTINGS = {"threads", "device", "precision"}
PROGRESS_FILE = ".progress.json"
UPSTREAM_FILE = ".upstream.json"  # digests of the shared upstream stages a stage was run on (stage_dirs)


@dataclass
class Stage:
    name: str
    key: str
    notebook: Path
    parameters: dict[str, dict]  # name -> papermill's inspection (inferred_type_name, default, help)


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source checkout (the kit is meant to be used from a clone)."""
    here = Path(__file__).resolve().parents[1] / "notebooks"
    if here.is_dir():
        return here
    cwd = Path.cwd() / "notebooks"
    if cwd.is_dir():
        return cwd
    raise PipelineError("cannot find the notebooks/ folder; pass notebooks_dir (run from the repository)")


def available_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ussnb.presets").iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A preset by name (``smoke``, ``cpu``, ``paper``, ``zero-shot``) or a YAML file path, as a flat mapping:
    a section's fields become ``section.name`` keys (they reach only that section's stage), top-level names stay
    as they are (they reach every stage declaring them). See :mod:`ussnb.config`."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    else:
        try:
            text = resources.files("ussnb.presets").joinpath(f"{name_or_path}.yaml").read_text()
        except FileNotFoundError:
            raise PipelineError(
                f"unknown preset {name_or_path!r}; available: {', '.join(available_presets())} (or a .yaml path)"
            ) from None
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise PipelineError(f"preset {name_or_path!r} must be a mapping of parameter: value")
    data.pop("description", None)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise PipelineError(f"preset {name_or_path!r}: section '{key}' must be a mapping of parameter: value")
            out.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            out[key] = value
    return out


def section_values(params: Mapping[str, Any], section: str) -> dict[str, Any]:
    """What one section's stage receives of flat ``params`` (top-level names and ``section.name`` keys, later
    keys winning) — e.g. the ``train`` values ``python -m ussnb.train --preset cpu`` trains with."""
    names = set(section_fields(section))
    out = {}
    for key, value in params.items():
        sec, _, name = key.rpartition(".")
        if (sec == section or not sec) and name in names:
            out[name] = value
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["steps=100", "tagger=efficientat-mn04"]`` → typed dict (values parsed as YAML scalars)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise PipelineError(f"override {item!r} must look like key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def discover_stages(notebooks_dir: str | os.PathLike | None = None) -> list[Stage]:
    import papermill as pm

    folder = Path(notebooks_dir) if notebooks_dir else default_notebooks_dir()
    stages = []
    for name, key in STAGES:
        nb = folder / f"{name}.ipynb"
        if nb.is_file():
            params = pm.inspect_notebook(str(nb))
            if not params:
                raise PipelineError(f"{nb} has no tagged 'parameters' cell")
            stages.append(Stage(name, key, nb, dict(params)))
    if not stages:
        raise PipelineError(f"no stage notebooks found in {folder}")
    return stages


def select_stages(stages: list[Stage], only: Iterable[str] | None) -> list[Stage]:
    """Stages whose name or number prefix is in ``only`` (all if None), always in pipeline order."""
    if not only:
        return stages
    wanted = {str(s) for s in only}
    chosen = [s for s in stages if s.name in wanted or s.name[:2] in wanted or s.key in wanted]
    unknown = wanted - {s.name for s in chosen} - {s.name[:2] for s in chosen} - {s.key for s in chosen}
    if unknown:
        raise PipelineError(f"unknown stage(s) {sorted(unknown)}; stages: {', '.join(s.name for s in stages)}")
    return chosen


def _targets(key: str, stages: list[Stage]) -> list[Stage]:
    """The stages a flat parameter key reaches: ``section.name`` → that section's stage if it declares the name;
    ``name`` → every stage declaring it."""
    section, _, name = key.rpartition(".")
    if section:
        return [s for s in stages if STAGE_SECTION.get(s.key) == section and name in s.parameters]
    return [s for s in stages if name in s.parameters]


def resolve(stages: list[Stage], params: Mapping[str, Any], run_dir: Path,
            stage_dirs: Mapping[str, str | os.PathLike] | None = None) -> dict[str, dict[str, Any]]:
    """Per stage the parameters it will receive. Unknown names → :class:`PipelineError` listing them.
    ``stage_dirs``: stage folders taken from elsewhere (keys: stage keys), see :func:`run_pipeline`."""
    declared = set().union(*(s.parameters for s in stages))
    bad_sections = sorted({k.rpartition(".")[0] for k in params if "." in k} - set(SECTIONS))
    if bad_sections:
        raise PipelineError(f"unknown section(s) {bad_sections} in parameter names; sections: {', '.join(SECTIONS)}")
    unknown = sorted(k for k in params if not _targets(k, stages))
    if unknown:
        raise PipelineError(
            f"unknown parameter(s) {unknown}: no notebook declares them (a `section.name` key must name a "
            f"parameter of that section's stage). Known: {', '.join(sorted(declared - RESERVED))}"
        )
    reserved = sorted(k for k in params if k.rpartition(".")[2] in RESERVED)
    if reserved:
        raise PipelineError(f"parameter(s) {reserved} are set by the pipeline itself")
    resolved = {}
    run = Run(run_dir, stage_dirs)
    for stage in stages:
        values: dict[str, Any] = {}
        for name, key in STAGES:
            folder = f"{key}_dir"
            if folder in stage.parameters:
                values[folder] = str(run.stage(key).resolve())
            if name == stage.name:
                break
        values["stage_dir"] = str(run.stage(stage.key).resolve())
        if "run_dir" in stage.parameters:
            values["run_dir"] = str(run_dir.resolve())
        if "INTERACTIVE" in stage.parameters:
            values["INTERACTIVE"] = False
        for k, v in params.items():  # in order: a later key (an override) wins over an earlier one (the preset)
            if _targets(k, [stage]):
                values[k.rpartition(".")[2]] = v
        resolved[stage.name] = values
    return resolved


def _hash(values: Mapping[str, Any]) -> str:
    return short_hash(values, 16)


def shared_stage_keys(stage_dirs: Mapping[str, str | os.PathLike] | None) -> dict[str, Path]:
    """``stage_dirs`` with stage names (``00_data``) or keys (``data``) → ``{key: folder}``."""
    from .run import STAGE_NAMES

    out = {}
    by_name = {name: key for key, name in STAGE_NAMES.items()}
    for k, v in (stage_dirs or {}).items():
        key = by_name.get(k, k)
        if key not in STAGE_NAMES:
            raise PipelineError(f"stage_dirs: unknown stage {k!r}; stages: {', '.join(STAGE_NAMES)}")
        out[key] = Path(v)
    return out


def stage_digest(stage: Stage, values: Mapping[str, Any], precision: str = "fp32") -> str:
    """What a stage's ``.done`` marker holds: the hash of its parameters, its notebook and a non-fp32 precision."""
    return _hash(dict(values) | {"notebook": _file_hash(stage.notebook)}
                 | ({"precision": precision} if precision != "fp32" else {}))


def run_pipeline(
    preset: str = "cpu",
    run_dir: str | os.PathLike = "runs/cpu",
    *,
    overrides: Mapping[str, Any] | None = None,
    stages: Iterable[str] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    force: bool = False,
    kernel_name: str = "python3",
    log_output: bool = False,
    threads: int | None = None,
    status_interval: float | None = None,
    device: str | None = None,
    precision: str | None = None,
    stage_dirs: Mapping[str, str | os.PathLike] | None = None,
) -> Path:
    """Execute the stage notebooks in order; returns the run directory.

    ``stage_dirs``: upstream stage folders of another run to use instead of running those stages here (keys:
    stage keys or names); each must be done with the parameters this run gives it, else :class:`PipelineError`.

    ``threads``: torch threads of every notebook kernel (default: the preset's ``threads``, else the cores
    available; :mod:`ussnb.runtime`). ``device`` / ``precision`` (default: the preset's ``device`` /
    ``precision``, else auto / fp32) reach the kernels as ``USSNB_DEVICE`` / ``USSNB_PRECISION``; a precision
    other than fp32 is part of every stage's digest (its results differ). While a stage runs a status line shows cells done, elapsed time, an
    estimate from the stage's last recorded time, and the progress of its long loop (every ``status_interval``
    seconds; default 1 s on a terminal, 30 s otherwise).
    """
    from .runtime import check_precision, resolve_device, resolve_threads

    run_dir = Path(run_dir)
    params = load_preset(preset) | dict(overrides or {})
    n_threads = resolve_threads(threads if threads is not None else params.get("threads"))
    device = str(device if device is not None else params.get("device") or "auto")
    resolve_device(device)  # a CUDA-less machine asked for cuda: refused before anything runs
    precision = check_precision(precision if precision is not None else params.get("precision"), device)
    with kernel_environment(n_threads, device, precision):
        return _run(preset, params, run_dir, overrides, stages, notebooks_dir, force, kernel_name, log_output,
                    n_threads, status_interval, precision, shared_stage_keys(stage_dirs))


@contextlib.contextmanager
def kernel_environment(n_threads: int, device: str | None = "auto", precision: str | None = "fp32"):
    """:func:`kernel_env` set in ``os.environ`` while the block runs (restored after)."""
    env = kernel_env(n_threads, device, precision)
    previous = {k: os.environ.get(k) for k in (*env, "USSNB_PROGRESS_FILE")}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def kernel_env(threads: int, device: str | None = None, precision: str | None = None) -> dict[str, str]:
    """Environment of the notebook kernels the kit starts (the pipeline's, and ``ussnb lab``'s JupyterLab):
    the data root as an absolute path (kernels run in their notebook's folder, so a relative default
    ``./data`` must still mean the folder the command was started from), the very ``ussnb`` that runs the
    command first on ``PYTHONPATH`` (not whatever is installed), thread pools, device and precision."""
    from .paths import data_root
    from .runtime import device_env, thread_env

    package_root = str(Path(__file__).resolve().parents[1])
    return {"USSNB_DATA": str(data_root().resolve()),
            "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
            **thread_env(threads), **device_env(device, precision)}


def run_parameters(run_dir: str | os.PathLike, notebooks_dir: str | os.PathLike | None = None
                   ) -> tuple[list[Stage], dict[str, dict[str, Any]], dict[str, Any]]:
    """The stages, their parameters (:func:`resolve`) and the runner settings of a run the pipeline made,
    from its ``config.yaml``: what each stage notebook received, resolved again against the current notebooks
    (so a notebook's new parameter gets its default). Not a run → :class:`PipelineError` saying so."""
    run_dir = Path(run_dir)
    run = Run(run_dir)
    if not run_dir.is_dir():
        raise PipelineError(f"{run_dir}: no such folder (make a run with `ussnb pipeline --preset cpu "
                            f"--run-dir {run_dir}`)")
    if not run.config_path.is_file():
        raise PipelineError(f"{run_dir} is not a pipeline run directory: it has no {run.config_path.name} "
                            f"(make one with `ussnb pipeline --preset cpu --run-dir {run_dir}`)")
    try:
        config = yaml.safe_load(run.config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"{run.config_path}: unreadable ({exc})") from None
    if not isinstance(config, dict) or not isinstance(config.get("parameters", {}), dict):
        raise PipelineError(f"{run.config_path}: not a config written by `ussnb pipeline`")
    stages = discover_stages(notebooks_dir)
    params = config.get("parameters") or {}
    return stages, resolve(stages, params, run_dir), dict(config.get("runner") or {})


def execute_notebook(notebook: str | os.PathLike, output: str | os.PathLike, parameters: Mapping[str, Any], *,
                     cwd: str | os.PathLike, threads: int | None = None, kernel_name: str = "python3",
                     log_output: bool = False) -> Path:
    """Run one notebook outside the stage sequence (e.g. ``07_ablations`` by ``ussnb sweep``) with the kernels'
    environment of :func:`run_pipeline`; a failing cell → :class:`PipelineError` naming the kept notebook."""
    import papermill as pm

    from .runtime import resolve_threads

    output = Path(output)
    with kernel_environment(resolve_threads(threads)):
        try:
            pm.execute_notebook(str(notebook), str(output), parameters=dict(parameters), kernel_name=kernel_name,
                                cwd=str(cwd), progress_bar=False, log_output=log_output,
                                kernel_manager_class=_ipc_kernel_manager())
        except pm.PapermillExecutionError as exc:
            raise PipelineError(f"{Path(notebook).name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                                f"The executed notebook (with the error) is kept at {output}") from None
    return output


def _run(preset, params, run_dir: Path, overrides, stages, notebooks_dir, force, kernel_name, log_output,
         n_threads, status_interval, precision: str = "fp32", shared: Mapping[str, Path] | None = None) -> Path:
    import papermill as pm

    from .io import atomic_write_text
    from .progress import ENV_PROGRESS, StatusMonitor

    all_stages = discover_stages(notebooks_dir)
    chosen = select_stages(all_stages, stages)
    notebook_params = {k: v for k, v in params.items() if k not in RUNNER_SETTINGS}
    shared = dict(shared or {})
    resolved = resolve(all_stages, notebook_params, run_dir, shared)  # validate against every notebook, run only the chosen
    check_types(all_stages, notebook_params)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = Run(run_dir)
    config = {"preset": preset, "overrides": dict(overrides or {}), "parameters": notebook_params,
              "runner": {"threads": n_threads, "device": os.environ.get("USSNB_DEVICE"), "precision": precision}, "stages": {name: values for name, values in resolved.items()}}
    if shared:
        config["shared_stages"] = {key: str(path.resolve()) for key, path in shared.items()}
    atomic_write_text(run.config_path, yaml.safe_dump(config, sort_keys=False))
    print(f"[ussnb] preset {preset}: {len(chosen)} stage(s) into {run_dir}, {n_threads} torch thread(s) per kernel",
          flush=True)

    timings = _read_timings(run)
    upstream_ran = False  # once a stage re-runs, every later stage must too (its inputs changed)
    upstream: dict[str, str] = {}  # digests of the shared (external) stages read so far
    for stage in chosen:
        values = resolved[stage.name]
        stage_dir = Path(values["stage_dir"])
        marker = Run(run_dir, shared).done_marker(stage.name)
        digest = stage_digest(stage, values, precision)
        upstream_file = stage_dir / UPSTREAM_FILE
        if stage.key in shared:
            if not marker.is_file() or marker.read_text().strip() != digest:
                raise PipelineError(f"shared stage {stage.name} ({stage_dir}) is not done with the parameters this "
                                    "run gives it: run it in its own run first (it is never run from here)")
            upstream[stage.key] = digest
            print(f"[ussnb] {stage.name}: shared from {stage_dir}, done with the same parameters")
            continue
        same_upstream = _read_json(upstream_file) == upstream if upstream else True
        if (not force and not upstream_ran and marker.is_file() and marker.read_text().strip() == digest
                and same_upstream):
            log.info("stage %s already done with these parameters; skipping", stage.name)
            print(f"[ussnb] {stage.name}: done before with the same parameters, skipped")
            continue
        stage_dir.mkdir(parents=True, exist_ok=True)
        (stage_dir / "figures").mkdir(exist_ok=True)
        if marker.exists():
            marker.unlink()
        out_nb = stage_dir / stage.notebook.name
        print(f"[ussnb] {stage.name}: running {stage.notebook.name} -> {out_nb}", flush=True)
        progress_file = stage_dir / PROGRESS_FILE
        os.environ[ENV_PROGRESS] = str(progress_file)
        start = time.time()
        try:
            with StatusMonitor(stage.name, progress_file, lambda: _cells_done(out_nb),
                               expected=timings.get(stage.name), interval=status_interval):
                pm.execute_notebook(
                    str(stage.notebook), str(out_nb), parameters=values, kernel_name=kernel_name,
                    cwd=str(stage_dir), progress_bar=False, log_output=log_output, request_save_on_cell_execute=True,
                    kernel_manager_class=_ipc_kernel_manager(),
                )
        except pm.PapermillExecutionError as exc:
            raise PipelineError(
                f"stage {stage.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                f"The executed notebook (with the error) is kept at {out_nb}"
            ) from None
        except Exception as exc:
            raise PipelineError(f"stage {stage.name} could not run: {exc}; see {out_nb}") from exc
        elapsed = time.time() - start
        if not (stage_dir / "metrics.json").is_file():
            raise PipelineError(f"stage {stage.name} finished but wrote no metrics.json in {stage_dir}")
        if upstream:
            atomic_write_text(upstream_file, json.dumps(upstream, indent=1, sort_keys=True))
        elif upstream_file.exists():
            upstream_file.unlink()
        marker.write_text(digest)
        upstream_ran = True
        timings[stage.name] = round(elapsed, 1)
        atomic_write_text(run.timings_path, json.dumps(timings, indent=1))
        print(f"[ussnb] {stage.name}: finished in {elapsed:.1f} s", flush=True)
    return run_dir


def check_types(stages: list[Stage], params: Mapping[str, Any]) -> None:
    """Refuse values whose type does not fit the notebook's typed parameter (``steps: int = 2000``)."""
    problems = []
    for key, value in params.items():
        name = key.rpartition(".")[2]
        for stage in _targets(key, stages)[:1]:
            spec = stage.parameters[name]
            want = str(spec.get("inferred_type_name") or "").replace(" ", "")
            if not _fits(value, want):
                default = spec.get("default")
                problems.append(f"{key}={value!r} is not {want} (default {default}, in {stage.name})")
    if problems:
        raise PipelineError("wrong parameter type: " + "; ".join(problems))


def _fits(value: Any, want: str) -> bool:
    """Whether ``value`` (parsed from YAML) fits the annotation text ``want`` (``int``, ``float``, ``list[str]``,
    ``str|None``, ...). Unknown annotations accept anything."""
    if not want or want == "None":
        return True
    if want.lower().startswith(("union[", "optional[")) and want.endswith("]"):
        inner = want[want.index("[") + 1:-1].split(",")
        if want.lower().startswith("optional") and value is None:
            return True
        return any(_fits(value, a) for a in inner)
    alternatives = want.split("|")
    if len(alternatives) > 1:
        return any(_fits(value, a) for a in alternatives)
    base = want.split("[", 1)[0].lower()
    checks = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "list": lambda v: isinstance(v, (list, tuple)),
        "tuple": lambda v: isinstance(v, (list, tuple)),
        "dict": lambda v: isinstance(v, dict),
        "none": lambda v: v is None,
        "optional": lambda v: True,
    }
    check = checks.get(base)
    return True if check is None else check(value)


def _cells_done(notebook: Path) -> tuple[int, int]:
    """(code cells completed, code cells) of the notebook papermill is executing (saved after every cell)."""
    try:
        cells = [c for c in json.loads(notebook.read_text())["cells"] if c.get("cell_type") == "code"]
    except (OSError, ValueError, KeyError):
        return 0, 0
    done = sum(c.get("metadata", {}).get("papermill", {}).get("status") == "completed" for c in cells)
    return done, len(cells)


@functools.lru_cache(maxsize=1)
def _ipc_kernel_manager():
    """A kernel manager class whose kernels talk over local IPC sockets instead of TCP (so ipykernel has no
    reason to warn, once per stage, that TCP traffic is unencrypted). Made once, when first needed."""
    from jupyter_client.manager import AsyncKernelManager

    class IpcKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return IpcKernelManager


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def _read_timings(run: Run) -> dict:
    path = run.timings_path
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
