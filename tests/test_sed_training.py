import json

import numpy as np
import pytest
import torch

from ussnb import data
from ussnb.sed_training import SedTrainConfig, evaluate_tagger, train_sed


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, shared_dir):
    import os

    root = tmp_path_factory.mktemp("data")
    old = os.environ.get("USSNB_DATA")
    os.environ["USSNB_DATA"] = str(root)
    try:
        path = data.prepare_named("esc50", n_train=24, n_validation=6, n_test=6, progress=False)
    finally:
        if old is None:
            os.environ.pop("USSNB_DATA")
        else:
            os.environ["USSNB_DATA"] = old
    return data.load(path)


SMALL = {"channels": [8, 16], "time_pools": [2, 2], "hidden": 32, "pooling": "attention"}


def test_training_resumes_exactly(tiny_dataset, tmp_path):
    cfg = SedTrainConfig(steps=6, batch_size=4, eval_every=3, checkpoint_every=3, model=SMALL, mixup=0.4)
    _, full = train_sed(tiny_dataset, tmp_path / "a", cfg, progress=False)
    # interrupted after step 3 (its state is on disk), then resumed
    cfg3 = SedTrainConfig(**{**cfg.__dict__, "steps": 3})
    train_sed(tiny_dataset, tmp_path / "b", cfg3, progress=False)
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=False)
    state["config"]["steps"] = 6  # pretend the run had been asked for 6 steps
    torch.save(state, tmp_path / "b" / "state.pt")
    _, resumed = train_sed(tiny_dataset, tmp_path / "b", cfg, progress=False)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in full]
    assert (tmp_path / "b" / "tagger.pt").is_file()
    hist = json.loads((tmp_path / "a" / "history.json").read_text())["history"]
    assert "val_map" in hist[2]


def test_evaluate_reports_map_and_sed(tiny_dataset):
    from ussnb.taggers.sed import SedCnn

    torch.manual_seed(0)
    model = SedCnn(classes=len(tiny_dataset.labels), **SMALL).eval()
    m = evaluate_tagger(model, tiny_dataset, "test")
    assert 0 <= m["map"] <= 1 and 0 <= m["sed_frame_auc"] <= 1 and 0 <= m["sed_f1_1s"] <= 1


def test_changed_configuration_starts_over_and_keeps_the_old_state(tiny_dataset, tmp_path):
    cfg = SedTrainConfig(steps=2, batch_size=4, eval_every=2, checkpoint_every=1, model=SMALL)
    train_sed(tiny_dataset, tmp_path, cfg, progress=False)
    other = SedTrainConfig(**{**cfg.__dict__, "lr": 0.01})
    with pytest.warns(UserWarning, match="another configuration"):
        _, history = train_sed(tiny_dataset, tmp_path, other, progress=False)
    assert len(history) == 2 and (tmp_path / "state.previous.pt").is_file()
