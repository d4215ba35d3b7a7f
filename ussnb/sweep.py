"""Ablation sweeps: the paper's tables (Kong et al. 2023, Tables 3-9) regenerated as pipeline runs.

A sweep is a YAML under ``ussnb/sweeps/`` (or any path)::

    name: table7
    title: anchor mining strategy
    paper_table: Table 7
    paper_text: "AudioSet SDRi: SED mining 5.57, in-clip random 3.94, out-clip random 5.90"
    parameter: anchors.anchor_strategy        # the flat pipeline key that varies
    reference: sed                            # the paper's default arm (its 5.57 row)
    arms:                                     # value, label, extra overrides (set), the paper's numbers
      - {value: sed, label: SED, paper: {audioset: 5.57}}
      ...
    metrics: [starter_pairs, esc50_pairs, zero_shot_unseen]

``run_sweep("table7", "sweep", "sweeps/t7", seeds=2)`` runs one pipeline per arm and seed into
``OUT/arms/<arm>-seed<S>/`` (stages 00-04 and 06; stage 05, hierarchical separation, is not needed). Arms share
their unchanged upstream stages through the runner's ``stage_dirs``: for every stage, the first arm whose
parameters of that stage *and of every stage before it* are the same runs it, the others read its folder — so
stages 00-01 run once and an arm re-runs from the first stage its parameter (or its seed) touches. Seeds set
``train.seed`` and — for the random mining strategies, whose anchors depend on it — ``anchors.mining_seed``. A killed sweep continues where it stopped: finished arms are
skipped (``arm.json``), a partial arm resumes through the stages' ``.done`` markers. Several processes started
with the same command share the arms (with ``--threads 1`` each, one per core): every arm runs under a lock in
``OUT/.locks/``, a process takes the first arm that is neither finished, nor held by another, nor waiting for
the upstream stages of an arm another process is running, and waits when there is none.

Results: ``OUT/table.json`` (``rows``: one per arm and seed — the varied value, each metric with its floor and
ceiling, minutes; ``summary``: per arm mean ± spread over seeds; the sentence) and ``OUT/table.md`` (ours beside
the paper's). Spread = sample standard deviation over seeds; a difference smaller than the larger spread of
the two arms is "within noise", and with one seed no ordering is claimed.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from .errors import PipelineError
from .io import atomic_write_text, file_lock, short_hash

ARM_FILE = "arm.json"
TABLE_JSON = "table.json"
TABLE_MD = "table.md"
SWEEP_FILE = "sweep.json"
LOCKS_DIR = ".locks"  # one lock per arm: processes started on one OUT share its arms
POLL_SECONDS = 15.0  # how often a process waiting for another's arm looks again
ABLATIONS_NOTEBOOK = "07_ablations"
SKIPPED_STAGE = "separation"  # stage 05 (hierarchical separation): no sweep metric needs it
PAPER_COLUMNS = {"audioset": "paper AudioSet", "fsdkaggle2018": "paper FSDKaggle2018"}


# ============================================================================================ definitions
@dataclass
class ArmSpec:
    value: Any
    label: str
    overrides: dict[str, Any]  # the varied parameter and the arm's extra ``set`` keys
    paper: dict[str, float] = field(default_factory=dict)


@dataclass
class Sweep:
    name: str
    title: str
    paper_table: str
    paper_text: str
    parameter: str
    arms: list[ArmSpec]
    reference: Any = None
    metrics: list[str] = field(default_factory=lambda: ["starter_pairs"])
    paper_best: Any = None
    paper_only: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "paper_table": self.paper_table,
                "paper_text": self.paper_text, "parameter": self.parameter, "reference": self.reference,
                "metrics": list(self.metrics), "paper_best": self.paper_best, "paper_only": self.paper_only,
                "arms": [{"value": a.value, "label": a.label, "overrides": a.overrides, "paper": a.paper}
                         for a in self.arms]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "sweep") -> "Sweep":
        missing = [k for k in ("name", "parameter", "arms") if k not in data]
        if missing:
            raise PipelineError(f"{source}: missing key(s) {missing}")
        arms = []
        for a in data["arms"]:
            if isinstance(a, Mapping) and "overrides" in a:  # the to_dict() form
                arms.append(ArmSpec(a["value"], str(a["label"]), dict(a["overrides"]), dict(a.get("paper") or {})))
                continue
            if not isinstance(a, Mapping):
                a = {"value": a}
            if "value" not in a:
                raise PipelineError(f"{source}: every arm needs a value, got {dict(a)}")
            overrides = {data["parameter"]: a["value"]} | dict(a.get("set") or {})
            arms.append(ArmSpec(a["value"], str(a.get("label", a["value"])), overrides,
                                {k: float(v) for k, v in (a.get("paper") or {}).items()}))
        labels = [a.label for a in arms]
        if len(set(labels)) != len(labels):
            raise PipelineError(f"{source}: arm labels must differ, got {labels}")
        unknown = [m for m in data.get("metrics", ["starter_pairs"]) if m not in METRICS]
        if unknown:
            raise PipelineError(f"{source}: unknown metric(s) {unknown}; metrics: {', '.join(METRICS)}")
        return cls(name=str(data["name"]), title=str(data.get("title", "")),
                   paper_table=str(data.get("paper_table", "")), paper_text=str(data.get("paper_text", "")),
                   parameter=str(data["parameter"]), arms=arms, reference=data.get("reference"),
                   metrics=list(data.get("metrics", ["starter_pairs"])), paper_best=data.get("paper_best"),
                   paper_only=list(data.get("paper_only") or []))


def available_sweeps() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("ussnb.sweeps").iterdir() if p.name.endswith(".yaml"))


def load_sweep(name_or_path: str | os.PathLike) -> Sweep:
    """A sweep by name (``table7``) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text, source = path.read_text(), str(path)
    else:
        try:
            text = resources.files("ussnb.sweeps").joinpath(f"{name_or_path}.yaml").read_text()
        except FileNotFoundError:
            raise PipelineError(f"unknown sweep {str(name_or_path)!r}; sweeps: {', '.join(available_sweeps())} "
                                "(or a .yaml path)") from None
        source = f"sweep {name_or_path}"
    data = yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise PipelineError(f"{source} must be a mapping")
    return Sweep.from_dict(data, source)


