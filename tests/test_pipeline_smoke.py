"""The whole pipeline, headless, with the smoke preset on the offline starter set (real recordings)."""
import json
from pathlib import Path

import pytest

from tests.smoke import _pipeline
from ussnb.pipeline import STAGES

REPO = Path(__file__).resolve().parents[1]


def _keys(obj) -> set[str]:
    """Every key of a nested JSON object."""
    if isinstance(obj, dict):
        return set(obj) | set().union(*(_keys(v) for v in obj.values()))
    if isinstance(obj, list):
        return set().union(*(_keys(v) for v in obj))
    return set()


# the smoke run itself (fixture smoke_run, once per session: the browser test opens it too) is tests/smoke.py
@pytest.mark.slow
def test_smoke_pipeline_end_to_end(smoke_run):
    run, proc = smoke_run
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
    assert "val_sdri" in m["04_training"]
    assert (run / "04_training" / "separator.pt").is_file()
    assert (run / "config.yaml").is_file()
    # wall-clock figures live in timing.json, never in metrics.json
    t = {name: json.loads((run / name / "timing.json").read_text()) for name in
         ("01_weak_labels_and_sed", "02_anchor_mining", "04_training", "05_hierarchical_separation")}
    assert t["02_anchor_mining"]["speedup"] > 1 and t["04_training"]["steps_per_second"] > 0
    assert "real_time_factor" in t["05_hierarchical_separation"]
    clock = set().union(*(_keys(v) for v in t.values())) | {"train_minutes", "cache_speedup", "real_time_factor"}
    for name in present:
        both = _keys(m[name]) & clock
        assert not both, f"{name}/metrics.json holds wall-clock figures {sorted(both)}"
    # a person can follow it: one status line per stage, the loops' progress, no kernel transport warning
    out = proc.stdout + proc.stderr
    assert "torch thread(s) per kernel" in out
    assert "without encryption" not in out
    for name in present:
        assert f"[ussnb] {name}: finished in" in out


@pytest.mark.slow
def test_smoke_rerun_writes_identical_metrics(smoke_run):
    """Same seed, same results: every metrics.json is byte-identical when the whole pipeline runs again."""
    run, _ = smoke_run
    present = [name for name, _ in STAGES if (run / name / "metrics.json").is_file()]
    before = {name: (run / name / "metrics.json").read_bytes() for name in present}
    _pipeline(run.parent, "--force")
    after = {name: (run / name / "metrics.json").read_bytes() for name in present}
    changed = [name for name in present if before[name] != after[name]]
    assert not changed, f"metrics.json differs on a re-run in {changed}"


@pytest.mark.slow
def test_smoke_zero_shot_pipeline_pretrained_query_net_and_combined_data(tmp_path, shared_dir):
    """The zero-shot recipe end to end at smoke size: starter + ESC-50 combined, the pretrained mn04 query net,
    embedding conditions through every stage (hierarchy included), held-out classes never in training."""
    run, _ = _pipeline(tmp_path, "-p", "dataset=[starter, esc50]", "-p", "tagger=efficientat-mn04",
                       "-p", "condition=embedding", "-p", "zero_shot_classes=[Cat, Crow]", "-p", "n_test=24")
    m = {name: json.loads((run / name / "metrics.json").read_text()) for name, _ in STAGES}
    assert m["00_data"]["dataset"] == "starter+esc50" and m["00_data"]["holdout_names"] == ["Cat", "Crow"]
    assert m["01_weak_labels_and_sed"]["tagger"] == "efficientat-mn04" and m["01_weak_labels_and_sed"]["map"] > 0.2
    from ussnb import data
    from ussnb.anchors import AnchorSet

    ds = data.load(json.loads((run / "00_data" / "dataset.json").read_text())["path"])
    held = {ds.label_index[mid] for mid, name in ds.label_names.items() if name in ("Cat", "Crow")}
    train = AnchorSet(run / "02_anchor_mining" / "anchors" / "train")
    assert not set(train.label.tolist()) & held  # never a training target ...
    truth = ds.true_events("train")
    assert not any(e["mid"] in {ds.labels[k] for k in held} for c in ds.clips("train") for e in truth[c.clip_id])  # ... nor heard
    assert train.conditions("embedding").shape[1] == 384
    assert m["05_hierarchical_separation"]["n_detected"] and "thresholds" in m["05_hierarchical_separation"]
    zs = m["06_evaluation"]["zero_shot"]
    assert "esc50-pairs" in zs and zs["esc50-pairs"]["unseen"]["n_items"] > 0
    assert "starter-pairs" in zs  # the combination's starter member gives the starter benchmarks
    assert {"by_example", "class_average", "floor", "irm"} <= set(zs["esc50-pairs"]["seen"])
