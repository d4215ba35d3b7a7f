import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from ussnb.errors import PipelineError
from ussnb.pipeline import available_presets, discover_stages, parse_overrides, run_pipeline

REPO = Path(__file__).resolve().parents[1]


def _notebook(path: Path, params: str, body: str):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def toy_notebooks(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "00_data.ipynb", 'stage_dir: str = ""\nn_train: int = 3\nINTERACTIVE: bool = True',
              "import json, pathlib\npathlib.Path(stage_dir, 'metrics.json').write_text(json.dumps({'n': n_train, 'i': INTERACTIVE}))")
    _notebook(folder / "01_weak_labels_and_sed.ipynb", 'stage_dir: str = ""\ndata_dir: str = ""\nfail: bool = False',
              "import json, pathlib\nassert not fail, 'asked to fail'\nn = json.loads(pathlib.Path(data_dir, 'metrics.json').read_text())['n']\n"
              "pathlib.Path(stage_dir, 'metrics.json').write_text(json.dumps({'twice': 2 * n}))")
    (folder / "toy.yaml").write_text("n_train: 3\n")
    return folder


def test_presets_exist():
    assert {"smoke", "cpu", "paper"} <= set(available_presets())


def test_overrides_are_typed():
    assert parse_overrides(["a=3", "b=x", "c=true", "d=0.5"]) == {"a": 3, "b": "x", "c": True, "d": 0.5}
    with pytest.raises(PipelineError):
        parse_overrides(["novalue"])


def test_runs_in_order_passes_folders_and_skips_done(toy_notebooks, tmp_path, capsys):
    run = tmp_path / "run"
    run_pipeline(str(toy_notebooks / "toy.yaml"), run, overrides={"n_train": 5}, notebooks_dir=toy_notebooks)
    assert json.loads((run / "00_data" / "metrics.json").read_text()) == {"n": 5, "i": False}
    assert json.loads((run / "01_weak_labels_and_sed" / "metrics.json").read_text()) == {"twice": 10}
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["stages"]["01_weak_labels_and_sed"]["data_dir"] == str((run / "00_data").resolve())
    assert (run / "01_weak_labels_and_sed" / "01_weak_labels_and_sed.ipynb").is_file()
    capsys.readouterr()
    run_pipeline(str(toy_notebooks / "toy.yaml"), run, overrides={"n_train": 5}, notebooks_dir=toy_notebooks)
    assert capsys.readouterr().out.count("skipped") == 2
    capsys.readouterr()
    run_pipeline(str(toy_notebooks / "toy.yaml"), run, overrides={"n_train": 6}, notebooks_dir=toy_notebooks)
    assert json.loads((run / "00_data" / "metrics.json").read_text())["n"] == 6
    # stage 01's own parameters did not change, but its input did: it re-runs too
    assert json.loads((run / "01_weak_labels_and_sed" / "metrics.json").read_text()) == {"twice": 12}
    assert "skipped" not in capsys.readouterr().out


def test_relative_data_root_is_pinned_for_the_notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder / "00_data.ipynb", 'stage_dir: str = ""',
              "import json, os, pathlib\nfrom ussnb.paths import data_root\n"
              "pathlib.Path(stage_dir, 'metrics.json').write_text(json.dumps({'root': str(data_root().resolve())}))")
    (folder / "p.yaml").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("USSNB_DATA", raising=False)
    run_pipeline(str(folder / "p.yaml"), "run", notebooks_dir=folder)
    root = json.loads((tmp_path / "run" / "00_data" / "metrics.json").read_text())["root"]
    assert root == str((tmp_path / "data").resolve())  # not <run>/00_data/data


def test_unknown_parameter_fails_before_running(toy_notebooks, tmp_path):
    with pytest.raises(PipelineError, match=r"unknown parameter\(s\) \['stpes'\]"):
        run_pipeline(str(toy_notebooks / "toy.yaml"), tmp_path / "r", overrides={"stpes": 3}, notebooks_dir=toy_notebooks)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value", ["abc", 1.5, True, [1]])
