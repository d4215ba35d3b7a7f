"""The run directory has one owner: :class:`ussnb.run.Run` (paths, loaders, errors for missing stages)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ussnb.errors import CheckpointError, DataError
from ussnb.pipeline import resolve
from ussnb.queries import save_conditions
from ussnb.run import STAGES, Run
from ussnb.separation import SeparationBundle
from ussnb.separators import build_separator, save_separator
from ussnb.taggers.sed import SedCnn, save_sed
from ussnb.taggers.stage import save_stage_tagger

MIDS = ["/m/05zppz", "/m/05r5c", "/m/06rvn"]
NAMES = ["Male speech, man speaking", "Piano", "Snare drum"]


def _make_run(root: Path) -> Run:
    """A tiny run written only through Run's paths: tagger, soft class averages, a separator, held-out anchors."""
    run = Run(root)
    torch.manual_seed(0)
    k = len(MIDS)
    save_separator(run.separator_path, build_separator("meltcn", "tiny", condition_size=k), condition="soft",
                   labels=MIDS, tagger="starter-sed")
    run.stage("sed").mkdir(parents=True)
    save_sed(SedCnn(classes=k, channels=(8, 16), time_pools=(2, 2), hidden=16, labels=MIDS).eval(),
             run.stage("sed") / "tagger.pt")
    save_stage_tagger(run.stage("sed"), "starter-sed", MIDS, checkpoint="tagger.pt")
    save_conditions(run.conditions_path("soft"), np.eye(k) * 0.9, kind="soft", labels=MIDS, names=NAMES)
    run.anchors_dir("train").mkdir(parents=True)
    (run.anchors_dir("train") / "anchors.json").write_text(json.dumps({"exclude": ["/m/06rvn"]}))
    return run


def test_stage_folders_follow_the_pipeline_order(tmp_path):
    run = Run(tmp_path / "r")
    assert [run.stage(key).name for _, key in STAGES] == [name for name, _ in STAGES]
    assert run.stage("04_training") == run.stage("training") == tmp_path / "r" / "04_training"
    assert run.separator_path == tmp_path / "r" / "04_training" / "separator.pt"
    assert run.conditions_path("embedding").name == "conditions_embedding.npz"
    assert run.anchors_dir("test") == tmp_path / "r" / "02_anchor_mining" / "anchors" / "test"
    assert run.config_path.parent == run.timings_path.parent == tmp_path / "r"
    with pytest.raises(ValueError, match="unknown stage"):
        run.stage("training2")


def test_from_dirs_uses_the_folders_a_notebook_was_given(tmp_path):
    run = Run.from_dirs(data_dir=tmp_path / "d", anchors_dir=tmp_path / "elsewhere")
    assert run.stage("data") == tmp_path / "d"
    assert run.anchors_dir("train") == tmp_path / "elsewhere" / "anchors" / "train"
    with pytest.raises(DataError, match="no folder for stage 'training'"):
        run.stage("training")
    with pytest.raises(DataError, match="has no run directory"):
        _ = run.config_path
    with pytest.raises(TypeError):
        Run.from_dirs(data=tmp_path)
    with pytest.raises(ValueError, match="unknown stage key"):
        Run.from_dirs(bogus_dir=tmp_path)


def test_missing_stages_are_clear_errors(tmp_path):
    run = Run(tmp_path / "empty")
    with pytest.raises(DataError, match="run stage 00"):
        run.dataset_root()
    with pytest.raises(CheckpointError, match="run the pipeline up to stage 04"):
        run.bundle()
    with pytest.raises(CheckpointError, match="run stage 03"):
        run.class_conditions("soft")
    assert run.held_out_classes() == []
    assert Run.from_dirs(data_dir=tmp_path).held_out_classes() == []  # no anchor stage at all


def test_dataset_record_round_trips(tmp_path):
    run = Run(tmp_path / "r")
    run.stage("data").mkdir(parents=True)
    run.write_dataset(tmp_path / "data" / "starter", "starter")
    assert run.dataset_root() == (tmp_path / "data" / "starter").resolve()


def test_bundle_from_run_equals_loading_the_directory(tmp_path):
    run = _make_run(tmp_path / "r")
    a, b = run.bundle(), SeparationBundle.load(tmp_path / "r")
    assert a.kind == b.kind == "soft" and a.labels == b.labels == MIDS
    assert a.names == NAMES  # from the conditions' sidecar (no dataset stage)
    np.testing.assert_array_equal(a.class_conditions, b.class_conditions)
    assert a.run.path == b.run.path == tmp_path / "r"
    assert a.tagger.labels == MIDS and a.tagger.sample_rate == 32000  # the run's own SED tagger (Run.tagger())
    assert run.held_out_classes() == ["/m/06rvn"]
    assert run.class_conditions("soft").labels == MIDS
    x = torch.zeros(1, 1, 16000)
    with torch.inference_mode():
        assert run.separator()(x, torch.zeros(1, 3)).shape == x.shape
    # a checkpoint outside any run: no class averages, no run
    alone = tmp_path / "alone.pt"
    alone.write_bytes(run.separator_path.read_bytes())
    bare = SeparationBundle.load(alone)
    assert bare.run is None and bare.class_conditions is None and bare.calibrated_thresholds() is None


def test_pipeline_hands_each_stage_the_runs_folders(tmp_path):
    from ussnb.pipeline import discover_stages

    stages = discover_stages()
    values = resolve(stages, {}, tmp_path / "r")
    run = Run(tmp_path / "r")
    v06 = values["06_evaluation"]
    assert Path(v06["stage_dir"]) == run.stage("evaluation").resolve()
    assert Path(v06["anchors_dir"]) == run.stage("anchors").resolve()
    assert Path(values["00_data"]["stage_dir"]) == run.stage("data").resolve()
