"""``ussnb lab``: what JupyterLab is given for a run (the server itself is started by tests/browser/)."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from ussnb.cli import main
from ussnb.errors import PipelineError
from ussnb.lab import LAB_FOLDER, lab_command, prepare_lab
from ussnb.pipeline import RUNNER_SETTINGS, load_preset, run_parameters
from ussnb.run import STAGES

REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, executed=("00_data", "05_hierarchical_separation")) -> Path:
    """A run directory as the pipeline leaves it: config.yaml (the smoke preset's parameters) and executed
    notebooks of some stages."""
    run = tmp_path / "run"
    params = {k: v for k, v in load_preset("smoke").items() if k not in RUNNER_SETTINGS}
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"preset": "smoke", "parameters": params,
                                                     "runner": {"threads": 1, "device": "cpu"}}))
    for name in executed:
        (run / name).mkdir()
        shutil.copy(REPO / "notebooks" / f"{name}.ipynb", run / name / f"{name}.ipynb")
    return run


def _injected(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # prepared, not executed
    values = {}
    for node in ast.parse(cell.source).body:
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_fresh_copies_get_the_runs_parameters_interactive_and_their_own_folder(tmp_path):
    run = _run(tmp_path)
    setup = prepare_lab(run)
    run = run.resolve()
    assert setup.root == run and setup.start == f"{LAB_FOLDER}/00_data.ipynb"
    assert setup.executed == [run / "00_data" / "00_data.ipynb",
                              run / "05_hierarchical_separation" / "05_hierarchical_separation.ipynb"]
    assert [p.name for p in setup.fresh] == [f"{name}.ipynb" for name, _ in STAGES]
    _, resolved, runner = run_parameters(run)
    assert runner == {"threads": 1, "device": "cpu"}
    for (name, key), path in zip(STAGES, setup.fresh):
        got = _injected(path)
        want = resolved[name] | {"stage_dir": str(run / LAB_FOLDER / name), "INTERACTIVE": True}
        assert got == want, name
    sep = _injected(run / LAB_FOLDER / "05_hierarchical_separation.ipynb")
    assert sep["training_dir"] == str(run / "04_training") and sep["INTERACTIVE"] is True
    assert _injected(run / LAB_FOLDER / "01_weak_labels_and_sed.ipynb")["sed_steps"] == 4  # the preset's value
    text = "\n".join(setup.describe())
    assert "lab/05_hierarchical_separation.ipynb" in text and "00_data/00_data.ipynb" in text
    assert not (run / "04_training").exists()  # nothing of the run itself was written


def test_an_edited_copy_is_kept_unless_reset(tmp_path):
    run = _run(tmp_path)
    prepare_lab(run)
    copy = run / LAB_FOLDER / "03_query_conditions.ipynb"
    nb = nbformat.read(copy, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("my_note = 1"))
    nbformat.write(nb, copy)
    setup = prepare_lab(run)
    assert copy.resolve() in setup.kept and "my_note" in copy.read_text()
    assert "kept from an earlier" in "\n".join(setup.describe())
    setup = prepare_lab(run, reset=True)
    assert not setup.kept and "my_note" not in copy.read_text()


def test_not_a_run_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(PipelineError, match="no such folder"):
        prepare_lab(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    assert main(["lab", str(tmp_path / "plain")]) == 1
    err = capsys.readouterr().err
    assert "is not a pipeline run directory" in err and "ussnb pipeline --preset cpu --run-dir" in err
    run = _run(tmp_path, executed=())
    with pytest.raises(PipelineError, match="no executed stage notebook"):
        prepare_lab(run)
    (run / "config.yaml").write_text("parameters: [1, 2")
    with pytest.raises(PipelineError, match="unreadable"):
        prepare_lab(run)
    assert not (run / LAB_FOLDER).exists()


def test_without_a_run_the_repository_notebooks():
    setup = prepare_lab(None)
    assert setup.root == (REPO / "notebooks").resolve() and setup.run_dir is None and not setup.fresh
    assert "ussnb lab RUN_DIR" in setup.describe()[0]


def test_server_binds_locally_without_port_fallback_or_token_on_the_command_line(tmp_path):
    cmd = lab_command(tmp_path, 8123)
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--ServerApp.port=8123" in cmd
    assert "--ServerApp.port_retries=0" in cmd and "--ServerApp.open_browser=False" in cmd
    assert f"--ServerApp.root_dir={tmp_path}" in cmd
    assert not any("token" in part.lower() for part in cmd)  # JUPYTER_TOKEN in the environment instead


def test_widgets_extension_is_installed():
    """ipywidgets >= 8 ships its JupyterLab extension (jupyterlab_widgets): the project's install is enough."""
    proc = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True,
                          timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    line = next((ln for ln in text.splitlines() if "@jupyter-widgets/jupyterlab-manager" in ln), "")
    assert "enabled" in line and "OK" in line, text


def test_fresh_training_copies_start_from_the_runs_finished_training(tmp_path):
    """A fresh 01/04 copy resumes the run's finished training (its checkpoints are copied into the copy's folder)
    instead of training the tagger or the separator again; the run's own folders are left as they were."""
    run = _run(tmp_path, executed=("00_data", "01_weak_labels_and_sed", "04_training"))
    (run / "04_training" / "state.pt").write_bytes(b"state")
    (run / "04_training" / "separator.pt").write_bytes(b"model")
    (run / "04_training" / ".done").write_text("digest")
    (run / "01_weak_labels_and_sed" / "starter_sed").mkdir()
    (run / "01_weak_labels_and_sed" / "starter_sed" / "state.pt").write_bytes(b"cnn")
    before = sorted(p.relative_to(run) for p in run.rglob("*") if LAB_FOLDER not in p.parts)
    prepare_lab(run)
    lab = run / LAB_FOLDER
    assert (lab / "04_training" / "state.pt").read_bytes() == b"state"
    assert (lab / "04_training" / "separator.pt").read_bytes() == b"model"
    assert not (lab / "04_training" / ".done").exists() and not (lab / "04_training" / "04_training.ipynb").exists()
    assert (lab / "01_weak_labels_and_sed" / "starter_sed" / "state.pt").read_bytes() == b"cnn"
    assert not (lab / "02_anchor_mining").exists()  # not a training stage: nothing copied
    assert sorted(p.relative_to(run) for p in run.rglob("*") if LAB_FOLDER not in p.parts) == before
