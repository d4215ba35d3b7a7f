"""Typed config: ussnb.config's sections are the one source of every pipeline default; presets have sections."""
from __future__ import annotations

import ast
from pathlib import Path

import papermill as pm
import pytest

from ussnb import config
from ussnb.errors import PipelineError
from ussnb.pipeline import RESERVED, available_presets, discover_stages, load_preset, resolve, section_values

REPO = Path(__file__).resolve().parents[1]


def test_each_notebook_declares_exactly_its_section_with_its_defaults():
    for stage in discover_stages():
        section = config.STAGE_SECTION[stage.key]
        declared = {k: v for k, v in pm.inspect_notebook(str(stage.notebook)).items() if k not in RESERVED}
        fields = config.section_fields(section)
        assert set(declared) == set(fields), stage.name
        defaults = config.defaults(section)
        for name, spec in declared.items():
            assert ast.literal_eval(spec["default"]) == defaults[name], (stage.name, name)
            assert spec["inferred_type_name"].replace(" ", "") == str(fields[name].type).replace(" ", "")


def test_train_config_is_the_train_section_plus_code_only_settings():
    from ussnb.train import TrainConfig

    cfg = TrainConfig()
    for name, value in config.defaults("train").items():
        assert getattr(cfg, name) == value
    assert {"checkpoint_every", "grad_clip", "separator_config"} <= set(vars(cfg)) - set(config.section_fields("train"))


def test_presets_are_sectioned_and_every_key_reaches_a_stage(tmp_path):
    stages = discover_stages()
    for name in available_presets():
        params = load_preset(name)
        assert all(k.rpartition(".")[0] in config.SECTIONS for k in params if "." in k), name
        resolve(stages, {k: v for k, v in params.items() if k != "threads"}, tmp_path / name)  # no unknown names
    cpu = load_preset("cpu")
    assert cpu["train.steps"] == 3000 and cpu["sed.sed_steps"] == 600 and cpu["zero_shot_classes"] == ["Tabla", "Harp"]


def test_scoped_names_reach_one_stage_and_later_keys_win(tmp_path):
    stages = discover_stages()
    # step3_threshold means two things: stage 02's demo threshold and stage 04's re-pairing
    values = resolve(stages, {"anchors.step3_threshold": 0.5}, tmp_path)
    assert values["02_anchor_mining"]["step3_threshold"] == 0.5 and "step3_threshold" not in values["04_training"]
    values = resolve(stages, {"step3_threshold": 0.4}, tmp_path)
    assert values["02_anchor_mining"]["step3_threshold"] == values["04_training"]["step3_threshold"] == 0.4
    # a top-level name reaches every stage declaring it
    values = resolve(stages, {"zero_shot_classes": ["Harp"]}, tmp_path)
    assert all(values[s]["zero_shot_classes"] == ["Harp"] for s in ("00_data", "02_anchor_mining", "06_evaluation"))
    # an override (later key) beats the preset's section value
    values = resolve(stages, load_preset("cpu") | {"steps": 7}, tmp_path)
    assert values["04_training"]["steps"] == 7
    assert section_values(load_preset("cpu") | {"steps": 7}, "train")["steps"] == 7


def test_wrong_sections_and_names_are_refused_before_anything_runs(tmp_path):
    stages = discover_stages()
    with pytest.raises(PipelineError, match="unknown section"):
        resolve(stages, {"training.steps": 5}, tmp_path)
    with pytest.raises(PipelineError, match=r"unknown parameter\(s\) \['train.sed_steps'\]"):
        resolve(stages, {"train.sed_steps": 5}, tmp_path)
    with pytest.raises(PipelineError, match="set by the pipeline"):
        resolve(stages, {"train.stage_dir": "x"}, tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: 5\n")
    with pytest.raises(PipelineError, match="section 'train' must be a mapping"):
        load_preset(str(bad))


def test_notebook_sources_take_parameters_from_the_sections():
    for src in sorted((REPO / "notebooks" / "src").glob("[0-9][0-9]_*.py")):
        text = src.read_text()
        assert text.count("# ussnb-parameters: ") == 1, src.name
        cell = text.split('# %% tags=["parameters"]', 1)[1].split("# %%", 1)[0]
        assert not any(line.split(":")[0] in {"steps", "n_train", "tagger", "levels"} for line in cell.splitlines())


def test_train_cli_reports_user_mistakes_in_one_line(tmp_path, capsys):
    from ussnb.train import main

    assert main(["--anchors", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--preset", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown preset 'nope'") and "Traceback" not in err[0]
    assert main(["--anchors", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--config", "{bad"]) == 2
    assert "--config is neither a JSON object" in capsys.readouterr().err


def test_unknown_names_are_config_errors_the_cli_reports():
    from ussnb.errors import ConfigError, UssnbError
    from ussnb.separators import build_separator
    from ussnb.taggers import get_tagger

    for call in (lambda: build_separator("nope"), lambda: build_separator("meltcn", "huge", condition_size=4),
                 lambda: get_tagger("nope")):
        with pytest.raises(ConfigError) as info:
            call()
        assert isinstance(info.value, UssnbError) and isinstance(info.value, ValueError)


def test_zs2021_preset_is_the_2021_system_on_the_zero_shot_presets_data():
    zs, zs21 = load_preset("zero-shot"), load_preset("zs2021")
    assert zs21["sed.tagger"] == "htsat" and zs21["sed.tagger_fallback"] == "starter-htsat"
    assert zs21["train.condition"] == "embedding" and zs21["train.separator"] == "unet"
    assert zs21["anchors.score_window"] == pytest.approx(200 * 10 / 1024, abs=1e-3)  # 200 HTS-AT frames
    # the same data and held-out classes as the zero-shot preset: the two systems compare in one table
    assert zs21["zero_shot_classes"] == zs["zero_shot_classes"]
    assert {k: v for k, v in zs21.items() if k.startswith("data.")} == {k: v for k, v in zs.items() if k.startswith("data.")}