def select_arms(sweep: Sweep, chosen: Sequence[str] | None) -> Sweep:
    """The sweep with only the arms ``chosen`` (values or labels, e.g. ``["0.5", "2", "10 s"]``); the others stay
    in the table as the paper's rows, marked not run. ``None`` or empty: every arm."""
    if not chosen:
        return sweep

    def matches(arm: ArmSpec, text: str) -> bool:
        text = str(text).strip()
        if text.lower() in (str(arm.value).lower(), arm.label.lower()):
            return True
        try:
            return not isinstance(arm.value, (bool, str)) and float(text) == float(arm.value)
        except (TypeError, ValueError):
            return False

    unknown = [c for c in chosen if not any(matches(a, c) for a in sweep.arms)]
    if unknown:
        raise PipelineError(f"--arms {unknown[0]!r} is no arm of {sweep.name}; its arms: "
                            + ", ".join(f"{a.value} ({a.label})" for a in sweep.arms))
    keep = [a for a in sweep.arms if any(matches(a, c) for c in chosen)]
    skipped = [{"label": a.label, "paper": dict(a.paper), "note": "not run here (--arms)"}
               for a in sweep.arms if a not in keep]
    return Sweep(name=sweep.name, title=sweep.title, paper_table=sweep.paper_table, paper_text=sweep.paper_text,
                 parameter=sweep.parameter, arms=keep, reference=sweep.reference, metrics=list(sweep.metrics),
                 paper_best=sweep.paper_best, paper_only=list(sweep.paper_only) + skipped)


def list_sweeps() -> list[str]:
    """One line per packaged sweep: name, paper table, parameter and the paper's numbers (``ussnb sweep --list``)."""
    lines = []
    for name in available_sweeps():
        s = load_sweep(name)
        lines.append(f"{s.name:8s} {s.paper_table:9s} {s.parameter:24s} {s.title}")
        lines.append(f"{'':8s} paper: {s.paper_text}")
    return lines


# ============================================================================================ metrics
def _pairs(name: str) -> Callable[[Mapping], dict | None]:
    def get(m: Mapping) -> dict | None:
        b = m.get("benchmarks", {}).get(name) or {}
        if b.get("sdri_avg") is None:
            return None
        return {"value": b["sdri_avg"], "floor": b.get("trivial_sdri"), "ceiling": b.get("irm_sdri"),
                "n_items": b.get("n_items"), "n_classes": b.get("n_classes")}
    return get


def _esc50_pairs(m: Mapping) -> dict | None:
    """ESC-50 pairs: the class-average query where the run trained on ESC-50 classes; a starter-only run has no
    anchors of them, so then the query by example (stage 06's zero-shot part: other test recordings' mean)."""
    got = _pairs("esc50-pairs")(m)
    if got is not None:
        return got | {"query": "class average"}
    zs = (m.get("zero_shot") or {}).get("esc50-pairs")
    g = zs.get("seen") if isinstance(zs, Mapping) else None
    if g and g.get("n_items") and g.get("by_example") is not None:
        return {"value": g["by_example"], "floor": g.get("floor"), "ceiling": g.get("irm"), "n_items": g["n_items"],
                "n_classes": g.get("n_classes"), "query": "by example"}
    return None


