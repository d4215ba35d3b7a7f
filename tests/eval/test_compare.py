"""ussnb compare: finished runs side by side (the zero-shot and zs2021 presets' table)."""
import json

import pytest

from ussnb.cli import main
from ussnb.errors import DataError
from ussnb.eval.compare import compare_runs, comparison_table


def _fake_run(root, name, tagger, separator, seen, unseen, seconds):
    run = root / name
    (run / "01_weak_labels_and_sed").mkdir(parents=True)
    (run / "06_evaluation").mkdir()
    (run / "01_weak_labels_and_sed" / "metrics.json").write_text(json.dumps({"tagger": tagger}))
    zs = {"held_out_in_training": True,
          "seen": {"by_example": seen, "floor": 3.0, "irm": 15.0},
          "unseen": {"by_example": unseen, "floor": 2.9, "irm": 14.0}}
    metrics = {"model": {"separator": separator, "condition": "embedding"},
               "zero_shot": {"esc50-pairs": zs, "starter-pairs": {"note": "no example segments"}}}
    (run / "06_evaluation" / "metrics.json").write_text(json.dumps(metrics))
    (run / "timings.json").write_text(json.dumps({"00_data": seconds / 2, "04_training": seconds / 2}))
    return run


def test_two_runs_one_table(tmp_path, capsys):
    a = _fake_run(tmp_path, "zero-shot", "efficientat-mn04", "meltcn", 6.5, 4.25, 1200)
    b = _fake_run(tmp_path, "zs2021", "starter-htsat", "unet", 5.0, None, 2400)
    rows = compare_runs([a, b])
    # benchmarks without query-by-example results are left out; one row per run and benchmark
    assert [(r["run"], r["benchmark"]) for r in rows] == [("zero-shot", "esc50-pairs"), ("zs2021", "esc50-pairs")]
    assert rows[0]["unseen SDRi"] == 4.25 and rows[1]["minutes"] == 40
    md = comparison_table(rows).splitlines()
    assert md[2] == ("| zero-shot | efficientat-mn04 | meltcn | embedding | esc50-pairs | yes | 6.50 | 3.00 | "
                     "4.25 | 2.90 | 14.00 | 20.00 |")
    assert "| – |" in md[3]  # an undefined figure is shown as such, not as 0
    assert main(["compare", str(a), str(b)]) == 0
    assert "zs2021 | starter-htsat | unet" in capsys.readouterr().out


def test_an_unfinished_run_is_a_clear_error(tmp_path):
    (tmp_path / "half" / "01_weak_labels_and_sed").mkdir(parents=True)
    with pytest.raises(DataError, match="has not finished"):
        compare_runs([tmp_path / "half"])
