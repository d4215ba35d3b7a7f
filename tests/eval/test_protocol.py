"""The paper's §4 protocol (ussnb.eval.protocol) on the test sets of the tiny starter set of tests/tiny_starter.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from ussnb.data import testsets as B
from ussnb.data.recipes import starter
from ussnb.data.recipes.starter.catalogue import NAME_TO_MID
from ussnb.eval import protocol
from tests.tiny_starter import CLASSES

ALL_MIDS = [m for m, _ in starter.STARTER_CLASSES]
ALL_NAMES = [n for _, n in starter.STARTER_CLASSES]


class Scale(nn.Module):
    """A 'separator' returning ``gain`` × the mixture (identity: 1, the trivial floor: 0.5)."""

    registry_name = "scale"

    def __init__(self, condition_size: int, gain: float, sample_rate: int = 16000):
        super().__init__()
        self.gain, self.condition_size, self.sample_rate = gain, condition_size, sample_rate
        self.config = {"n_fft": 512, "hop": 160}

    def forward(self, x, c):
        assert x.shape[0] == c.shape[0] and c.shape[1] == self.condition_size
        return x * self.gain


def bundle(model, kind="onehot", labels=ALL_MIDS, names=ALL_NAMES, tagger=None, conditions=None, counts=None):
    from ussnb.separation import SeparationBundle

    K = len(labels)
    cond = conditions if conditions is not None else np.eye(K, dtype=np.float32)
    return SeparationBundle(model=model, kind=kind, labels=list(labels), names=list(names), class_conditions=cond,
                            class_counts=counts if counts is not None else np.ones(K, np.int64),
                            tagger_loader=(lambda: tagger) if tagger is not None else None)


def test_pairs_floor_identity_and_aggregation(pairs):
    half = protocol.evaluate_pairs(pairs, bundle(Scale(len(ALL_MIDS), 0.5)))
    s = half["summary"]
    assert s["trivial_sdri"]["median_then_mean"] == pytest.approx(3.0, abs=0.15)  # the x/2 floor on 0 dB pairs
    for r in half["rows"]:  # x/2 through the chunked path is exactly the floor
        assert r["sdri_avg"] == pytest.approx(r["trivial_sdri"], abs=1e-4)
        assert r["sdri_oracle"] == pytest.approx(r["trivial_sdri"], abs=1e-4)
        assert r["irm_sdri"] > r["trivial_sdri"]
    ident = protocol.evaluate_pairs(pairs, bundle(Scale(len(ALL_MIDS), 1.0)))
    assert all(abs(r["sdri_avg"]) < 1e-6 for r in ident["rows"])
    m = protocol.pair_metrics(half)
    assert {"sdri_avg", "sdri_oracle", "irm_sdri", "trivial_sdri"} <= set(m) and m["n_classes"] == len(CLASSES)
    per = [np.median([r["trivial_sdri"] for r in half["rows"] if r["class_name"] == c]) for c in CLASSES]
    assert m["trivial_sdri"] == pytest.approx(np.mean(per))
    # a class without training anchors (held out) has no average condition: left out of sdri_avg
    counts = np.ones(len(ALL_MIDS), np.int64)
    counts[ALL_NAMES.index("Hi-hat")] = 0
    held = protocol.pair_metrics(protocol.evaluate_pairs(pairs, bundle(Scale(len(ALL_MIDS), 0.5), counts=counts)))
    assert held["classes_without_average_condition"] == ["Hi-hat"] and held["n_items_avg"] == 9
    assert [e["which"] for e in protocol.pick_examples(half)] == ["worst", "best"]


def test_real_separator_soft_oracle_and_zero_shot(pairs):
    from ussnb.separators import build_separator
    from ussnb.taggers.sed import SedCnn

    torch.manual_seed(0)
    K = len(ALL_MIDS)
    model = build_separator("meltcn", "tiny", condition_size=K).eval()
    tagger = SedCnn(classes=K).eval()
    b = bundle(model, "soft", tagger=tagger, conditions=np.random.default_rng(0).random((K, K)).astype(np.float32))
    res = protocol.evaluate_pairs(pairs, b)
    assert all(np.isfinite(r["sdri_avg"]) and np.isfinite(r["sdri_oracle"]) for r in res["rows"])
    hihat = NAME_TO_MID["Hi-hat"]
    zs = protocol.evaluate_zero_shot(pairs, b, [hihat], held_out_in_training=True)
    assert zs["unseen_classes"] == ["Hi-hat"] and zs["n_unseen_items"] + zs["n_seen_items"] + zs["n_skipped"] == 12
    assert zs["seen_sdri"] is not None and zs["unseen_sdri"] is not None
    # seen / unseen groups: by example, class average, floor and ceiling on the same mixtures
    for part in ("seen", "unseen"):
        g = zs[part]
        assert {"by_example", "class_average", "floor", "irm", "n_items", "n_classes"} <= set(g)
        assert g["irm"] > g["floor"] > 2.5  # x/2 on 0 dB pairs: about 3 dB
    assert zs["unseen"]["n_classes"] == 1 and zs["unseen"]["by_example"] == zs["unseen_sdri"]
    assert zs["unseen"]["class_average"] == zs["unseen"]["by_example"]  # an unseen class's average = its examples
    assert zs["per_class"]["Hi-hat"]["unseen"] and not zs["per_class"]["Snare drum"]["unseen"]
    assert zs == protocol.evaluate_zero_shot(pairs, b, [hihat], held_out_in_training=True, pairs=res)  # reuse = recompute
    assert protocol.evaluate_zero_shot(pairs, b, [hihat]) == protocol.evaluate_zero_shot(pairs, b, [hihat])
    assert "note" in protocol.evaluate_zero_shot(pairs, bundle(model), [hihat])  # one-hot: no query by example
    text = protocol.dumps_metrics({"pairs": protocol.pair_metrics(res), "zs": zs})
    assert text == protocol.dumps_metrics({"pairs": protocol.pair_metrics(protocol.evaluate_pairs(pairs, b)), "zs": zs})


def test_music_and_speech_evaluation(music, speech):
    half = bundle(Scale(len(ALL_MIDS), 0.5))
    res = protocol.evaluate_music(music, half)
    s = res["summary"]
    assert set(s["museval_sdr"]) == set(B.STEMS) and all(np.isfinite(v) for v in s["museval_sdr"].values())
    assert s["sdri_avg"] is not None and len(res["part_rows"]) == 4
    assert set(s["sdri_by_instrument"]) == {p["label"] for p in music.items[0]["parts"]}
    ident = bundle(Scale(len(ALL_MIDS), 1.0))
    sp = protocol.evaluate_speech(speech, ident)["summary"]
    assert set(sp["per_snr"]) == {"0", "5", "10", "15"} and sp["n_items"] == 4
    assert sp["pesq"] == pytest.approx(sp["pesq_noisy"]) and sp["ssnr"] == pytest.approx(sp["ssnr_noisy"])
    # the noisier the input, the lower its segmental SNR
    snr_curve = [sp["per_snr"][k]["ssnr_noisy"] for k in ("0", "15")]
    assert snr_curve[0] < snr_curve[1]
    no_speech = bundle(Scale(4, 1.0), labels=ALL_MIDS[:4], names=ALL_NAMES[:4])
    assert "skipped" in protocol.evaluate_speech(speech, no_speech)["summary"]


def test_reporting_helpers(tmp_path):
    text = protocol.dumps_metrics({"b": {"x": np.float32(1.234567), "nan": float("nan"), "n": np.int64(3)}, "a": [0.1 + 0.2]})
    assert text == json.dumps({"a": [0.3], "b": {"n": 3, "nan": None, "x": 1.2346}}, indent=1, sort_keys=True) + "\n"
    rows = protocol.results_table({"p": {"sdri_avg": 1.0, "per_class": {}}, "s": {"skipped": "skipped: no"},
                             "sp": {"pesq": 2.0, "per_snr": {"0": {"pesq": 1.5}}}})
    assert {"benchmark": "sp", "metric": "snr0.pesq", "value": 1.5} in rows
    assert {"benchmark": "s", "metric": "skipped", "value": "skipped: no"} in rows
    anchors = tmp_path / "anchors" / "train"
    anchors.mkdir(parents=True)
    (anchors / "anchors.json").write_text(json.dumps({"exclude": ["/m/03qtq"]}))
    from ussnb.run import Run

    assert Run.from_dirs(anchors_dir=tmp_path).held_out_classes() == ["/m/03qtq"]
    assert Run.from_dirs(anchors_dir=tmp_path / "none").held_out_classes() == []
    assert protocol.resolve_classes(["hi-hat", "/m/0bm02"], ALL_MIDS, ALL_NAMES) == ["/m/03qtq", "/m/0bm02"]
    with pytest.raises(ValueError):
        protocol.resolve_classes(["Kazoo"], ALL_MIDS, ALL_NAMES)