def test_wrongly_typed_parameter_fails_before_running(toy_notebooks, tmp_path, value):
    with pytest.raises(PipelineError, match=r"wrong parameter type: n_train=.* is not int"):
        run_pipeline(str(toy_notebooks / "toy.yaml"), tmp_path / "r", overrides={"n_train": value},
                     notebooks_dir=toy_notebooks)
    assert not (tmp_path / "r").exists()


def test_threads_setting_reaches_the_kernels(toy_notebooks, tmp_path):
    nbs = tmp_path / "nbs2"
    nbs.mkdir()
    _notebook(nbs / "00_data.ipynb", 'stage_dir: str = ""',
              "import json, os, pathlib, torch\nfrom ussnb.runtime import configure_threads\nconfigure_threads()\n"
              "pathlib.Path(stage_dir, 'metrics.json').write_text(json.dumps({'torch': torch.get_num_threads(), "
              "'blas': os.environ.get('OPENBLAS_NUM_THREADS'), 'device': os.environ.get('USSNB_DEVICE'), "
              "'precision': os.environ.get('USSNB_PRECISION')}))")
    (nbs / "p.yaml").write_text("threads: 1\nprecision: bf16\n")
    run_pipeline(str(nbs / "p.yaml"), tmp_path / "a", notebooks_dir=nbs, device="cpu")
    assert json.loads((tmp_path / "a" / "00_data" / "metrics.json").read_text()) == {
        "torch": 1, "blas": "1", "device": "cpu", "precision": "bf16"}  # runner settings reach the kernels
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["runner"] == {
        "threads": 1, "device": "cpu", "precision": "bf16"}
    with pytest.raises(Exception, match="threads"):
        run_pipeline(str(nbs / "p.yaml"), tmp_path / "b", notebooks_dir=nbs, threads=-2)


def test_status_line_names_cells_and_loop(tmp_path, capsys):
    nbs = tmp_path / "nbs3"
    nbs.mkdir()
    _notebook(nbs / "00_data.ipynb", 'stage_dir: str = ""',
              "import json, pathlib, time\nfrom ussnb.progress import progress_bar\n"
              "bar = progress_bar(total=4, desc='toy loop', unit='step', report_every=0)\n"
              "for _ in range(4):\n    time.sleep(0.4); bar.update(1)\nbar.close()\n"
              "pathlib.Path(stage_dir, 'metrics.json').write_text('{}')")
    (nbs / "p.yaml").write_text("{}\n")
    run_pipeline(str(nbs / "p.yaml"), tmp_path / "a", notebooks_dir=nbs, status_interval=0.2)
    out = capsys.readouterr().out
    assert "[ussnb] 00_data: cell " in out and "toy loop" in out and "step" in out
    assert "without encryption" not in out


def test_failed_stage_keeps_notebook_and_stops(toy_notebooks, tmp_path):
    with pytest.raises(PipelineError, match="stage 01_weak_labels_and_sed failed.*asked to fail") as err:
        run_pipeline(str(toy_notebooks / "toy.yaml"), tmp_path / "r", overrides={"fail": True}, notebooks_dir=toy_notebooks)
    kept = tmp_path / "r" / "01_weak_labels_and_sed" / "01_weak_labels_and_sed.ipynb"
    assert kept.is_file() and str(kept) in str(err.value)
    assert not (tmp_path / "r" / "01_weak_labels_and_sed" / ".done").exists()


def test_repository_notebooks_are_built_from_sources():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "build_notebooks.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_repository_notebooks_have_typed_parameters_and_no_outputs():
    import re

    for stage in discover_stages(REPO / "notebooks"):
        nb = nbformat.read(stage.notebook, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assigned = re.findall(r"^([A-Za-z_]\w*)\s*:", cell.source, flags=re.M)
        missing = [name for name in assigned if name not in stage.parameters]
        assert not missing, f"{stage.name}: papermill cannot parse {missing} (no '=' in comments)"
        assert "stage_dir" in stage.parameters and "INTERACTIVE" in stage.parameters, stage.name
        for name, p in stage.parameters.items():
            assert p["inferred_type_name"] != "None", f"{stage.name}: parameter {name} has no type"
            assert p["help"], f"{stage.name}: parameter {name} has no comment"
        nb = nbformat.read(stage.notebook, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), stage.name
