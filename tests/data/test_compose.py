"""Composing weakly labelled clips from source events (ussnb.data.compose): determinism, splits by recording."""
import json

import numpy as np
import soundfile as sf

from ussnb import data
from ussnb.data.compose import SourceEvent, assign_splits, compose_weak_dataset


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
