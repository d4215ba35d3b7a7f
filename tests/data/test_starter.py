"""The offline starter dataset: requirements messages, splits, determinism, labels, onsets, mini-ontology.

The build tests make a small starter set (6 classes, 12/4/4 clips) twice from scratch, in separate data
roots and caches, and compare them byte for byte. They need the Debian packages of
``STARTER_APT_PACKAGES``; without them they skip, naming the install command.
"""
from __future__ import annotations

import csv
import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path

import pytest

from ussnb.data.compose import SourceEvent, is_complete
from ussnb.data.recipes import starter
from ussnb.data.recipes.starter import catalogue, requirements, samples
from ussnb.errors import DataError

REPO = Path(__file__).resolve().parents[2]
MINI_ONTOLOGY = REPO / "ussnb" / "resources" / "mini_ontology.json"

SMALL = dict(
    n_train=12, n_validation=4, n_test=4, seed=3, progress=False,
    classes=["Bass drum", "Hi-hat", "Tabla", "Female speech, woman speaking", "Violin, fiddle", "Cello"],
    pieces_per_class=6, max_per_speaker=6,
)


# ------------------------------------------------------------------------------------------------------
# requirements
# ------------------------------------------------------------------------------------------------------
def _pretend_missing(monkeypatch, *missing: str) -> None:
    monkeypatch.setattr(requirements, "_package_present", lambda package: package not in missing)


def test_missing_apt_package_names_it_and_the_command(monkeypatch):
    _pretend_missing(monkeypatch, "hydrogen-drumkits")
    with pytest.raises(DataError) as err:
        starter.check_requirements()
    msg = str(err.value)
    assert "hydrogen-drumkits is not installed" in msg
    assert "sudo apt-get install -y --no-install-recommends hydrogen-drumkits`" in msg


def test_missing_several_packages_and_pip(monkeypatch):
    _pretend_missing(monkeypatch, "klettres-data", "fluidsynth", "music21")
    with pytest.raises(DataError) as err:
        starter.check_requirements()
    msg = str(err.value)
    assert "klettres-data, fluidsynth are not installed" in msg
    assert "apt-get install -y --no-install-recommends klettres-data fluidsynth`" in msg
    assert "music21 is not installed: run `pip install music21`" in msg


def test_collect_and_prepare_check_requirements_first(monkeypatch, tmp_path):
    _pretend_missing(monkeypatch, "sonic-pi-samples")
    with pytest.raises(DataError, match="sonic-pi-samples is not installed"):
        starter.collect_starter_events(tmp_path / "cache", progress=False)
    with pytest.raises(DataError, match="sonic-pi-samples is not installed"):
        starter.prepare_starter(tmp_path, progress=False)


def test_install_requirements_without_root_raises_the_clear_message(monkeypatch):
    _pretend_missing(monkeypatch, "lmms-common")
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 1000)
    ran = []
    monkeypatch.setattr(requirements.subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(DataError, match=r"lmms-common is not installed: run `sudo apt-get install"):
        starter.install_requirements()
    assert ran == []


def test_unknown_class_is_a_clear_error():
    with pytest.raises(DataError, match="not a starter class"):
        catalogue.select_classes(["Kazoo"])


# ------------------------------------------------------------------------------------------------------
# pure helpers
# ------------------------------------------------------------------------------------------------------
def test_group_splits_keep_groups_together():
    events = []
    for g, n in [("kitA", 6), ("kitB", 5), ("kitC", 4), ("kitD", 3), ("kitE", 2)]:
        for i in range(n):
            events.append(SourceEvent(f"{g}{i}.wav", "/m/0bm02", "Bass drum", f"{g}::{i}", "pkg", "CC0"))
    for i in range(10):  # one group only: falls back to a split by recording
        events.append(SourceEvent(f"t{i}.wav", "/m/01p970", "Tabla", f"tabla::{i}", "pkg", "CC0"))
    split_of, mode = starter.assign_group_splits(events, seed=0)
    assert mode == {"Bass drum": "by group", "Tabla": "by recording"}
    per_group = defaultdict(set)
    for ev in events[:20]:
        per_group[starter.recording_group(ev.recording)].add(split_of[ev.recording])
    assert all(len(s) == 1 for s in per_group.values())
    assert {s for splits in per_group.values() for s in splits} == {"train", "validation", "test"}
    tabla = [split_of[f"tabla::{i}"] for i in range(10)]
    assert tabla.count("test") == 2 and tabla.count("validation") == 1
    assert starter.assign_group_splits(events, seed=0) == (split_of, mode)


def test_excerpts_are_short_and_inside_the_recording():
    import numpy as np

    sr = 16000
    rng = np.random.default_rng(0)
    wave = np.zeros(sr * 11, dtype=np.float32)
    for start in (0.5, 3.0, 6.2, 8.0):  # four 1.8 s "words"
        a = int(start * sr)
        wave[a:a + int(1.8 * sr)] = 0.3 * rng.standard_normal(int(1.8 * sr))
    ex = samples.excerpts_of(wave, sr)
    assert 1 <= len(ex) <= 3
    for s, e in ex:
        assert 0 <= s < e <= 11.0 and e - s <= starter.MAX_EVENT_SECONDS + 1e-6


# ------------------------------------------------------------------------------------------------------
# mini-ontology
# ------------------------------------------------------------------------------------------------------
def test_mini_ontology_matches_starter_classes():
    mini = json.loads(MINI_ONTOLOGY.read_text())
    labels = {row["mid"]: row for row in mini["labels"]}
    assert set(labels) == {mid for mid, _ in starter.STARTER_CLASSES}
    assert len(starter.STARTER_CLASSES) >= 25
    for mid, name in starter.STARTER_CLASSES:
        assert labels[mid]["name"] == name and 0 <= labels[mid]["index"] < 527
    nodes = {n["id"]: n for n in mini["nodes"]}
    children = {c for n in mini["nodes"] for c in n["child_ids"]}
    assert all(c in nodes for c in children)
    tops = [n for n in nodes if n not in children]
    assert set(tops) <= {"/m/0dgw9r", "/m/04rlf", "/m/0jbk", "/t/dd00041", "/m/059j3w", "/t/dd00098",
                         "/t/dd00123"}  # AudioSet's level-1 nodes
    # every class is reachable from a top node
    reach, stack = set(), list(tops)
    while stack:
        node = stack.pop()
        if node not in reach:
            reach.add(node)
            stack.extend(nodes[node]["child_ids"])
    assert set(labels) <= reach


def test_mini_ontology_agrees_with_audioset(shared_dir, tmp_path):
    import subprocess
    import sys

    meta = shared_dir / "data" / "audioset"
    with open(meta / "class_labels_indices.csv", newline="") as f:
        rows = {r["mid"]: r for r in csv.DictReader(f)}
    mini = json.loads(MINI_ONTOLOGY.read_text())
    for row in mini["labels"]:
        assert rows[row["mid"]]["display_name"] == row["name"]
        assert int(rows[row["mid"]]["index"]) == row["index"]
    out = tmp_path / "mini.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "make_mini_ontology.py"), "--ontology",
                    str(meta / "ontology.json"), "--labels", str(meta / "class_labels_indices.csv"),
                    "--out", str(out)], check=True, capture_output=True)
    assert json.loads(out.read_text()) == mini, "mini_ontology.json is stale: rerun tools/make_mini_ontology.py"