def _zero_shot_unseen(m: Mapping) -> dict | None:
    """Unseen classes queried by example: ESC-50 pairs when there, else the starter pairs."""
    zs = m.get("zero_shot") or {}
    for name in ("esc50-pairs", "starter-pairs"):
        g = (zs.get(name) or {}).get("unseen") if isinstance(zs.get(name), Mapping) else None
        if g and g.get("n_items") and g.get("by_example") is not None:
            return {"value": g["by_example"], "floor": g.get("floor"), "ceiling": g.get("irm"),
                    "n_items": g["n_items"], "benchmark": name}
    return None


# name -> (description, extractor of stage 06's metrics.json) ; every value is SDRi in dB, per-class median
# then mean over classes, beside the x/2 floor and the IRM ceiling on the same mixtures
METRICS: dict[str, tuple[str, Callable[[Mapping], dict | None]]] = {
    "starter_pairs": ("starter-pairs SDRi, class-average query", _pairs("starter-pairs")),
    "esc50_pairs": ("esc50-pairs SDRi (class average, else by example)", _esc50_pairs),
    "zero_shot_unseen": ("unseen classes SDRi, query by example", _zero_shot_unseen),
}


def arm_metrics(evaluation: Mapping, names: Sequence[str]) -> dict[str, dict | None]:
    """``{metric: {"value", "floor", "ceiling", ...} | None}`` from stage 06's metrics.json."""
    return {name: METRICS[name][1](evaluation) for name in names}


# ============================================================================================ planning
@dataclass
class Arm:
    index: int
    spec: ArmSpec
    seed: int
    run_dir: Path
    overrides: dict[str, Any]
    shared: dict[str, Path]  # stage key -> folder of an earlier arm

    @property
    def title(self) -> str:
        return f"{self.spec.label} (seed {self.seed})"


def seed_overrides(seed: int, strategy: str | None = None) -> dict[str, int]:
    """What ``--seeds`` varies: the training seed, and the anchor-mining seed where the mining ``strategy`` draws
    at random (``sed`` anchors do not depend on it, so every seed of a ``sed`` arm shares one mining; stages 00-01
    keep their seeds)."""
    out = {"train.seed": int(seed)}
    if strategy is None or strategy != "sed":
        out["anchors.mining_seed"] = int(seed)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+-]+", "-", str(text)).strip("-").lower() or "arm"


def sweep_stages(all_stages) -> list:
    return [s for s in all_stages if s.key != SKIPPED_STAGE]


def plan_sweep(sweep: Sweep, preset: str, out: str | os.PathLike, *, seeds: int = 1,
               overrides: Mapping[str, Any] | None = None, notebooks_dir=None) -> list[Arm]:
    """The arms in running order (seed-major: every arm of seed 0 first) with the upstream stage folders each
    takes from an earlier arm. Two arms share a stage when their parameters of it and of every stage before it
    are equal; the first of them runs it."""
    from .pipeline import RESERVED, RUNNER_SETTINGS, discover_stages, load_preset, resolve

    if seeds < 1:
        raise PipelineError(f"--seeds must be at least 1, got {seeds}")
    out = Path(out)
    all_stages = discover_stages(notebooks_dir)
    stages = sweep_stages(all_stages)
    base = load_preset(preset) | dict(overrides or {})
    owners: dict[str, Path] = {}  # chain key of a stage -> run dir of the arm that runs it
    arms = []
    for seed in range(seeds):
        for spec in sweep.arms:
            strategy = (base | spec.overrides).get("anchors.anchor_strategy", "sed")
            arm_overrides = dict(overrides or {}) | seed_overrides(seed, strategy) | spec.overrides
            params = {k: v for k, v in (base | arm_overrides).items() if k not in RUNNER_SETTINGS}
            run_dir = out / "arms" / f"{_slug(spec.value)}-seed{seed}"
            resolved = resolve(all_stages, params, run_dir)
            chain, shared = [], {}
            for stage in stages:
                chain.append([stage.name, {k: v for k, v in resolved[stage.name].items() if k not in RESERVED}])
                owner = owners.setdefault(short_hash(chain, 16), run_dir)
                if owner != run_dir:
                    shared[stage.key] = owner / stage.name
            arms.append(Arm(len(arms), spec, seed, run_dir, arm_overrides, shared))
    return arms


# ============================================================================================ running
def _stage_minutes(arm: Arm) -> float | None:
    """Minutes of the stages this arm ran itself (its timings.json; shared stages are counted where they ran)."""
    try:
        timings = json.loads((arm.run_dir / "timings.json").read_text())
    except (OSError, ValueError):
        return None
    from .run import STAGE_NAMES

    own = [v for name, v in timings.items() if name not in {STAGE_NAMES[k] for k in arm.shared}]
    return round(sum(own) / 60, 2)


