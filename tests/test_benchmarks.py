"""Test sets (ussnb.data.testsets) and their evaluation (ussnb.eval.protocol) on a tiny starter set made here."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from ussnb.eval import protocol
from ussnb.data import testsets as B
from ussnb.data.recipes import starter
from ussnb.data.recipes.starter.catalogue import NAME_TO_MID

CLASSES = ["Bass drum", "Snare drum", "Hi-hat", "Male speech, man speaking"]
ALL_MIDS = [m for m, _ in starter.STARTER_CLASSES]
ALL_NAMES = [n for _, n in starter.STARTER_CLASSES]


@pytest.fixture(scope="module")
def tiny_starter(tmp_path_factory):
    apt, pip = starter.missing_requirements()
    if apt or pip:
        pytest.skip(f"starter packages missing: {' '.join(apt + pip)}")
    root = tmp_path_factory.mktemp("starter")
    out = starter.prepare_starter(root, n_train=6, n_validation=2, n_test=4, classes=CLASSES, pieces_per_class=2,
                                  max_per_speaker=3, cache_dir=root / "cache", progress=False)
    return out, B.starter_source(out, root / "cache")


@pytest.fixture(scope="module")
def pairs(tiny_starter, tmp_path_factory):
    out, src = tiny_starter
    return B.prepare_starter_pairs(out, n_per_class=3, n_examples=3, root=tmp_path_factory.mktemp("b"), source=src)


@pytest.fixture(scope="module")
def music(tiny_starter, tmp_path_factory):
    return B.prepare_starter_music(n_pieces=1, seconds=3.0, source=tiny_starter[1],
                                   root=tmp_path_factory.mktemp("m"))


@pytest.fixture(scope="module")
def speech(tiny_starter, tmp_path_factory):
    out, src = tiny_starter
    return B.prepare_starter_speech(out, n_per_snr=1, source=src, root=tmp_path_factory.mktemp("s"))


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


# ------------------------------------------------------------------------------------------------- recipes
def test_pairs_deterministic_energy_matched_test_split(tiny_starter, pairs, tmp_path):
    out, src = tiny_starter
    again = B.prepare_starter_pairs(out, n_per_class=3, n_examples=3, root=tmp_path, source=src)
    assert again.checksum == pairs.checksum and again.verify()
    other = B.prepare_starter_pairs(out, n_per_class=3, n_examples=3, seed=1, root=tmp_path, source=src)
    assert other.checksum != pairs.checksum
    stamp = os.path.getmtime(again.folder / "audio.npz")  # idempotent: the marker skips the work
    assert B.prepare_starter_pairs(out, n_per_class=3, n_examples=3, root=tmp_path).folder == again.folder
    assert os.path.getmtime(again.folder / "audio.npz") == stamp

    t, r, x = pairs["target"].astype(np.float64), pairs["interferer"].astype(np.float64), pairs["mixture"]
    ratio_db = 10 * np.log10((t ** 2).sum(1) / (r ** 2).sum(1))
    np.testing.assert_allclose(ratio_db, 0.0, atol=1e-3)
    np.testing.assert_allclose(x, pairs["target"] + pairs["interferer"], atol=1e-6)
    assert x.shape[1] == 2 * B.SAMPLE_RATE and np.abs(x).max() <= 0.9 + 1e-6
    test_recs = {e.recording for e in src.test_events()}
    counts = {}
    for it in pairs.items:
        assert it["target_mid"] != it["interferer_mid"]
        assert it["target_recording"] in test_recs and it["interferer_recording"] in test_recs
        counts[it["target"]] = counts.get(it["target"], 0) + 1
    assert counts == {c: 3 for c in CLASSES}
    assert all(e["recording"] in test_recs for e in pairs.manifest["examples"])


def test_music_stems_sum_to_mix_and_are_deterministic(tiny_starter, music, tmp_path):
    again = B.prepare_starter_music(n_pieces=1, seconds=3.0, source=tiny_starter[1], root=tmp_path)
    assert again.checksum == music.checksum
    stems, parts, mix = music["stems"], music["parts"], music["mixture"]
    assert stems.shape == (1, 3, 3 * B.SAMPLE_RATE) and parts.shape == (1, 4, 3 * B.SAMPLE_RATE)
    np.testing.assert_allclose(stems.sum(axis=1), mix, atol=1e-6)
    np.testing.assert_allclose(parts.sum(axis=1), mix, atol=1e-6)
    rms = np.sqrt((parts.astype(np.float64) ** 2).mean(-1))
    np.testing.assert_allclose(rms, np.repeat(rms[:, :1], 4, axis=1), rtol=1e-4)  # every part sounds, at one level
    it = music.items[0]
    assert [p["label"] for p in it["parts"]][::3] == ["Choir", "Double bass"]
    assert it["stems"]["other"] == [it["parts"][1]["mid"], it["parts"][2]["mid"]]
    assert it["piece"] not in B.starter_render_pieces(tiny_starter[1])
    excluded = B.prepare_starter_music(n_pieces=1, seconds=3.0, exclude_pieces=[it["piece"]], root=tmp_path)
    assert excluded.items[0]["piece"] != it["piece"]


def test_speech_snrs_as_asked(tiny_starter, speech, tmp_path):
    out, src = tiny_starter
    again = B.prepare_starter_speech(out, n_per_snr=1, source=src, root=tmp_path)
    assert again.checksum == speech.checksum
    assert sorted(it["snr"] for it in speech.items) == [0.0, 5.0, 10.0, 15.0]
    for i, it in enumerate(speech.items):
        n = int(speech["length"][i])
        c, e = speech["clean"][i, :n].astype(np.float64), speech["noise"][i, :n].astype(np.float64)
        assert 10 * np.log10((c ** 2).sum() / (e ** 2).sum()) == pytest.approx(it["snr"], abs=1e-3)
        assert not speech["clean"][i, n:].any()
        assert it["speech"] == "Male speech, man speaking" and it["noise"] != it["speech"]
    np.testing.assert_allclose(speech["noisy"], speech["clean"] + speech["noise"], atol=1e-6)


def test_esc50_absent_is_a_clear_skip(tmp_path, monkeypatch):
    monkeypatch.delenv("USSNB_ESC50_DIR", raising=False)
    res = B.prepare_esc50_pairs(None, root=tmp_path)
    assert isinstance(res, B.Skipped) and res.reason.startswith("skipped: ") and "USSNB_ESC50_DIR" in res.reason
    res = B.prepare_esc50_pairs(tmp_path / "nowhere", root=tmp_path)
    assert isinstance(res, B.Skipped) and res.to_dict() == {"skipped": res.reason}
    entries = B.prepare_benchmarks(tmp_path / "not-a-dataset", root=tmp_path)
    assert list(entries) == list(B.BENCHMARKS) and all(isinstance(v, B.Skipped) for v in entries.values())


def test_esc50_pairs_when_present(tmp_path):
    res = B.prepare_esc50_pairs(n_per_class=1, n_examples=1, root=tmp_path)
    if isinstance(res, B.Skipped):
        pytest.skip(res.reason)
    again = B.prepare_esc50_pairs(n_per_class=1, n_examples=1, root=tmp_path / "again")
    assert again.checksum == res.checksum
    ratio = 10 * np.log10((res["target"].astype(np.float64) ** 2).sum(1) / (res["interferer"].astype(np.float64) ** 2).sum(1))
    np.testing.assert_allclose(ratio, 0.0, atol=1e-3)


def test_esc50_pairs_use_every_recording_of_held_out_classes(tmp_path, shared_dir):
    from ussnb.data.compose import assign_splits
    from ussnb.data.recipes.esc50 import esc50_events, find_esc50

    events = esc50_events(find_esc50())
    split_of = assign_splits(events, seed=0)
    cat = next(e.mid for e in events if e.label == "Cat")
    plain = B.prepare_esc50_pairs(n_per_class=4, n_examples=8, root=tmp_path)
    held = B.prepare_esc50_pairs(n_per_class=4, n_examples=8, root=tmp_path, holdout=[cat])
    assert held.folder != plain.folder
    recs = lambda b: {r["recording"] for r in b.manifest["examples"] if r["mid"] == cat}  # noqa: E731
    assert all(split_of[r] == "test" for r in recs(plain))
    assert len(recs(held)) > len(recs(plain)) and any(split_of[r] != "test" for r in recs(held))
    other = next(e.mid for e in events if e.label == "Pig")
    assert all(split_of[r] == "test" for r in {r["recording"] for r in held.manifest["examples"] if r["mid"] == other})


# ------------------------------------------------------------------------------------------------- evaluation
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
    assert protocol.held_out_classes(tmp_path) == ["/m/03qtq"] and protocol.held_out_classes(tmp_path / "none") == []
    assert protocol.resolve_classes(["hi-hat", "/m/0bm02"], ALL_MIDS, ALL_NAMES) == ["/m/03qtq", "/m/0bm02"]
    with pytest.raises(ValueError):
        protocol.resolve_classes(["Kazoo"], ALL_MIDS, ALL_NAMES)


def test_anchor_exclusion_leaves_held_out_classes_out(tiny_starter, tmp_path):
    """The training half of zero-shot: mine_anchor_set(..., exclude_classes) mines no anchor of those classes."""
    from ussnb import data
    from ussnb.anchors import mine_anchor_set
    from ussnb.taggers.sed import SedCnn

    ds = data.load(tiny_starter[0])
    tagger = SedCnn(classes=len(ds.labels)).eval()
    hihat = NAME_TO_MID["Hi-hat"]
    full = mine_anchor_set(ds, "train", tmp_path / "all", strategy="in-clip-random", tagger=tagger,
                           condition_types=("soft",), progress=False)
    held = mine_anchor_set(ds, "train", tmp_path / "held", strategy="in-clip-random", tagger=tagger,
                           condition_types=("soft",), exclude_classes=[hihat], progress=False)
    k = ds.label_index[hihat]
    assert (full.label == k).any() and not (held.label == k).any()
    assert set(held.label.tolist()) == set(full.label.tolist()) - {k}
    assert held.meta["exclude"] == [hihat]
