"""Combined datasets (splits per source, labels the union, held-out classes) and the folder recipe."""
import csv
import json

import numpy as np
import pytest
import soundfile as sf

from ussnb import data
from ussnb.data.combine import combine
from ussnb.data.compose import SourceEvent, compose_weak_dataset
from ussnb.data.recipes.folder import parse_labels, prepare_folder
from ussnb.errors import DataError
from ussnb.ontology import Ontology

SR = 16000


def _member(root, name, classes, shared=()):
    """A small composed dataset whose classes are ``classes`` (+ ``shared`` ones other members have too)."""
    src = root / f"{name}-src"
    src.mkdir(parents=True)
    events = []
    for c, mid in enumerate(list(classes) + list(shared)):
        for r in range(4):
            path = src / f"{c}_{r}.wav"
            t = np.arange(int(SR * 0.6)) / SR
            sf.write(path, (0.5 * np.sin(2 * np.pi * (200 + 90 * c + 7 * r) * t)).astype(np.float32), SR)
            events.append(SourceEvent(str(path), mid, f"class {mid}", f"{name}-{mid}-{r}", name, "CC0"))
    out = root / name
    compose_weak_dataset(events, out, name=name, n_clips={"train": 12, "validation": 4, "test": 4}, seed=1,
                         sample_rate=SR, clip_seconds=2.0, max_event_seconds=0.6, progress=False)
    return out


@pytest.fixture()
def members(tmp_path):
    a = _member(tmp_path, "alpha", ["/m/a1", "/m/a2", "/m/a3"], shared=["/m/s"])
    b = _member(tmp_path, "beta", ["/m/b1", "/m/b2"], shared=["/m/s"])
    return a, b


def test_combined_splits_stay_per_source_and_labels_are_the_union(members, tmp_path):
    a, b = members
    out = combine([a, b], root=tmp_path / "root")
    ds, da, db = data.load(out), data.load(a), data.load(b)
    assert ds.labels == ["/m/a1", "/m/a2", "/m/a3", "/m/s", "/m/b1", "/m/b2"]  # members' order, shared class once
    for split in ("train", "validation", "test"):
        got = {str(c.path) for c in ds.clips(split)}
        assert got == {str(c.path.resolve()) for m in (da, db) for c in m.clips(split)}
        assert all(c.clip_id.split("/")[0] in ("alpha", "beta") for c in ds.clips(split))
    # recordings of different splits never meet
    truth = ds.true_events()
    rec = {s: {e["recording"] for c in ds.clips(s) for e in truth[c.clip_id]} for s in ("train", "validation", "test")}
    assert not rec["train"] & rec["test"] and not rec["train"] & rec["validation"]
    assert ds.targets("train").shape == (len(ds.clips("train")), len(ds.labels))
    assert combine([a, b], root=tmp_path / "root") == out  # idempotent


def test_held_out_classes_are_absent_from_training_and_validation(members, tmp_path):
    a, b = members
    out = combine([a, b], holdout=["/m/a2", "/m/b1"], root=tmp_path / "root")
    ds = data.load(out)
    truth = ds.true_events()
    for split in ("train", "validation"):
        for clip in ds.clips(split):
            heard = {e["mid"] for e in truth[clip.clip_id]}  # tagged *and* untagged events
            assert not heard & {"/m/a2", "/m/b1"}, (split, clip.clip_id)
    assert any("/m/a2" in {e["mid"] for e in truth[c.clip_id]} for c in ds.clips("test"))
    info = json.loads((out / "info.json").read_text())
    assert info["holdout"] == ["/m/a2", "/m/b1"] and info["dropped_clips"]["train"] > 0
    assert info["dropped_clips"]["test"] == 0
    with pytest.raises(DataError, match="in none of"):
        combine([a, b], holdout=["/m/nope"], root=tmp_path / "root")


def test_prepare_for_run_resolves_names_and_refuses_unknown(members, tmp_path):
    a, b = members
    out = data.prepare_for_run([str(a), str(b)], holdout=["class /m/b2"], root=tmp_path / "root")
    assert json.loads((out / "info.json").read_text())["holdout"] == ["/m/b2"]
    assert data.prepare_for_run(str(a), root=tmp_path / "root") == a  # one dataset, nothing held out: itself
    with pytest.raises(DataError, match="not classes of the dataset"):
        data.prepare_for_run([str(a)], holdout=["Dog"], root=tmp_path / "root")