def _arm_key(arm: Arm, preset: str, stages) -> str:
    """What a finished arm was run with: preset, overrides, shared folders and the stage notebooks (an edited
    notebook re-runs the arm, whose stages then skip or re-run by their markers)."""
    from .pipeline import _file_hash

    return short_hash({"preset": preset, "overrides": arm.overrides,
                       "shared": {k: str(v) for k, v in sorted(arm.shared.items())},
                       "notebooks": {s.name: _file_hash(s.notebook) for s in stages}}, 16)


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def arm_row(arm: Arm, sweep: Sweep) -> dict:
    """The table row of a finished arm, from its stage 06 metrics.json and its timings."""
    evaluation = json.loads((arm.run_dir / "06_evaluation" / "metrics.json").read_text())
    row = {"arm": arm.spec.label, "value": arm.spec.value, "seed": arm.seed, "run_dir": str(arm.run_dir),
           **arm_metrics(evaluation, sweep.metrics)}
    first = row.get(sweep.metrics[0]) or {}
    row["floor"], row["ceiling"] = first.get("floor"), first.get("ceiling")
    row["minutes"] = _stage_minutes(arm)
    training = Path(arm.shared.get("training", arm.run_dir / "04_training"))
    separator = training / "separator.pt"
    row["separator_sha"] = _sha(separator) if separator.is_file() else None
    try:
        curve = [float(v) for _, v in json.loads((training / "metrics.json").read_text()).get("val_sdri_curve", [])]
    except (OSError, ValueError, TypeError):
        curve = []
    row["collapsed"] = collapsed(curve)
    return row


COLLAPSE_DB = 0.005


def collapsed(val_sdri_curve: Sequence[float]) -> bool:
    """True when every validation check of a training scored |SDRi| < 0.005 dB: the separator returns its input
    (mask 1) or silence (mask 0) — a saturated mask with no gradient left, on the 0 dB validation mixtures both give
    SDRi 0. Such an arm measures a failed training, not its parameter."""
    return bool(val_sdri_curve) and max(abs(v) for v in val_sdri_curve) < COLLAPSE_DB


def collapsed_arms(rows: Sequence[Mapping]) -> dict[str, list[int]]:
    """Arm label -> the seeds whose training collapsed (:func:`collapsed`)."""
    out: dict[str, list[int]] = {}
    for r in rows:
        if r.get("collapsed"):
            out.setdefault(r["arm"], []).append(r["seed"])
    return out


def collapsed_note(groups: Mapping[str, Sequence[int]], rows: Sequence[Mapping]) -> str:
    """The warning of :func:`collapsed_arms` ('' when no training collapsed)."""
    notes = []
    for arm, seeds in groups.items():
        n = sum(1 for r in rows if r["arm"] == arm)
        notes.append(f"{arm} collapsed in {len(seeds)} of {n} seed(s): its separator's validation SDRi was 0.00 dB at "
                     "every check (a saturated mask returning the mixture or silence) — a failed training, not a "
                     "measurement of the arm.")
    return " ".join(notes)


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def identical_arms(rows: Sequence[Mapping]) -> list[list[str]]:
    """Groups of arms whose separators are byte-identical for every seed: their parameter did not change what
    was trained (so their difference is not an ablation result). Labels in the rows' order."""
    by_arm: dict[str, dict] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], {})[r["seed"]] = r.get("separator_sha")
    groups: dict[tuple, list[str]] = {}
    for arm, shas in by_arm.items():
        if all(shas.values()):
            groups.setdefault(tuple(sorted(shas.items())), []).append(arm)
    return [g for g in groups.values() if len(g) > 1]


def _arm_line(row: Mapping, sweep: Sweep) -> str:
    m = sweep.metrics[0]
    r = row.get(m) or {}
    return (f"{METRICS[m][0]} {_fmt(r.get('value'))} dB (floor {_fmt(r.get('floor'))}, IRM ceiling "
            f"{_fmt(r.get('ceiling'))})")


