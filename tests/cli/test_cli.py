import json
import subprocess
import sys

import pytest

from ussnb.cli import main


def test_help_mentions_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("data", "pipeline", "labels", "USSNB_DATA"):
        assert word in out


def test_labels_search_and_closest(capsys, shared_dir, monkeypatch):
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(shared_dir / "data" / "audioset"))
    assert main(["labels", "dog"]) == 0
    out = capsys.readouterr().out
    assert "/m/0bt9lr" in out and "Animal > Domestic animals, pets > Dog" in out
    assert main(["labels", "gutiar"]) == 1
    assert "Closest: Guitar" in capsys.readouterr().out


def test_data_info_json(tmp_path, shared_dir, monkeypatch, capsys):
    monkeypatch.setenv("USSNB_DATA", str(tmp_path))
    assert main(["data", "prepare", "esc50", "--n-train", "6", "--n-validation", "3", "--n-test", "3"]) == 0
    capsys.readouterr()
    path = next((tmp_path / "variants").iterdir()) / "esc50"
    assert main(["data", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_clips"] == {"train": 6, "validation": 3, "test": 3}
    assert {"n_classes", "hours"} <= set(info)


def test_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("USSNB_DATA", str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "ussnb.cli", "data", "info", "starter"], capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("ussnb: error:") and "Traceback" not in proc.stderr
