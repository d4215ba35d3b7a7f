"""The esc50 and audioset recipes (ussnb.data.recipes.esc50, .audioset): sizes, local clips, Hugging Face rows."""
import os
import json

import numpy as np
import pytest
import soundfile as sf

from ussnb import data
from ussnb.data.recipes.audioset import convert_hf_dataset, prepare_audioset, read_segments_csv
from ussnb.errors import DataError


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


def test_two_processes_preparing_the_same_variant_at_once_both_get_it(tmp_path, shared_dir):
    """Two sweeps starting together prepared the same data variant at once and one died in mkdir (FileExistsError);
    now the second waits for the first (ussnb.io.file_lock) and finds the variant prepared."""
    import subprocess
    import sys

    code = ("from ussnb import data\n"
            "print(data.prepare_named('esc50', n_train=6, n_validation=2, n_test=2, progress=False))\n")
    env = {**os.environ, "USSNB_DATA": str(tmp_path / "data")}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    folder = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(folder) == 1
    ds = data.load(folder.pop())
    assert len(ds.clips("train")) == 6 and len(ds.clips("test")) == 2