def run_sweep(name: str | os.PathLike, preset: str, out: str | os.PathLike, *, seeds: int = 1,
              overrides: Mapping[str, Any] | None = None, threads: int | None = None, device: str | None = None,
              precision: str | None = None, notebooks_dir=None, notebook: bool = True,
              log_output: bool = False, arms: Sequence[str] | None = None) -> dict:
    """Run (or continue) a sweep; returns the table (what ``OUT/table.json`` holds). ``arms``: run only these
    (values or labels; :func:`select_arms`) — the others are listed with the paper's numbers, not run."""
    from .pipeline import discover_stages

    sweep = select_arms(load_sweep(name), arms)
    out = Path(out)
    overrides = dict(overrides or {})
    clash = sorted(k for k in overrides for a in sweep.arms if k in a.overrides)
    if clash:
        raise PipelineError(f"-p {clash[0]} is what the sweep varies; it cannot be overridden")
    seeded = sorted(set(overrides) & set(seed_overrides(0)))
    if seeded:
        raise PipelineError(f"-p {seeded[0]} is set by --seeds (seeds 0 … K-1 of every arm)")
    arms = plan_sweep(sweep, preset, out, seeds=seeds, overrides=overrides, notebooks_dir=notebooks_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"sweep": sweep.to_dict(), "preset": preset, "overrides": overrides, "seeds": seeds}
    previous = out / SWEEP_FILE
    if previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("sweep", {}).get("name") != sweep.name or old.get("preset") != preset:
            raise PipelineError(f"{out} holds sweep {old.get('sweep', {}).get('name')!r} with preset "
                                f"{old.get('preset')!r}; use another --out for {sweep.name!r} / {preset!r}")
    atomic_write_text(previous, json.dumps(record, indent=1, default=str))
    stages = sweep_stages(discover_stages(notebooks_dir))
    stage_names = [s.name for s in stages]
    n = len(arms)
    print(f"[sweep] {sweep.name} ({sweep.paper_table}: {sweep.parameter}): {len(sweep.arms)} arm(s) x {seeds} "
          f"seed(s) = {n} run(s) into {out}, preset {preset}; stages {' '.join(s[:2] for s in stage_names)}",
          flush=True)
    keys = {arm.index: _arm_key(arm, preset, stages) for arm in arms}
    by_dir = {arm.run_dir: arm for arm in arms}
    owners = {arm.index: sorted({by_dir[p.parent].index for p in arm.shared.values() if p.parent in by_dir})
              for arm in arms}
    rows: dict[int, dict] = {}
    pending = list(arms)
    waiting, unfinished = None, set()  # what this process last waited for; arms it saw unfinished
    while pending:  # in order; an arm another process holds (its lock) or still needs (its owners) waits
        ran = False
        for arm in list(pending):
            head = f"[sweep] arm {arm.index + 1}/{n} {sweep.parameter}={arm.spec.value} seed {arm.seed}"
            if _arm_finished(arm, keys[arm.index]):
                rows[arm.index] = row = arm_row(arm, sweep)
                pending.remove(arm)
                print(f"{head}: finished {'by another process' if arm.index in unfinished else 'before'}, skipped — "
                      f"{_arm_line(row, sweep)}", flush=True)
                continue
            unfinished.add(arm.index)
            if any(not _arm_finished(arms[o], keys[o]) for o in owners[arm.index]):
                continue  # its upstream stages are another arm's, which another process is running
            with file_lock(out / LOCKS_DIR / f"{arm.run_dir.name}.lock", wait=False) as mine:
                if mine is None or _arm_finished(arm, keys[arm.index]):
                    continue  # another process runs it (or just finished it: the next pass reports it)
                rows[arm.index] = _run_arm(arm, head, keys[arm.index], sweep, preset, stage_names,
                                           threads=threads, device=device, precision=precision,
                                           notebooks_dir=notebooks_dir, log_output=log_output)
            pending.remove(arm)
            ran = True
            break  # from the first pending arm again: this one may own the next one's upstream stages
        if pending and not ran:
            busy = ", ".join(a.run_dir.name for a in pending)
            if busy != waiting:
                print(f"[sweep] waiting for arm(s) another process runs: {busy}", flush=True)
                waiting = busy
            time.sleep(POLL_SECONDS)
    rows = [rows[arm.index] for arm in arms]
    with file_lock(out / LOCKS_DIR / "table.lock"):  # processes sharing the sweep write it in turn
        table = write_tables(out, sweep, rows, preset=preset, seeds=seeds, overrides=overrides)
        print(f"[sweep] {sweep.name}: {table['sentence']}")
        print(f"[sweep] tables: {out / TABLE_JSON}, {out / TABLE_MD}", flush=True)
        if notebook:
            run_ablations_notebook(out, notebooks_dir=notebooks_dir, threads=threads)
    return table


def _arm_finished(arm: Arm, key: str) -> bool:
    """Whether ``arm`` ran to its evaluation with what it is run with now (its ``arm.json`` key)."""
    try:
        done = json.loads((arm.run_dir / ARM_FILE).read_text())
    except (OSError, ValueError):
        return False
    return done.get("key") == key and (arm.run_dir / "06_evaluation" / "metrics.json").is_file()


def _run_arm(arm: Arm, head: str, key: str, sweep: Sweep, preset: str, stage_names: Sequence[str], **run) -> dict:
    """Run one arm's pipeline (stages it shares come from their owners' folders) and mark it finished."""
    from .pipeline import run_pipeline

    shared = ", ".join(sorted(p.name[:2] for p in arm.shared.values()))
    origin = sorted({p.parent.name for p in arm.shared.values()})
    print(f"{head}: running" + (f" (stages {shared} shared from {', '.join(origin)})" if arm.shared else ""),
          flush=True)
    start = time.time()
    run_pipeline(preset, arm.run_dir, overrides=arm.overrides, stages=stage_names, stage_dirs=arm.shared, **run)
    row = arm_row(arm, sweep)
    atomic_write_text(arm.run_dir / ARM_FILE, json.dumps({"key": key, "overrides": arm.overrides,
                                                          "shared": {k: str(v) for k, v in arm.shared.items()}},
                                                         indent=1, default=str))
    print(f"{head}: done in {(time.time() - start) / 60:.1f} min — {_arm_line(row, sweep)}", flush=True)
    return row


