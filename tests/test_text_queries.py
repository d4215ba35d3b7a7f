"""Text queries without a network: BM25 ranking of classes (``Ontology.rank_text``), ``ussnb labels --text``
and ``ussnb separate --text`` (the score-weighted class-average condition of the best classes).

The full-ontology cases need the shared AudioSet metadata (skipped without it); the mini-ontology and the CLI
cases run offline on a tiny run directory (random weights, ``tests/cli/test_bad_inputs.make_run``)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.cli.test_bad_inputs import ERROR_LINE, MIDS, NAMES, SR, make_run
from ussnb.cli import main
from ussnb.errors import ConfigError, DataError, OntologyError
from ussnb.ontology import Ontology, text_terms


@pytest.fixture(scope="module")
def full(shared_dir) -> Ontology:
    return Ontology.from_dir(shared_dir / "data" / "audioset")


def _names(ranked) -> list[str]:
    return [lab.name for lab, _ in ranked]


# ------------------------------------------------------------------------------------------ normalisation
def test_text_terms_fold_plurals_ing_and_stop_words():
    assert text_terms("Barking dogs!") == ["bark", "dog"] == text_terms("Bark") + text_terms("Dog")
    assert text_terms("a dog barking in the distance") == ["dog", "bark", "distanc"]
    assert text_terms("Whistling") == text_terms("whistle") == ["whistl"]
    assert text_terms("strings thing running hissing played boxes") == ["string", "thing", "run", "hiss", "play",
                                                                        "box"]
    assert text_terms("the of a, in!") == []


# ------------------------------------------------------------------------------------------ full ontology
def test_full_ontology_rankings(full):
    dog = full.rank_text("a dog barking in the distance", top=3)
    assert {"Bark", "Dog"} & set(_names(dog)), dog
    assert _names(dog)[0] == "Bark"
    violin = full.rank_text("someone playing the violin", top=5)
    assert _names(violin)[0] == "Violin, fiddle"
    scores = [s for _, s in violin]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    assert _names(full.rank_text("a car passing by", top=1)) == ["Car passing by"]
    # classes only: abstract nodes that are not label rows never appear
    every = full.rank_text("sounds of things", top=None)
    assert {lab.mid for lab, _ in every} <= {lab.mid for lab in full.labels}


def test_name_counts_more_than_description(full):
    # "Bark" has the word in its name, "Yip" only in its description ("a sharp high-pitched bark")
    ranked = dict((lab.name, s) for lab, s in full.rank_text("bark", top=None))
    assert ranked["Bark"] > ranked["Yip"] > 0


def test_nonsense_text_lists_closest_names(full):
    with pytest.raises(OntologyError, match=r"no class .* matches the text 'dgo brking'.*closest names: 'Breaking'"):
        full.rank_text("dgo brking")
    with pytest.raises(OntologyError, match="no words to match"):
        full.rank_text("the of a")
    with pytest.raises(OntologyError, match="top"):
        full.rank_text("dog", top=0)


def test_labels_text_cli(full, shared_dir, monkeypatch, capsys):
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(shared_dir / "data" / "audioset"))
    assert main(["labels", "--text", "a dog barking in the distance", "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["score", "index", "mid"]
    rows = out[1:4]
    assert rows[0].split()[2] == "/m/05tny_" and "Animal > Domestic animals, pets > Dog > Bark" in rows[0]
    assert float(rows[0].split()[0]) >= float(rows[1].split()[0]) >= float(rows[2].split()[0]) > 0
    assert "best 3 of 527" in out[4]
    assert main(["labels", "dog"]) == 0  # the substring search is unchanged
    assert "/m/0bt9lr" in capsys.readouterr().out
    assert main(["labels", "--text", "dgo brking"]) == 1
    err = capsys.readouterr().err
    assert len(ERROR_LINE.findall(err)) == 1 and "closest names: 'Breaking'" in err and "Traceback" not in err
    assert main(["labels", "dog", "--text", "a dog"]) == 1
    assert "not both" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ mini-ontology
def test_mini_ontology_has_descriptions_and_ranks_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(tmp_path / "none"))
    monkeypatch.setenv("USSNB_DATA", str(tmp_path / "data"))
    mini = Ontology.mini()
    assert all(len(mini.description(lab.mid).split()) >= 5 for lab in mini.labels)
    assert _names(mini.rank_text("someone playing the violin", top=3))[0] == "Violin, fiddle"
    assert _names(mini.rank_text("a deep drum thump", top=1)) == ["Bass drum"]
    assert _names(mini.rank_text("a woman talking", top=1)) == ["Female speech, woman speaking"]
    sub = mini.subset(["/m/07y_7", "/m/05r5c"])
    assert sub.description("/m/07y_7") == mini.description("/m/07y_7")
    assert _names(sub.rank_text("bowed strings"))[0] == "Violin, fiddle"
    assert main(["labels", "--text", "someone playing the violin"]) == 0


# ------------------------------------------------------------------------------------------ separate --text
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("text_queries")
    run = make_run(root / "run")
    wave = (0.1 * np.random.default_rng(1).standard_normal(int(2.5 * SR))).astype(np.float32)
    sf.write(root / "street.wav", wave, SR)
    return root, run


@pytest.fixture
def offline(tiny, monkeypatch):
    root, _ = tiny
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(root / "no-meta"))  # the mini-ontology
    monkeypatch.setenv("USSNB_DATA", str(root / "data"))


def test_text_query_weights(tiny, offline):
    from ussnb.separation import SeparationBundle, text_query

    _, run = tiny
    bundle = SeparationBundle.load(run)
    q = text_query("a man talking over a piano", bundle, top=3)
    chosen = q.detail["classes"]
    assert [c["name"] for c in chosen] == ["Piano", "Male speech, man speaking"]  # only two words match
    assert sum(c["weight"] for c in chosen) == pytest.approx(1.0, abs=1e-3)
    assert chosen[0]["weight"] == pytest.approx(chosen[0]["score"] / sum(c["score"] for c in chosen), abs=1e-3)
    expected = sum(c["weight"] * bundle.class_conditions[c["index"]] for c in chosen)
    np.testing.assert_allclose(q.vector, expected, atol=1e-3)
    assert q.source == "text" and q.slug == "text-a-man-talking-over-a-piano"
    one = text_query("a man talking over a piano", bundle, top=1)
    np.testing.assert_allclose(one.vector, bundle.class_conditions[1])
    assert one.slug.endswith("-top1")
    # a class without training anchors is passed over
    bundle.class_counts = np.array([1, 0, 1, 1])
    q = text_query("a man talking over a piano", bundle)
    assert [c["name"] for c in q.detail["classes"]] == ["Male speech, man speaking"]
    assert q.detail["skipped_without_anchors"] == ["Piano"]
    with pytest.raises(DataError, match="without training anchors"):
        text_query("piano", bundle)
    with pytest.raises(ConfigError, match="--top"):
        text_query("piano", bundle, top=0)
    with pytest.raises(OntologyError, match="closest: 'Piano'"):
        text_query("pianno", bundle)


def test_separate_text_end_to_end(tiny, offline, tmp_path, capsys):
    root, run = tiny
    out = tmp_path / "out"
    argv = ["separate", str(root / "street.wav"), "--text", "a man talking over a piano", "--top", "2",
            "--checkpoint", str(run), "--out", str(out), "--no-progress", "--residual"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^\s+\d+\.\d+\s+weight 0\.\d+\s+Piano$", printed, re.M), printed
    target = out / "street__text-a-man-talking-over-a-piano-top2.wav"
    assert target.is_file() and target.with_name(target.stem + "__residual.wav").is_file()
    assert sf.info(target).frames == int(2.5 * SR)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["query_source"] == "text" and summary["text"] == "a man talking over a piano"
    assert summary["text_top"] == 2
    assert [c["mid"] for c in summary["text_classes"]] == [MIDS[1], MIDS[0]]
    assert [c["name"] for c in summary["text_classes"]] == [NAMES[1], NAMES[0]]
    assert sum(c["weight"] for c in summary["text_classes"]) == pytest.approx(1.0, abs=1e-3)
    assert summary["items"][0]["status"] == "done" and summary["items"][0]["output"] == str(target)
    # the same text again: done, skipped
    assert main(argv) == 0
    assert "skipped" in capsys.readouterr().out


@pytest.mark.parametrize("extra, words, code", [
    (["--text", "a dog barking"], ("no class of this model", "dog, bark", "its classes"), 1),
    (["--text", "pianno"], ("closest: 'piano'",), 1),
    (["--text", "the of a"], ("--text", "no words"), 1),
    (["--text", ""], ("--text", "empty"), 1),
    (["--text", "piano", "--top", "0"], ("--top",), 1),
    (["--query", "Piano", "--top", "2"], ("--top goes with --text",), 1),
    (["--text", "piano", "--query", "Piano"], ("not allowed with",), 2),
    (["--text", "piano", "--levels", "1"], ("not allowed with",), 2),
])
def test_separate_text_mistakes_are_one_line(tiny, offline, tmp_path, capsys, extra, words, code):
    root, run = tiny
    out = tmp_path / "out"
    try:
        rc = main(["separate", str(root / "street.wav"), "--checkpoint", str(run), "--out", str(out),
                   "--no-progress", *extra])
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code and "Traceback" not in err
    lines = ERROR_LINE.findall(err)
    assert len(lines) == 1, err
    for w in words:
        assert w.lower() in lines[0].lower(), lines[0]
    assert not out.exists()
