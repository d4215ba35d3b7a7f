"""Progress a person can follow: loops report to the pipeline, the pipeline prints a status line."""
import io
import json
import time

from ussnb.progress import ENV_PROGRESS, StatusMonitor, format_loop, progress_bar


def test_bar_reports_its_state_to_the_progress_file(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    monkeypatch.setenv(ENV_PROGRESS, str(path))
    bar = progress_bar(total=10, desc="training x", unit="step", report_every=0.0)
    bar.set_postfix(loss="0.123")
    for _ in range(4):
        bar.update(1)
    state = json.loads(path.read_text())
    assert state["n"] == 4 and state["total"] == 10 and state["desc"] == "training x"
    assert state["postfix"] == {"loss": "0.123"} and not state["done"]
    bar.close()
    assert json.loads(path.read_text())["done"]


def test_reports_are_throttled_and_quiet_bars_report_nothing(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    monkeypatch.setenv(ENV_PROGRESS, str(path))
    bar = progress_bar(total=1000, desc="d", report_every=3600)
    for _ in range(500):
        bar.update(1)
    assert json.loads(path.read_text())["n"] == 0  # only the first report, then throttled
    bar.close()
    quiet = tmp_path / "q.json"
    monkeypatch.setenv(ENV_PROGRESS, str(quiet))
    progress_bar(total=3, disable=True).update(1)
    assert not quiet.exists()


def test_no_file_without_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_PROGRESS, raising=False)
    bar = progress_bar(total=2)
    bar.update(2)
    bar.close()
    assert list(tmp_path.iterdir()) == []


def test_loop_line_has_step_rate_eta_and_postfix():
    line = format_loop({"desc": "training meltcn (soft)", "n": 1200, "total": 3000, "unit": "step", "rate": 2.5,
                        "eta": 720.0, "postfix": {"loss": "-7.1", "val_SDRi": "8.02"}, "done": False})
    assert line == "training meltcn (soft) 1200/3000 step, 2.50 step/s, ETA 12:00, loss=-7.1 val_SDRi=8.02"


def test_monitor_prints_cells_elapsed_estimate_and_loop(tmp_path):
    progress = tmp_path / "p.json"
    out = io.StringIO()
    monitor = StatusMonitor("04_training", progress, cells=lambda: (3, 9), expected=600.0, interval=0.05, stream=out)
    with monitor:
        progress.write_text(json.dumps({"desc": "training", "n": 5, "total": 10, "unit": "step", "rate": 1.0,
                                        "eta": 5.0, "postfix": {}, "done": False, "time": time.time()}))
        time.sleep(0.3)
    lines = [ln for ln in out.getvalue().splitlines() if ln]
    assert lines, "no status line"
    assert lines[-1].startswith("[ussnb] 04_training: cell 3/9, 0:00 elapsed (last run 10:00, ~")
    assert "training 5/10 step" in lines[-1]
    assert len(lines) == len(set(lines))  # not a TTY: a line only when it changed
    assert not progress.exists()