def run_ablations_notebook(sweep_dir: str | os.PathLike, *, notebooks_dir=None, threads: int | None = None) -> Path:
    """Execute ``notebooks/07_ablations.ipynb`` on a finished sweep into ``sweep_dir`` (its figures go to
    ``sweep_dir/figures``)."""
    from .pipeline import default_notebooks_dir, execute_notebook

    folder = Path(notebooks_dir) if notebooks_dir else default_notebooks_dir()
    nb = folder / f"{ABLATIONS_NOTEBOOK}.ipynb"
    if not nb.is_file():
        raise PipelineError(f"{nb} missing (python tools/build_notebooks.py)")
    sweep_dir = Path(sweep_dir).resolve()
    out_nb = sweep_dir / nb.name
    print(f"[sweep] {nb.name} -> {out_nb}", flush=True)
    execute_notebook(nb, out_nb, {"sweep_dir": str(sweep_dir), "INTERACTIVE": False}, cwd=sweep_dir, threads=threads)
    return out_nb


# ============================================================================================ tables
def _mean_spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def summarise(sweep: Sweep, rows: Sequence[Mapping]) -> list[dict]:
    """Per arm (in the sweep's order): ``{"arm", "value", "paper", "n_seeds", "minutes", <metric>: {"mean",
    "spread", "values", "floor", "ceiling"}}``; spread = sample standard deviation over seeds (None with one)."""
    out = []
    for spec in sweep.arms:
        mine = [r for r in rows if r["arm"] == spec.label]
        entry: dict[str, Any] = {"arm": spec.label, "value": spec.value, "paper": spec.paper,
                                 "n_seeds": len(mine), "seeds": [r["seed"] for r in mine],
                                 "collapsed_seeds": [r["seed"] for r in mine if r.get("collapsed")]}
        minutes = [r.get("minutes") for r in mine if r.get("minutes") is not None]
        entry["minutes"] = round(sum(minutes) / len(minutes), 2) if minutes else None
        for m in sweep.metrics:
            got = [r.get(m) for r in mine if r.get(m)]
            mean, spread = _mean_spread([g["value"] for g in got])
            floor, _ = _mean_spread([g.get("floor") for g in got])
            ceiling, _ = _mean_spread([g.get("ceiling") for g in got])
            entry[m] = {"mean": mean, "spread": spread, "values": [g["value"] for g in got], "floor": floor,
                        "ceiling": ceiling}
        out.append(entry)
    return out


def difference(a: Mapping, b: Mapping) -> dict:
    """``a - b`` of two arms' ``{"mean", "spread"}``: ``{"delta", "noise", "within_noise"}``. The noise is the
    larger of the two spreads; ``within_noise`` is None when a spread is unknown (one seed)."""
    if a.get("mean") is None or b.get("mean") is None:
        return {"delta": None, "noise": None, "within_noise": None}
    delta = a["mean"] - b["mean"]
    spreads = [a.get("spread"), b.get("spread")]
    if any(s is None for s in spreads):
        return {"delta": delta, "noise": None, "within_noise": None}
    noise = max(spreads)
    return {"delta": delta, "noise": noise, "within_noise": abs(delta) <= noise}


def paper_column(sweep: Sweep) -> str | None:
    """The paper column the ordering is judged on: AudioSet when two arms have it, else FSDKaggle2018."""
    for col in ("audioset", "fsdkaggle2018"):
        if sum(col in a.paper for a in sweep.arms) >= 2:
            return col
    return None


def paper_claims(sweep: Sweep) -> list[tuple[str, str]]:
    """The paper's orderings as ``(better arm, worse arm)`` label pairs: from its numbers (one column, see
    :func:`paper_column`) or, with ``paper_best``, that arm above every other."""
    col = paper_column(sweep)
    claims = []
    if col:
        numbered = [a for a in sweep.arms if col in a.paper]
        for i, a in enumerate(numbered):
            for b in numbered[i + 1:]:
                if a.paper[col] != b.paper[col]:
                    hi, lo = (a, b) if a.paper[col] > b.paper[col] else (b, a)
                    claims.append((hi.label, lo.label))
    if sweep.paper_best is not None:
        best = next((a for a in sweep.arms if a.value == sweep.paper_best), None)
        if best is not None:
            claims += [(best.label, a.label) for a in sweep.arms if a is not best
                       and (best.label, a.label) not in claims]
    return claims


