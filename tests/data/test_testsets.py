"""The test sets (ussnb.data.testsets) on the tiny starter set of tests/tiny_starter.py: deterministic, energy- and
SNR-matched, from the test split only; ESC-50 when present, a clear skip when not."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ussnb.data import testsets as B
from tests.tiny_starter import CLASSES


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