# ------------------------------------------------------------------------------------------------------
# building a small starter set
# ------------------------------------------------------------------------------------------------------
def _need_packages():
    apt, pip = starter.missing_requirements()
    if apt or pip:
        pytest.skip(f"starter packages missing: {' '.join(apt + pip)} "
                    f"(`sudo apt-get install --no-install-recommends {' '.join(starter.STARTER_APT_PACKAGES)}`)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    _need_packages()
    roots = []
    for i in range(2):
        root = tmp_path_factory.mktemp(f"starter{i}")
        starter.prepare_starter(root, **SMALL)
        roots.append(root / "starter")
    return roots


def _digest_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_build_is_deterministic(built):
    a, b = built
    clips_a = [r["file_name"] for s in ("train", "validation", "test") for r in _jsonl(a / s / "metadata.jsonl")]
    clips_b = [r["file_name"] for s in ("train", "validation", "test") for r in _jsonl(b / s / "metadata.jsonl")]
    assert clips_a == clips_b and len(clips_a) == 20
    assert _digest_tree(a) == _digest_tree(b)


def test_layout_marker_and_sources(built):
    out = built[0]
    for split, n in (("train", 12), ("validation", 4), ("test", 4)):
        assert len(list((out / split).glob("*.flac"))) == n
        assert len(_jsonl(out / split / "metadata.jsonl")) == n
    assert is_complete(out)
    text = (out / "SOURCES.md").read_text()
    for package in ("hydrogen-drumkits", "sonic-pi-samples", "asterisk-core-sounds-en-g722",
                    starter.RENDER_SOURCE):
        assert package in text
    assert "rendered" in text


def test_no_recording_in_two_splits(built):
    splits = defaultdict(set)
    for clip in _jsonl(built[0] / "events.jsonl"):
        for ev in clip["events"]:
            splits[ev["recording"]].add(clip["split"])
    assert splits and all(len(s) == 1 for s in splits.values())


def test_labels_are_audioset_mids_of_the_mini_ontology(built):
    mini = json.loads(MINI_ONTOLOGY.read_text())
    index = {row["mid"]: row["index"] for row in mini["labels"]}
    for split in ("train", "validation", "test"):
        for row in _jsonl(built[0] / split / "metadata.jsonl"):
            assert row["labels"] and all(mid in index for mid in row["labels"])
    info = json.loads((built[0] / "info.json").read_text())
    assert {c["mid"] for c in info["classes"]} <= set(index)


def test_onsets_lie_inside_clips_and_tags_match_labelled_events(built):
    out = built[0]
    tags = {r["clip_id"]: set(r["labels"]) for s in ("train", "validation", "test")
            for r in _jsonl(out / s / "metadata.jsonl")}
    for clip in _jsonl(out / "events.jsonl"):
        for ev in clip["events"]:
            assert 0.0 <= ev["onset"] < ev["offset"] <= 10.0 + 1e-6
            assert ev["offset"] - ev["onset"] <= starter.MAX_EVENT_SECONDS + 1e-3
        assert tags[clip["clip_id"]] == {e["mid"] for e in clip["events"] if e["labelled"]}


def test_prepare_is_idempotent_and_info(built):
    out = built[0]
    before = (out / "info.json").stat().st_mtime_ns
    t0 = time.perf_counter()
    again = starter.prepare_starter(out.parent, **SMALL)
    assert again == out and time.perf_counter() - t0 < 2.0
    assert (out / "info.json").stat().st_mtime_ns == before
    info = starter.starter_info(out.parent)
    for key in ("n_classes", "n_clips", "hours", "n_packages", "min_recordings_per_class"):
        assert key in info
    assert info["n_classes"] == 6
    assert info["n_clips"] == {"train": 12, "validation": 4, "test": 4}
    assert info["n_packages"] >= 4
    assert info["min_recordings_per_class"] >= 6


def test_starter_info_without_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="ussnb data prepare starter"):
        starter.starter_info(tmp_path)
