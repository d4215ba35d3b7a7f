"""The whole pipeline, headless, with the smoke preset on the offline starter set (real recordings)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ussnb.pipeline import STAGES

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_pipeline_end_to_end(tmp_path):
    env = os.environ | {"USSNB_DATA": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "ussnb.cli", "pipeline", "--preset", "smoke", "--run-dir", str(run)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    present = [name for name, _ in STAGES if (REPO / "notebooks" / f"{name}.ipynb").is_file()]
    assert present[:5] == [name for name, _ in STAGES][:5]
    for name in present:
        stage = run / name
        assert (stage / "metrics.json").is_file(), name
        assert (stage / f"{name}.ipynb").is_file(), name
        assert list((stage / "figures").glob("*.png")), f"{name} drew no figure"
    m = {name: json.loads((run / name / "metrics.json").read_text()) for name in present}
    assert m["00_data"]["dataset"] == "starter" and m["00_data"]["n_clips"]["train"] == 40
    assert {"map", "sed_frame_auc", "sed_f1_1s"} <= set(m["01_weak_labels_and_sed"])
    prec = m["02_anchor_mining"]["mining_precision"]
    assert set(prec) == {"sed", "in-clip-random", "out-clip-random"} and "2.0" in prec["sed"]
    assert m["02_anchor_mining"]["cache_speedup"] > 1
    assert {"val_sdri", "train_minutes"} <= set(m["04_training"])
    assert (run / "04_training" / "separator.pt").is_file()
    assert (run / "config.yaml").is_file()
