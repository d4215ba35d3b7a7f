"""Ablation sweeps (ussnb.sweep): table building, noise marking, the ordering sentence, the arms' stage sharing,
and a 2-arm smoke sweep end to end that is killed after its first arm and resumed."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ussnb import sweep as S
from ussnb.errors import PipelineError

REPO = Path(__file__).resolve().parents[1]

TWO_ARMS = """\
name: two-arms
title: mixing augmentation (two arms, smoke)
paper_table: Table 9
paper_text: "no augmentation 3.81, energy matching 5.57"
parameter: train.augmentation
reference: match-energy
arms:
  - {value: none, label: none, paper: {audioset: 3.81}}
  - {value: match-energy, label: energy matching, paper: {audioset: 5.57}}
metrics: [starter_pairs, esc50_pairs]
"""


def _sweep(**kw) -> S.Sweep:
    data = {"name": "t", "title": "x", "paper_table": "Table 9", "paper_text": "a 3.81, b 3.63, c 5.57",
            "parameter": "train.augmentation", "reference": "c",
            "arms": [{"value": "a", "paper": {"audioset": 3.81}}, {"value": "b", "paper": {"audioset": 3.63}},
                     {"value": "c", "paper": {"audioset": 5.57}}], "metrics": ["starter_pairs"]} | kw
    return S.Sweep.from_dict(data)


def _rows(values: dict[str, list[float]]) -> list[dict]:
    return [{"arm": arm, "value": arm, "seed": seed, "minutes": 1.0,
             "starter_pairs": {"value": v, "floor": 3.0, "ceiling": 12.0}}
            for arm, vs in values.items() for seed, v in enumerate(vs)]


def test_every_packaged_sweep_loads_with_the_issue_numbers():
    assert S.available_sweeps() == [f"table{i}" for i in range(3, 10)]
    paper = {name: {a.label: a.paper for a in S.load_sweep(name).arms} for name in S.available_sweeps()}
    assert paper["table7"] == {"SED": {"audioset": 5.57}, "in-clip random": {"audioset": 3.94},
                               "out-clip random": {"audioset": 5.90}}
    assert [p["audioset"] for p in paper["table6"].values()] == [2.86, 4.99, 5.57, 5.21, 4.68, 4.48, 4.47]
    assert [p["audioset"] for p in paper["table9"].values()] == [3.81, 3.63, 5.57]
    assert [p["audioset"] for p in paper["table5"].values() if p] == [5.50, 5.57, 5.70]
    assert paper["table4"]["frozen pretrained (embedding)"] == {"audioset": 5.57, "fsdkaggle2018": 10.57}
    assert paper["table3"]["soft (segment prediction)"] == {"audioset": 7.80}
    assert S.load_sweep("table8").paper_best == 2
    lines = S.list_sweeps()
    assert any(line.startswith("table7") and "Table 7" in line for line in lines)
    with pytest.raises(PipelineError, match="unknown sweep"):
        S.load_sweep("table99")


def test_summary_mean_spread_and_noise_marking():
    sw = _sweep()
    summary = S.summarise(sw, _rows({"a": [4.0, 4.2], "b": [3.9, 4.3], "c": [6.0, 6.2]}))
    a, b, c = summary
    assert a["n_seeds"] == 2 and a["starter_pairs"]["mean"] == pytest.approx(4.1)
    assert a["starter_pairs"]["spread"] == pytest.approx(0.1414, abs=1e-4)  # sample std of (4.0, 4.2)
    assert S.difference(a["starter_pairs"], b["starter_pairs"])["within_noise"] is True  # 0.0 < 0.283
    assert S.difference(c["starter_pairs"], a["starter_pairs"])["within_noise"] is False  # 2.0 > 0.141
    one = S.summarise(sw, _rows({"a": [4.0], "b": [3.9], "c": [6.0]}))
    assert one[0]["starter_pairs"]["spread"] is None
    assert S.difference(one[0]["starter_pairs"], one[1]["starter_pairs"])["within_noise"] is None
    md = S.table_markdown(sw, summary, preset="smoke", seeds=2)
    row_a = next(line for line in md.splitlines() if line.startswith("| a |"))
    assert "4.10 ± 0.14" in row_a and "-2.00" in row_a and "within noise" not in row_a
    table = S.build_table(sw, _rows({"a": [4.0, 4.2], "b": [4.0, 4.4], "c": [4.1, 4.3]}), preset="smoke", seeds=2)
    row_b = next(line for line in S.table_markdown(sw, table["summary"]).splitlines() if line.startswith("| b |"))
    assert "(within noise)" in row_b and "| 3.81 |" in S.table_markdown(sw, table["summary"])
    assert len(table["rows"]) == 6 and table["total_stage_minutes"] == 6.0


@pytest.mark.parametrize("values, verdict", [
    ({"a": [4.0, 4.2], "b": [3.0, 3.1], "c": [6.0, 6.1]}, "holds;"),  # c > a > b, as in the paper
    ({"a": [4.0, 4.2], "b": [5.0, 5.1], "c": [2.0, 2.1]}, "reverses;"),  # b > a > c
    ({"a": [4.0, 5.0], "b": [4.2, 5.2], "c": [4.1, 5.1]}, "within noise here"),
    ({"a": [4.0, 4.1], "b": [3.0, 3.1], "c": [4.0, 4.2]}, "holds where it can be told apart (2 of 3"),
    ({"a": [4.0, 4.1], "b": [5.0, 5.1], "c": [6.0, 6.1]}, "partly holds (2 of 3 pairs hold, 1 reverse"),
    ({"a": [4.0], "b": [3.0], "c": [6.0]}, "one seed per arm, so no claim"),
])
def test_ordering_sentence_from_data(values, verdict):
    sw = _sweep()
    sentence = S.ordering_sentence(sw, S.summarise(sw, _rows(values)))
    assert sentence.startswith("Table 9: ") and verdict in sentence, sentence
    assert "paper AudioSet: c 5.57 > a 3.81 > b 3.63" in sentence or "no claim" in sentence


def test_paper_best_without_numbers_and_the_fsdkaggle_column():
    sw = _sweep(arms=[{"value": 2, "label": "J = 2", "paper": {"audioset": 5.57}}, {"value": 3, "label": "J = 3"}],
                paper_best=2, reference=2)
    assert S.paper_claims(sw) == [("J = 2", "J = 3")]
    rows = [{"arm": a, "value": 0, "seed": s, "starter_pairs": {"value": v}} for a, vs in
            {"J = 2": [3.0, 3.1], "J = 3": [4.0, 4.1]}.items() for s, v in enumerate(vs)]
    assert "reverses" in S.ordering_sentence(sw, S.summarise(sw, rows))
    t4 = S.load_sweep("table4")
    assert S.paper_column(t4) == "fsdkaggle2018"  # only one arm has an AudioSet number
    assert ("frozen pretrained (embedding)", "finetune") in S.paper_claims(t4)


def test_arms_share_unchanged_upstream_stages(tmp_path):
    t7 = S.plan_sweep(S.load_sweep("table7"), "sweep", tmp_path, seeds=2)
    assert [a.run_dir.name for a in t7] == ["sed-seed0", "in-clip-random-seed0", "out-clip-random-seed0",
                                           "sed-seed1", "in-clip-random-seed1", "out-clip-random-seed1"]
    first = t7[0].run_dir
    assert t7[0].shared == {}
    for arm in t7[1:]:  # stages 00-01 run once; mining (02) is what the strategy and the seed touch
        upstream = {"data": first / "00_data", "sed": first / "01_weak_labels_and_sed"}
        if arm.run_dir.name == "sed-seed1":  # ... but SED anchors do not depend on the seed
            upstream |= {"anchors": first / "02_anchor_mining", "queries": first / "03_query_conditions"}
        assert arm.shared == upstream
    t9 = S.plan_sweep(S.load_sweep("table9"), "sweep", tmp_path, seeds=2)
    assert set(t9[1].shared) == {"data", "sed", "anchors", "queries"}  # training is the first stage it touches
    # SED anchors do not depend on the mining seed: both seeds share one mining; seed 1 trains again
    assert t9[4].shared["anchors"] == t9[0].run_dir / "02_anchor_mining" and "training" not in t9[4].shared
    assert t9[1].overrides["train.seed"] == 0 and t9[4].overrides["train.seed"] == 1
    assert "anchors.mining_seed" not in t9[4].overrides
    assert t7[4].overrides["anchors.mining_seed"] == 1  # random anchors do


def test_shared_stage_must_be_done_with_the_same_parameters(tmp_path):
    from ussnb.pipeline import run_pipeline

    with pytest.raises(PipelineError, match="shared stage 00_data .* is not done"):
        run_pipeline("smoke", tmp_path / "b", stages=["00"], stage_dirs={"data": tmp_path / "a" / "00_data"})


def _read_until(proc, needle: str, seen: list[str]) -> None:
    for line in proc.stdout:
        seen.append(line)
        if needle in line:
            return
    raise AssertionError("sweep ended before " + repr(needle) + ":\n" + "".join(seen[-40:]))


@pytest.mark.slow
def test_two_arm_smoke_sweep_killed_after_the_first_arm_resumes(tmp_path):
    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_ARMS)
    out = tmp_path / "sweep"
    env = os.environ | {"PYTHONPATH": str(REPO), "USSNB_DATA": os.environ.get("USSNB_DATA", str(tmp_path / "data"))}
    cmd = [sys.executable, "-m", "ussnb.cli", "sweep", str(spec), "--preset", "smoke", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path,
                            start_new_session=True)
    seen: list[str] = []
    try:
        _read_until(proc, "arm 1/2 train.augmentation=none seed 0: done", seen)
        _read_until(proc, "04_training: finished", seen)  # the second arm trained, its evaluation is starting
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    first, second = out / "arms" / "none-seed0", out / "arms" / "match-energy-seed0"
    assert (first / S.ARM_FILE).is_file() and not (second / S.ARM_FILE).exists() and not (out / S.TABLE_JSON).exists()
    assert "(stages 00, 01, 02, 03 shared from none-seed0)" in "".join(seen)

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-3000:]
    assert "arm 1/2 train.augmentation=none seed 0: finished before, skipped" in log
    assert "04_training: done before with the same parameters, skipped" in log  # the partial arm resumes
    assert "06_evaluation: finished in" in log and log.count("00_data: shared from") == 1
    assert not (second / "00_data").exists()  # shared through the runner, not copied
    assert set(json.loads((second / "04_training" / ".upstream.json").read_text())) == {"data", "sed", "anchors",
                                                                                        "queries"}
    table = json.loads((out / S.TABLE_JSON).read_text())
    assert [(r["arm"], r["seed"]) for r in table["rows"]] == [("none", 0), ("energy matching", 0)]
    for r in table["rows"]:
        assert r["starter_pairs"]["value"] is not None and r["floor"] is not None and r["ceiling"] > r["floor"]
        assert r["minutes"] > 0
    assert "one seed per arm, so no claim" in table["sentence"]
    md = (out / S.TABLE_MD).read_text()
    assert "| none | 3.81 |" in md and "| energy matching | 5.57 |" in md
    assert (out / "07_ablations.ipynb").is_file() and (out / "figures" / "two-arms_starter_pairs.png").is_file()


def test_overriding_the_varied_parameter_or_the_seeds_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="is what the sweep varies"):
        S.run_sweep("table7", "smoke", tmp_path, overrides={"anchors.anchor_strategy": "sed"})
    with pytest.raises(PipelineError, match="set by --seeds"):
        S.run_sweep("table7", "smoke", tmp_path, overrides={"train.seed": 3})


def test_arms_that_trained_identical_separators_are_flagged():
    rows = [{"arm": a, "seed": seed, "separator_sha": sha, "starter_pairs": {"value": 3.0 + seed}}
            for a, shas in {"sed": ["s0", "s1"], "in": ["r0", "r1"], "out": ["r0", "r1"]}.items()
            for seed, sha in enumerate(shas)]
    assert S.identical_arms(rows) == [["in", "out"]]
    rows[3]["separator_sha"] = "other"  # differ for one seed: trained differently
    assert S.identical_arms(rows) == []
    sw = _sweep(arms=[{"value": "sed"}, {"value": "in"}, {"value": "out"}], reference="sed")
    table = S.build_table(sw, [r | {"separator_sha": "x"} for r in rows if r["arm"] != "sed"]
                          + [r for r in rows if r["arm"] == "sed"])
    assert table["identical_arms"] == [["in", "out"]] and "byte-identical separators" in table["sentence"]


def test_arms_selects_a_subset_and_lists_the_rest_as_paper_rows(tmp_path):
    t6 = S.load_sweep("table6")
    some = S.select_arms(t6, ["0.5", "2", "10 s"])
    assert [a.value for a in some.arms] == [0.5, 2.0, 10.0]
    skipped = [p for p in some.paper_only if p.get("note")]
    assert [p["label"] for p in skipped] == ["1 s", "4 s", "6 s", "8 s"]
    assert skipped[0]["paper"] == {"audioset": 4.99}
    assert S.select_arms(t6, None) is t6
    with pytest.raises(PipelineError, match="--arms '3' is no arm of table6"):
        S.select_arms(t6, ["3"])
    arms = S.plan_sweep(some, "sweep", tmp_path, seeds=2)
    assert [a.run_dir.name for a in arms] == ["0.5-seed0", "2.0-seed0", "10.0-seed0", "0.5-seed1", "2.0-seed1",
                                              "10.0-seed1"]
    rows = [{"arm": a.spec.label, "value": a.spec.value, "seed": a.seed, "starter_pairs": {"value": 4.0 + a.seed}}
            for a in arms]
    md = S.table_markdown(some, S.summarise(some, rows), preset="sweep", seeds=2)
    assert "| 6 s (paper only; not run here (--arms)) | 4.68 |" in md


def test_a_collapsed_training_is_flagged_not_ranked():
    """±20 dB random gain with the neg-SDR loss saturated MelTCN's mask on this CPU (it returned the mixture:
    validation SDRi 0.00 at every check); the table must say so rather than rank the arm."""
    assert S.collapsed([0.0, 0.0, 0.001]) and not S.collapsed([0.0, 0.3]) and not S.collapsed([])
    t9 = S.load_sweep("table9")
    rows = [{"arm": a.label, "value": a.value, "seed": s, "starter_pairs": {"value": v + s * 0.1},
             "collapsed": a.value == "random-gain"}
            for a, v in zip(t9.arms, [5.3, 0.0, 6.6]) for s in range(2)]
    assert S.collapsed_arms(rows) == {"+-20 dB random gain": [0, 1]}
    summary = S.summarise(t9, rows)
    sentence = S.sweep_sentence(t9, summary, rows, "starter_pairs")
    assert "+-20 dB random gain collapsed in 2 of 2 seed(s)" in sentence and "failed training" in sentence
    assert "2 of 3 pairs not compared" in sentence and "random gain 0.00" not in sentence  # not ranked
    md = S.table_markdown(t9, summary, preset="sweep", seeds=2, sentence=sentence)
    assert "| +-20 dB random gain (collapsed: seed 0, 1) |" in md


def _fake_pipeline(calls: list, delay: float = 0.0):
    """A stand-in for run_pipeline that 'evaluates' an arm instantly: stage 06 metrics from the arm's folder name."""
    import threading
    import time

    lock = threading.Lock()

    def run(preset, run_dir, *, overrides, stages, stage_dirs, **_):
        with lock:
            calls.append(Path(run_dir).name)
        time.sleep(delay)
        score = 5.0 + 0.5 * len(calls)
        ev = Path(run_dir) / "06_evaluation"
        ev.mkdir(parents=True, exist_ok=True)
        (ev / "metrics.json").write_text(json.dumps({"benchmarks": {"starter-pairs": {
            "sdri_avg": score, "trivial_sdri": 3.0, "irm_sdri": 15.0, "n_items": 10, "n_classes": 5}}}))
        (Path(run_dir) / "timings.json").write_text(json.dumps({"04_training": 60.0}))
    return run