def test_mismatched_rates_are_refused(members, tmp_path):
    a, _ = members
    info = json.loads((a / "info.json").read_text())
    other = tmp_path / "other"
    import shutil

    shutil.copytree(a, other)
    info["name"], info["sample_rate"] = "other", 32000
    (other / "info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="share sample rate"):
        combine([a, other], root=tmp_path / "root")


# ------------------------------------------------------------------------------------------ folder recipe
def test_parse_labels_names_with_commas_and_mids():
    onto = Ontology.mini()
    assert parse_labels("Piano, Violin, fiddle", onto) == [onto.mid("Piano"), onto.mid("Violin, fiddle")]
    assert parse_labels(f"{onto.mid('Harp')}; cello", onto) == [onto.mid("Harp"), onto.mid("Cello")]
    with pytest.raises(DataError, match="unknown label 'Pianno'.*closest.*Piano"):
        parse_labels("Pianno", onto)


def _folder(tmp_path, rows, seconds=(3.0, 12.5, 1.0, 4.0, 5.0, 6.0)):
    folder = tmp_path / "mine"
    folder.mkdir()
    for i, (name, _) in enumerate(rows):
        t = np.arange(int(32000 * seconds[i % len(seconds)])) / 32000
        sf.write(folder / name, (0.3 * np.sin(2 * np.pi * (300 + 40 * i) * t)).astype(np.float32), 32000)
    with open(folder / "tags.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "labels"])
        w.writerows(rows)
    return folder


def test_folder_recipe_makes_a_weak_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("USSNB_AUDIOSET_META", raising=False)  # the mini-ontology: starter class names
    rows = [(f"p{i}.wav", "Piano") for i in range(4)] + [(f"v{i}.wav", "Violin, fiddle") for i in range(4)] \
        + [("both.wav", "Piano, Violin, fiddle")]
    folder = _folder(tmp_path, rows)
    out = prepare_folder(folder, root=tmp_path / "root", progress=False)
    ds = data.load(out)
    onto = Ontology.mini()
    assert set(ds.labels) == {onto.mid("Piano"), onto.mid("Violin, fiddle")}
    clips = [c for s in ds.splits for c in ds.clips(s)]
    assert len(clips) == 11  # the two 12.5 s files give two clips each (10 s + a 2.5 s tail, padded); others one
    for c in clips:
        x, sr = sf.read(c.path)
        assert sr == 32000 and x.shape == (320000,)
    # a file's clips share its split (no file in two splits)
    by_file = {}
    for s in ds.splits:
        for row in (out / s / "metadata.jsonl").read_text().splitlines():
            r = json.loads(row)
            by_file.setdefault(r["source_file"], set()).add(s)
    assert all(len(v) == 1 for v in by_file.values())
    assert prepare_folder(folder, root=tmp_path / "root", progress=False) == out


def test_folder_recipe_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("USSNB_AUDIOSET_META", raising=False)
    folder = _folder(tmp_path, [("a.wav", "Piano"), ("b.wav", "Dgo barking")])
    with pytest.raises(DataError, match=r"tags.csv:3: unknown label 'Dgo barking'"):
        prepare_folder(folder, root=tmp_path / "root", progress=False)
    (folder / "tags.csv").write_text("file,labels\nmissing.wav,Piano\n")
    with pytest.raises(DataError, match="not found"):
        prepare_folder(folder, root=tmp_path / "root", progress=False)
    (folder / "tags.csv").write_text("name,tags\na.wav,Piano\n")
    with pytest.raises(DataError, match="columns 'file' and 'labels'"):
        prepare_folder(folder, root=tmp_path / "root", progress=False)


def test_cli_prepares_a_folder(tmp_path, monkeypatch, capsys):
    from ussnb.cli import main

    monkeypatch.delenv("USSNB_AUDIOSET_META", raising=False)
    monkeypatch.setenv("USSNB_DATA", str(tmp_path / "root"))
    folder = _folder(tmp_path, [(f"p{i}.wav", "Piano") for i in range(3)] + [(f"h{i}.wav", "Harp") for i in range(3)])
    assert main(["data", "prepare", "folder", str(folder), "--tags", str(folder / "tags.csv"),
                 "--dataset-name", "mine"]) == 0
    out = capsys.readouterr().out
    assert "prepared mine" in out and "dataset=" in out
    assert data.load(tmp_path / "root" / "mine").labels
    assert main(["data", "prepare", "folder"]) == 1  # no folder given: a clear error, not a traceback
    assert "give the folder" in capsys.readouterr().err
    assert main(["data", "prepare", "esc50", str(folder)]) == 1
