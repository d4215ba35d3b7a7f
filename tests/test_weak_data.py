import json

import numpy as np
import pytest
import soundfile as sf

from ussnb import data
from ussnb.data.compose import SourceEvent, assign_splits, compose_weak_dataset
from ussnb.data.recipes.audioset import convert_hf_dataset, prepare_audioset, read_segments_csv
from ussnb.data.weak import BalancedSampler
from ussnb.errors import DataError


def test_balanced_sampler_distinct_and_even():
    rng = np.random.default_rng(0)
    targets = rng.random((200, 12)) < 0.15
    targets[np.arange(12), np.arange(12)] = True  # every class has a clip
    sampler = BalancedSampler(targets, batch_size=4, seed=1)
    visits = np.zeros(12, int)
    for _ in range(30):  # 120 draws = 10 epochs of 12 classes
        batch = sampler.next_batch()
        classes = [k for k, _ in batch]
        assert len(set(classes)) == len(classes) == 4
        for k, clip in batch:
            assert targets[clip, k]
            visits[k] += 1
    assert visits.max() - visits.min() <= 1, visits


def test_balanced_sampler_ranks_shard_and_resume():
    targets = np.eye(8, dtype=bool).repeat(3, axis=0)
    a = BalancedSampler(targets, 4, seed=3, rank=0, world_size=2)
    b = BalancedSampler(targets, 4, seed=3, rank=1, world_size=2)
    for _ in range(5):
        ba, bb = a.next_batch(), b.next_batch()
        assert len(ba) == len(bb) == 2 and not {k for k, _ in ba} & {k for k, _ in bb}
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(3)]
    c = BalancedSampler(targets, 4, seed=99, rank=0, world_size=2)
    c.load_state_dict(json.loads(json.dumps(state)))
    assert [c.next_batch() for _ in range(3)] == expected
    with pytest.raises(DataError, match="distinct classes"):
        BalancedSampler(targets, 9)


def _events(tmp_path, n_classes=4, n_recordings=5):
    events = []
    sr = 16000
    for c in range(n_classes):
        for r in range(n_recordings):
            path = tmp_path / f"c{c}_r{r}.wav"
            t = np.arange(int(sr * (0.5 + 0.1 * r))) / sr
            sf.write(path, (0.5 * np.sin(2 * np.pi * (200 + 150 * c + 10 * r) * t)).astype(np.float32), sr)
            events.append(SourceEvent(str(path), f"/m/c{c}", f"class {c}", f"rec{c}-{r}", "test", "CC0"))
    return events


def test_compose_is_deterministic_and_splits_by_recording(tmp_path):
    events = _events(tmp_path / "src", 4, 5) if (tmp_path / "src").mkdir() is None else None
    sizes = {"train": 6, "validation": 3, "test": 3}
    a = compose_weak_dataset(events, tmp_path / "a", name="t", n_clips=sizes, seed=5, progress=False)
    b = compose_weak_dataset(events, tmp_path / "b", name="t", n_clips=sizes, seed=5, progress=False)
    for split in sizes:
        files_a = sorted((a / split).glob("*.flac"))
        assert [f.read_bytes() for f in files_a] == [(b / split / f.name).read_bytes() for f in files_a]
    truth = [json.loads(x) for x in (a / "events.jsonl").read_text().splitlines()]
    split_of_rec = {}
    for row in truth:
        for ev in row["events"]:
            assert split_of_rec.setdefault(ev["recording"], row["split"]) == row["split"]
            assert 0 <= ev["onset"] < ev["offset"] <= 10.0
    ds = data.load(a)
    assert ds.targets("train").any(axis=1).all()  # every clip has >= 1 tag
    assert ds.hf("test").num_rows == 3


def test_assign_splits_gives_each_class_test_recordings(tmp_path):
    (tmp_path / "s").mkdir()
    split = assign_splits(_events(tmp_path / "s", 3, 6), seed=0)
    for c in range(3):
        assert {split[f"rec{c}-{r}"] for r in range(6)} == {"train", "validation", "test"}


def test_esc50_weak_and_info(tmp_path, shared_dir, monkeypatch):
    monkeypatch.setenv("USSNB_DATA", str(tmp_path))
    path = data.prepare_named("esc50", n_train=8, n_validation=4, n_test=4, progress=False)
    assert "variants" in str(path)  # non-default sizes never overwrite the default folder
    summary = data.info(path)
    assert summary["n_clips"] == {"train": 8, "validation": 4, "test": 4}
    assert summary["n_classes"] >= 30 and summary["hours"] == pytest.approx(16 * 10 / 3600, abs=1e-3)


def test_audioset_local_loader_on_fixture(tmp_path, monkeypatch):
    monkeypatch.setenv("USSNB_DATA", str(tmp_path / "data"))
    clips = tmp_path / "clips"
    clips.mkdir()
    sr = 32000
    for ytid in ("abc123", "def456"):
        sf.write(clips / f"Y{ytid}.wav", np.random.default_rng(0).uniform(-0.1, 0.1, sr).astype(np.float32), sr)
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(
        "# Segments csv created Sun Mar  5 10:54:25 2017\n"
        "# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        'abc123, 30.000, 40.000, "/m/09x0r,/m/0bt9lr"\n'
        'def456, 0.000, 10.000, "/m/01yrx"\n'
        'zzz999, 0.000, 10.000, "/m/01yrx"\n'
    )
    assert read_segments_csv(csv)[0]["labels"] == ["/m/09x0r", "/m/0bt9lr"]
    out = prepare_audioset({"test": csv}, {"test": clips}, label_order=["/m/09x0r", "/m/0bt9lr", "/m/01yrx"])
    ds = data.load(out)
    assert [c.clip_id for c in ds.clips("test")] == ["abc123", "def456"]
    assert ds.targets("test").tolist() == [[True, True, False], [False, False, True]]
    assert json.loads((out / "info.json").read_text())["missing_clips"] == {"test": 1}
    assert ds.load(ds.clips("test")[0]).shape == (sr,)
    with pytest.raises(DataError, match="no true event times"):
        ds.true_events()


def test_hf_conversion(tmp_path):
    import datasets

    rows = {"audio": [{"array": np.zeros(16000, np.float32) + 0.01, "sampling_rate": 16000}],
            "labels": [[0, 2]]}
    ds = datasets.Dataset.from_dict(rows)
    out = convert_hf_dataset(ds, "train", tmp_path, label_names=["/m/a", "/m/b", "/m/c"],
                             label_order=["/m/a", "/m/b", "/m/c"])
    weak = data.load(out)
    assert weak.clips("train")[0].labels == ("/m/a", "/m/c")
    assert weak.load(weak.clips("train")[0]).shape == (32000,)


def test_unprepared_dataset_message(tmp_path, monkeypatch):
    monkeypatch.setenv("USSNB_DATA", str(tmp_path))
    with pytest.raises(DataError, match="ussnb data prepare starter"):
        data.load("starter")