def ordering_verdicts(sweep: Sweep, summary: Sequence[Mapping], metric: str) -> list[dict]:
    """Per paper claim ``(better, worse)``: ``verdict`` = holds | reverses | within noise | no noise estimate |
    missing, with our difference better − worse and the noise."""
    by = {e["arm"]: e for e in summary}
    out = []
    for hi, lo in paper_claims(sweep):
        if hi not in by or lo not in by:
            continue
        d = difference(by[hi].get(metric, {}), by[lo].get(metric, {}))
        if d["delta"] is None:
            verdict = "missing"
        elif d["within_noise"] is None:
            verdict = "no noise estimate"
        elif d["within_noise"]:
            verdict = "within noise"
        else:
            verdict = "holds" if d["delta"] > 0 else "reverses"
        out.append({"better": hi, "worse": lo, "verdict": verdict} | d)
    return out


def ordering_sentence(sweep: Sweep, summary: Sequence[Mapping], metric: str | None = None) -> str:
    """One sentence: does the paper's ordering hold here, reverse, or is it within noise?"""
    metric = metric or sweep.metrics[0]
    what = METRICS[metric][0]
    verdicts = ordering_verdicts(sweep, summary, metric)
    ranked = sorted((e for e in summary if (e.get(metric) or {}).get("mean") is not None),
                    key=lambda e: -e[metric]["mean"])
    ours = " > ".join(f"{e['arm']} {e[metric]['mean']:.2f}" for e in ranked) or "no results"
    col = paper_column(sweep)
    paper = (" > ".join(f"{a.label} {a.paper[col]:.2f}" for a in sorted(
        (a for a in sweep.arms if col in a.paper), key=lambda a: -a.paper[col])) if col else "")
    if sweep.paper_best is not None and not col:
        best = next((a.label for a in sweep.arms if a.value == sweep.paper_best), sweep.paper_best)
        paper = f"{best} best"
    paper_txt = f" (paper {PAPER_COLUMNS.get(col, '').replace('paper ', '') + ': ' if col else ''}{paper})" if paper else ""
    if not verdicts:
        return f"{sweep.paper_table}: the paper gives no ordering of these arms to check; ours ({what}): {ours}."
    kinds = [v["verdict"] for v in verdicts]
    if all(k == "missing" for k in kinds):
        return f"{sweep.paper_table}: no {what} results to compare with the paper's ordering{paper_txt}."
    if "no noise estimate" in kinds:
        return (f"{sweep.paper_table}: one seed per arm, so no claim about the paper's ordering{paper_txt} "
                f"(run with --seeds 2 or more); ours ({what}): {ours}.")
    missing = kinds.count("missing")
    kinds = [k for k in kinds if k != "missing"]
    counts = {k: kinds.count(k) for k in ("holds", "reverses", "within noise")}
    if counts["within noise"] == len(kinds):
        verdict = "is within noise here (every difference is smaller than the seed spread)"
    elif counts["holds"] == len(kinds):
        verdict = "holds"
    elif counts["reverses"] == len(kinds):
        verdict = "reverses"
    elif counts["reverses"] == 0:
        verdict = (f"holds where it can be told apart ({counts['holds']} of {len(kinds)} pairs; "
                   f"{counts['within noise']} within noise)")
    elif counts["holds"] == 0:
        verdict = (f"reverses where it can be told apart ({counts['reverses']} of {len(kinds)} pairs; "
                   f"{counts['within noise']} within noise)")
    else:
        verdict = (f"partly holds ({counts['holds']} of {len(kinds)} pairs hold, {counts['reverses']} reverse, "
                   f"{counts['within noise']} within noise)")
    if missing:
        verdict += f" ({missing} of {missing + len(kinds)} pairs not compared: an arm without a result)"
    return f"{sweep.paper_table}: the paper's ordering{paper_txt} {verdict}; ours ({what}): {ours}."


def identical_note(groups: Sequence[Sequence[str]]) -> str:
    """The warning of :func:`identical_arms` ('' when every arm trained its own separator)."""
    return " ".join(f"Arms {' and '.join(g)} trained byte-identical separators for every seed: the parameter "
                    "did not change training here, so their difference is no evidence either way." for g in groups)


