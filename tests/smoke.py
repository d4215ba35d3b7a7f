"""The smoke pipeline run (``ussnb pipeline --preset smoke``, real starter recordings, tiny sizes), built once per
session in a temporary folder with its own data root: ``smoke_run`` → ``(run_dir, completed process)``. Used by
tests/test_pipeline_smoke.py (the pipeline itself) and tests/browser/ (JupyterLab on a finished run);
tests/conftest.py makes the fixture available."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _pipeline(tmp_path, *extra):
    """The smoke pipeline into ``tmp_path/run`` with ``USSNB_DATA=tmp_path/data``; fails the test if it fails."""
    env = os.environ | {"USSNB_DATA": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "ussnb.cli", "pipeline", "--preset", "smoke", "--run-dir", str(run),
                           *extra], capture_output=True, text=True, env=env, cwd=REPO, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run, proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    return _pipeline(tmp_path_factory.mktemp("smoke"))
