"""The whole pipeline, headless, with the smoke preset on the offline starter set (real recordings)."""
import json
import os
import subprocess
import sys
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
    for split in ("train", "validation", "test"):  # stage 01's p_SED, which mining reads instead of tagging again
        assert (run / "01_weak_labels_and_sed" / "sed_frames" / f"{split}.npz").is_file(), split
    mined = json.loads((run / "02_anchor_mining" / "02_anchor_mining.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in mined["cells"] for o in c.get("outputs", []))
    assert "train" in printed and "tagging the clips here" not in printed
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


@pytest.mark.slow
def test_smoke_2021_system_htsat_latent_queries_unet(tmp_path, monkeypatch):
    """The zs2021 recipe at smoke size with no HTS-AT weights on disk: stage 01 falls back to HTS-AT-small trained
    from the weak labels (beside the CNN SED, same budget), anchors are scored over the 200-frame window, the
    latent embedding (8 · embed_dim) conditions the plain U-Net, and `ussnb separate --example` uses it."""
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(empty))  # _pipeline passes os.environ to the runner
    run, proc = _pipeline(tmp_path, "-p", "sed.tagger=htsat", "-p", "sed.tagger_fallback=starter-htsat",
                          "-p", "sed.compare_with=[starter-sed]", "-p", "anchors.score_window=1.953",
                          "-p", "train.condition=embedding", "-p", "train.separator=unet", "--stages", "00", "01",
                          "02", "03", "04")
    notebook = (run / "01_weak_labels_and_sed" / "01_weak_labels_and_sed.ipynb").read_text()
    assert "HTSAT_AudioSet_Saved_1.ckpt is not in the weights folder" in notebook  # the user is told why
    sed = json.loads((run / "01_weak_labels_and_sed" / "metrics.json").read_text())
    assert (sed["requested_tagger"], sed["tagger"]) == ("htsat", "starter-htsat")
    assert set(sed["comparison"]) == {"starter-sed"}
    assert {"map", "sed_frame_auc", "sed_f1_1s"} <= set(sed["comparison"]["starter-sed"])
    minutes = json.loads((run / "01_weak_labels_and_sed" / "timing.json").read_text())["tagger_train_minutes"]
    assert set(minutes) == {"starter-htsat", "starter-sed"}
    from ussnb.anchors import AnchorSet
    from ussnb.run import Run

    width = Run(run).tagger().embedding_size
    assert width == 8 * 8  # the smoke preset's tiny HTS-AT: embed_dim 8, latent 8 · embed_dim
    assert AnchorSet(run / "02_anchor_mining" / "anchors" / "train").conditions("embedding").shape[1] == width
    model = json.loads((run / "04_training" / "metrics.json").read_text())
    assert "val_sdri" in model
    # the latent query by example from the command line
    clip = sorted((tmp_path / "data").rglob("*.flac"))[0]
    env = os.environ | {"USSNB_DATA": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "ussnb.cli", "separate", str(clip), "--example", str(clip),
                          "--checkpoint", str(run), "--out", str(tmp_path / "sep"), "--no-progress"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert list((tmp_path / "sep").rglob("*.wav"))