def _pm(entry: Mapping | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    return f"{entry['mean']:.2f}" + (f" ± {entry['spread']:.2f}" if entry.get("spread") is not None else "")


def table_markdown(sweep: Sweep, summary: Sequence[Mapping], *, preset: str = "", seeds: int = 1,
                   sentence: str | None = None) -> str:
    """``table.md``: ours beside the paper's, with the floor, the IRM ceiling, the difference to the reference
    arm (marked "within noise" when smaller than the spread) and the sentence."""
    metrics = sweep.metrics
    ref = next((e for e in summary if e["value"] == sweep.reference), None)
    cols = [c for c in PAPER_COLUMNS if any(c in a.paper for a in sweep.arms) or
            any(c in (p.get("paper") or {}) for p in sweep.paper_only)]
    first = metrics[0]
    head = ["arm", *(PAPER_COLUMNS[c] for c in cols), *(METRICS[m][0] for m in metrics), "floor x/2", "IRM ceiling"]
    if ref is not None:
        head.append(f"vs {ref['arm']}")
    head += ["seeds", "minutes"]
    lines = [f"# {sweep.name}: {sweep.title} ({sweep.paper_table})", "",
             f"Paper: {sweep.paper_text}.", "",
             f"Ours: preset `{preset}`, {seeds} seed(s) per arm (train and mining seed), SDRi in dB, per-class "
             "median then mean over classes; mean ± sample standard deviation over seeds. Floor and ceiling belong "
             f"to the first metric ({METRICS[first][0]}), on the same mixtures.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in summary:
        spec = next(a for a in sweep.arms if a.label == e["arm"])
        label = e["arm"] + (f" (collapsed: seed {', '.join(map(str, e['collapsed_seeds']))})"
                            if e.get("collapsed_seeds") else "")
        cells = [label, *(_fmt(spec.paper.get(c)) if c in spec.paper else "—" for c in cols),
                 *(_pm(e.get(m)) for m in metrics), _fmt((e.get(first) or {}).get("floor")),
                 _fmt((e.get(first) or {}).get("ceiling"))]
        if ref is not None:
            if e is ref:
                cells.append("reference")
            else:
                d = difference(e.get(first) or {}, ref.get(first) or {})
                cells.append("n/a" if d["delta"] is None else f"{d['delta']:+.2f}" + (
                    " (within noise)" if d["within_noise"] else "" if d["within_noise"] is False else
                    " (no noise estimate)"))
        cells += [str(e["n_seeds"]), _fmt(e.get("minutes"), 1)]
        lines.append("| " + " | ".join(cells) + " |")
    for p in sweep.paper_only:
        cells = [f"{p['label']} (paper only; {p.get('note', 'not in the kit')})",
                 *(_fmt(p.get("paper", {}).get(c)) if c in p.get("paper", {}) else "—" for c in cols)]
        cells += [""] * (len(head) - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", sentence or ordering_sentence(sweep, summary, first), ""]
    return "\n".join(lines)


def sweep_sentence(sweep: Sweep, summary: Sequence[Mapping], rows: Sequence[Mapping], metric: str) -> str:
    """What a finished sweep says: the ordering verdict, then the warnings (identical arms, collapsed trainings)."""
    failed = {arm for arm, seeds in collapsed_arms(rows).items()
              if len(seeds) == sum(1 for r in rows if r["arm"] == arm)}  # every seed collapsed: no result to rank
    ranked = [e if e["arm"] not in failed else {**e, metric: {**(e.get(metric) or {}), "mean": None}} for e in summary]
    return " ".join(filter(None, [ordering_sentence(sweep, ranked, metric), identical_note(identical_arms(rows)),
                                  collapsed_note(collapsed_arms(rows), rows)]))


def build_table(sweep: Sweep, rows: Sequence[Mapping], *, preset: str = "", seeds: int = 1,
                overrides: Mapping[str, Any] | None = None) -> dict:
    """What ``table.json`` holds: the sweep, its rows, the per-arm summary, the verdicts and the sentence."""
    summary = summarise(sweep, rows)
    metric = sweep.metrics[0]
    return {"sweep": sweep.to_dict(), "preset": preset, "seeds": seeds, "overrides": dict(overrides or {}),
            "metric": metric, "rows": list(rows), "summary": summary,
            "verdicts": ordering_verdicts(sweep, summary, metric),
            "sentence": sweep_sentence(sweep, summary, rows, metric),
            "identical_arms": identical_arms(rows),
            "collapsed_arms": collapsed_arms(rows),
            "total_stage_minutes": round(sum(r.get("minutes") or 0 for r in rows), 2)}


def write_tables(out: str | os.PathLike, sweep: Sweep, rows: Sequence[Mapping], **kwargs) -> dict:
    out = Path(out)
    table = build_table(sweep, rows, **kwargs)
    atomic_write_text(out / TABLE_JSON, json.dumps(table, indent=1, default=str))
    atomic_write_text(out / TABLE_MD, table_markdown(sweep, table["summary"], preset=table["preset"],
                                                     seeds=table["seeds"], sentence=table["sentence"]))
    return table


def load_table(sweep_dir: str | os.PathLike) -> tuple[Sweep, dict]:
    """A finished sweep's ``(Sweep, table.json)``."""
    path = Path(sweep_dir) / TABLE_JSON
    if not path.is_file():
        raise PipelineError(f"{path} missing: the sweep has not finished (ussnb sweep ... --out {sweep_dir})")
    table = json.loads(path.read_text())
    return Sweep.from_dict(table["sweep"], str(path)), table


def finished_sweeps(folder: str | os.PathLike) -> list[Path]:
    """``folder`` itself if it holds a table.json, else its sub-folders that do (sorted)."""
    folder = Path(folder)
    if (folder / TABLE_JSON).is_file():
        return [folder]
    return sorted(p.parent for p in folder.glob(f"*/{TABLE_JSON}"))
