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


def _section(**kw):
    from ussnb.config import SedSection

    return SedSection(**{"sed_steps": 4, "sed_batch_size": 4, "sed_eval_every": 2, "sed_size": "tiny", **kw})


def test_htsat_small_trains_from_weak_labels_and_loads_as_the_run_tagger(tiny_dataset, tmp_path):
    from ussnb.sed_training import stage_train_config
    from ussnb.taggers.htsat import HTSAT
    from ussnb.taggers.stage import build_run_tagger, save_stage_tagger

    cfg = stage_train_config("starter-htsat", _section())
    assert cfg.arch == "htsat-small" and cfg.model["embed_dim"] == 8
    model, history = train_sed(tiny_dataset, tmp_path, cfg, progress=False)
    assert isinstance(model, HTSAT) and len(history) == 4 and np.isfinite([h["loss"] for h in history]).all()
    # the loss moved: the transformer's weights were updated from the clip tags
    assert history[0]["loss"] != history[-1]["loss"]
    save_stage_tagger(tmp_path, "starter-htsat", tiny_dataset.labels, checkpoint="tagger.pt")
    tagger = build_run_tagger("starter-htsat", tiny_dataset.labels, checkpoint="tagger.pt", base_dir=tmp_path)
    x = torch.from_numpy(tiny_dataset.load(tiny_dataset.clips("test")[0]))[None]
    out = tagger.tag(x)
    assert out.clip.shape == (1, len(tiny_dataset.labels))
    assert out.embedding.shape == (1, 8 * 8)  # the latent query: 8 · embed_dim
    assert out.frames.shape[1] == tagger.num_frames(x.shape[-1])
    with torch.inference_mode():
        torch.testing.assert_close(out.clip, model.tag(x).clip)
    with pytest.raises(Exception, match="other classes"):
        build_run_tagger("starter-htsat", tiny_dataset.labels[::-1], checkpoint="tagger.pt", base_dir=tmp_path)
    # the training minutes are kept with the model (the comparison table reports them)
    from ussnb.sed_training import trained_minutes

    assert 0 < trained_minutes(tmp_path) < 10


def test_both_trained_taggers_get_the_same_budget():
    from ussnb.errors import ConfigError
    from ussnb.sed_training import stage_train_config

    a, b = stage_train_config("starter-sed", _section()), stage_train_config("starter-htsat", _section())
    budget = ("steps", "batch_size", "lr", "mixup", "seed")
    assert [getattr(a, k) for k in budget] == [getattr(b, k) for k in budget]
    assert (a.arch, b.arch) == ("sed", "htsat-small")
    with pytest.raises(ConfigError, match="not a tagger trained"):
        stage_train_config("efficientat-mn04", _section())
    with pytest.raises(ConfigError, match="sed_size"):
        stage_train_config("starter-htsat", _section(sed_size="huge"))


def test_missing_pretrained_weights_fall_back_to_a_trained_tagger(tmp_path, monkeypatch):
    from ussnb.errors import ConfigError
    from ussnb.taggers.stage import resolve_run_tagger

    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(tmp_path))  # an empty weights folder
    name, why = resolve_run_tagger("htsat", "starter-htsat")
    assert name == "starter-htsat" and "HTSAT_AudioSet_Saved_1.ckpt" in why
    assert resolve_run_tagger("htsat", "") == ("htsat", "")  # no fallback: loading says where the file goes
    assert resolve_run_tagger("starter-sed", "starter-htsat") == ("starter-sed", "")
    with pytest.raises(ConfigError, match="unknown tagger"):
        resolve_run_tagger("htsatt", "")
    with pytest.raises(ConfigError, match="tagger_fallback"):
        resolve_run_tagger("htsat", "panns-cnn14")


def test_weights_present_keep_the_pretrained_tagger(tmp_path, monkeypatch):
    from ussnb.taggers.stage import resolve_run_tagger

    (tmp_path / "mn04_as_mAP_432.pt").write_bytes(b"")
    monkeypatch.setenv("USSNB_WEIGHTS_DIR", str(tmp_path))
    assert resolve_run_tagger("efficientat-mn04", "starter-sed") == ("efficientat-mn04", "")


def test_comparison_table_has_a_row_per_tagger():
    from ussnb.sed_training import comparison_markdown

    md = comparison_markdown({"starter-sed (trained)": {"map": 0.5, "sed_f1_1s": 0.25},
                              "starter-htsat": {"map": 0.625, "sed_f1_1s": 0.5}},
                             {"starter-sed (trained)": 2.04, "starter-htsat": float("nan")})
    lines = md.splitlines()
    assert lines[0] == "| tagger | mAP | segment F1 @1 s | training minutes |"
    assert lines[2] == "| starter-sed (trained) | 0.500 | 0.250 | 2.0 |"
    assert lines[3] == "| starter-htsat | 0.625 | 0.500 | – |"


def test_a_state_saved_before_a_setting_existed_resumes_at_its_default(tmp_path):
    from dataclasses import asdict

    from ussnb.trainutil import resume_state, save_state

    cfg = asdict(SedTrainConfig(steps=6))
    old = {k: v for k, v in cfg.items() if k != "arch"}  # written before `arch` existed
    save_state(tmp_path / "state.pt", config=old, step=3)
    assert resume_state(tmp_path / "state.pt", cfg, defaults=asdict(SedTrainConfig()))["step"] == 3
    other = {**cfg, "arch": "htsat-small"}  # not the default: that state did not train this model
    with pytest.warns(UserWarning, match="another configuration"):
        assert resume_state(tmp_path / "state.pt", other, defaults=asdict(SedTrainConfig())) is None