def test_two_processes_on_one_sweep_share_its_arms_each_run_once(tmp_path, monkeypatch):
    import threading

    import ussnb.pipeline

    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_ARMS)
    calls: list[str] = []
    monkeypatch.setattr(ussnb.pipeline, "run_pipeline", _fake_pipeline(calls, delay=0.5))
    monkeypatch.setattr(S, "POLL_SECONDS", 0.05)
    out = tmp_path / "sweep"
    tables, errors = [], []

    def one():
        try:
            tables.append(S.run_sweep(spec, "smoke", out, seeds=2, notebook=False))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=one) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors and len(tables) == 2
    # four runs (2 arms x 2 seeds), each done once by one of the two; the first (the owner of stages 00-01) first
    assert sorted(calls) == sorted(["none-seed0", "match-energy-seed0", "none-seed1", "match-energy-seed1"])
    assert calls[0] == "none-seed0"
    assert tables[0]["rows"] == tables[1]["rows"] == json.loads((out / S.TABLE_JSON).read_text())["rows"]


def test_an_arm_another_process_holds_waits_and_is_not_run_twice(tmp_path, monkeypatch, capsys):
    import threading

    import ussnb.pipeline
    from ussnb.io import file_lock
    from ussnb.pipeline import discover_stages

    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_ARMS)
    calls: list[str] = []
    fake = _fake_pipeline(calls)
    monkeypatch.setattr(ussnb.pipeline, "run_pipeline", fake)
    monkeypatch.setattr(S, "POLL_SECONDS", 0.05)
    out = tmp_path / "sweep"
    arms = S.plan_sweep(S.load_sweep(spec), "smoke", out)
    first = arms[0]
    key = S._arm_key(first, "smoke", S.sweep_stages(discover_stages()))
    held, release = threading.Event(), threading.Event()

    def other_process():  # holds the first arm (the owner of the second's stages 00-03), then finishes it
        with file_lock(out / S.LOCKS_DIR / f"{first.run_dir.name}.lock"):
            held.set()
            release.wait(30)
            fake("smoke", first.run_dir, overrides={}, stages=[], stage_dirs={})
            (first.run_dir / S.ARM_FILE).write_text(json.dumps({"key": key}))

    t = threading.Thread(target=other_process)
    t.start()
    held.wait(30)
    threading.Timer(0.5, release.set).start()
    table = S.run_sweep(spec, "smoke", out, notebook=False)
    t.join(30)
    log = capsys.readouterr().out
    assert calls == ["none-seed0", "match-energy-seed0"]  # the first by the other 'process', the second here
    assert "waiting for arm(s) another process runs: none-seed0, match-energy-seed0" in log
    assert "arm 1/2 train.augmentation=none seed 0: finished by another process, skipped" in log
    assert [r["starter_pairs"]["value"] for r in table["rows"]] == [5.5, 6.0]
