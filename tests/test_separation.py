"""Separation for users: streaming overlap-add, queries, hierarchical separation, the ``separate`` CLI.

Everything here is self-contained: a tiny run directory (MelTCN separator + SED tagger + class-average
conditions, random weights) is built once per session in a temporary folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ussnb.audio import stream_audio_blocks, stream_overlap_add
from ussnb.errors import AudioError, CheckpointError, ConfigError, OntologyError
from ussnb.queries import save_conditions
from ussnb.cli.batch import output_names
from ussnb.separation import (SeparationBundle, hierarchy_plan, resolve_query, separate, separate_file,
                            separate_hierarchy)
from ussnb.separators import build_separator, save_separator
from ussnb.taggers.base import TagOutput
from ussnb.taggers.sed import SedCnn, save_sed
from ussnb.taggers.stage import save_stage_tagger

SR = 16000
# in the starter mini-ontology and in the full AudioSet ontology; the last one is in neither (→ top-level leaf)
MIDS = ["/m/05zppz", "/m/05r5c", "/m/06rvn", "/t/ussnb_test_beep"]
NAMES = ["Male speech, man speaking", "Piano", "Snare drum", "Test beep"]
K = len(MIDS)
EMB = 16


def _noise(seconds, sr=SR, seed=0, amp=0.1):
    return (amp * np.random.default_rng(seed).standard_normal(int(round(seconds * sr)))).astype(np.float32)


def _make_run(root: Path, condition: str = "soft") -> Path:
    torch.manual_seed(0)
    sep = build_separator("meltcn", "tiny", condition_size=EMB if condition == "embedding" else K)
    save_separator(root / "04_training" / "separator.pt", sep, condition=condition, labels=MIDS, tagger="starter-sed")
    tagger = SedCnn(classes=K, channels=(8, 16), time_pools=(2, 2), hidden=EMB, labels=MIDS).eval()
    (root / "01_weak_labels_and_sed").mkdir(parents=True, exist_ok=True)
    save_sed(tagger, root / "01_weak_labels_and_sed" / "tagger.pt")
    save_stage_tagger(root / "01_weak_labels_and_sed", "starter-sed", MIDS, checkpoint="tagger.pt")
    rng = np.random.default_rng(0)
    q = root / "03_query_conditions"
    save_conditions(q / "conditions_soft.npz", rng.uniform(0, 1, (K, K)), kind="soft", labels=MIDS, names=NAMES)
    save_conditions(q / "conditions_embedding.npz", rng.standard_normal((K, EMB)), kind="embedding", labels=MIDS,
                    names=NAMES)
    save_conditions(q / "conditions_onehot.npz", np.eye(K), kind="onehot", labels=MIDS, names=NAMES)
    return root


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    return _make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def bundle(run_dir) -> SeparationBundle:
    return SeparationBundle.load(run_dir)


class Identity(torch.nn.Module):
    """A "separator" returning its input (the overlap-add must then return the input exactly)."""

    sample_rate = SR
    condition_size = K

    def forward(self, x, c):
        return x


def _identity_bundle(tagger=None, kind="onehot") -> SeparationBundle:
    b = SeparationBundle(model=Identity(), kind=kind, labels=list(MIDS), names=list(NAMES),
                         class_conditions=np.eye(K, dtype=np.float32), class_counts=np.ones(K), source="identity")
    b._tagger = tagger
    return b


# ------------------------------------------------------------------------------------------ overlap-add
@pytest.mark.parametrize("n", [1, 999, 8000, 16000, 32000, 40001])
@pytest.mark.parametrize("block", [700, 16000, 10 ** 6])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_stream_overlap_add_identity_is_exact(n, block, overlap):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    segment = 8000  # 16000 and 32000 are multiples of it, the other lengths are not
    hop = int(round(segment * (1 - overlap)))
    blocks = (x[i:i + block] for i in range(0, n, block))
    parts = list(stream_overlap_add(blocks, lambda c, s: c, segment, hop, batch_size=3))
    y = np.concatenate(parts)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6)
    if n >= 5 * segment and block < segment:
        assert len(parts) > 1  # yielded progressively, not all at the end


def test_stream_overlap_add_multiple_outputs_and_bad_shape():
    x = _noise(3.3)
    out = np.concatenate(list(stream_overlap_add([x[:10000], x[10000:]], lambda c, s: np.stack([c, 2 * c]),
                                                 8000, 6000, 2, n_outputs=2)), axis=1)
    np.testing.assert_allclose(out, np.stack([x, 2 * x]), atol=1e-6)
    with pytest.raises(ValueError, match="returned shape"):
        list(stream_overlap_add([x], lambda c, s: c[:, :10], 8000, 6000, 2))


def test_no_boundary_discontinuity():
    """A separator whose output is a per-chunk constant (its start index) is cross-faded into a smooth ramp."""
    x = np.zeros(10 * SR, np.float32)
    segment, hop = 2 * SR, int(1.5 * SR)
    blocks = (x[i:i + 5000] for i in range(0, x.size, 5000))
    y = np.concatenate(list(stream_overlap_add(blocks, lambda c, s: np.stack([np.full(c.shape[1], si / hop)
                                                                                for si in s]), segment, hop, 3)))
    fade = segment - hop
    assert np.max(np.abs(np.diff(y))) <= 1.0 / fade + 1e-6  # a unit step spread over the whole overlap
    assert y[0] == 0 and abs(y[-1] - (len(y) - segment) / hop) < 1.0


def test_identity_separator_from_disk_to_disk(tmp_path):
    for n in (4 * SR, 5 * SR + 123):  # a multiple of the 2 s segment and not
        x = _noise(n / SR, seed=n)
        sf.write(tmp_path / "in.wav", x, SR, subtype="FLOAT")
        info = separate_file(tmp_path / "in.wav", tmp_path / "out.wav", "Piano", _identity_bundle(),
                             residual_path=tmp_path / "res.wav", progress=False, block_seconds=0.7)
        y, sr = sf.read(tmp_path / "out.wav", dtype="float32")
        r, _ = sf.read(tmp_path / "res.wav", dtype="float32")
        assert sr == SR and sf.info(tmp_path / "out.wav").subtype == "FLOAT"
        np.testing.assert_allclose(y, x, atol=1e-6)
        np.testing.assert_allclose(r, 0.0, atol=1e-6)
        assert info["seconds"] == pytest.approx(n / SR, abs=1e-3)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


# ------------------------------------------------------------------------------------------ queries
def test_class_query_and_nearest_labels(bundle):
    q = resolve_query("piano", bundle)
    assert q.source == "class" and q.slug == "piano" and q.vector.shape == (K,)
    np.testing.assert_allclose(q.vector, bundle.class_conditions[1])
    assert resolve_query("/m/06rvn", bundle).label == "Snare drum"
    assert resolve_query(2, bundle).label == "Snare drum"
    with pytest.raises(OntologyError, match="unknown class 'pianno'.*closest: 'Piano'"):
        resolve_query("pianno", bundle)
    with pytest.raises(OntologyError, match="closest: 'Snare drum'"):
        resolve_query("snare", bundle)


def test_silent_example_is_an_error(bundle, tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    with pytest.raises(AudioError, match="silent.wav: example is silent"):
        resolve_query([tmp_path / "silent.wav"], bundle)
    sf.write(tmp_path / "loud.wav", _noise(3.0), SR)
    q = resolve_query([str(tmp_path / "loud.wav")], bundle)
    assert q.source == "example" and q.vector.shape == (K,) and "loud" in q.slug


def test_condition_type_mismatches(bundle, run_dir, tmp_path):
    with pytest.raises(CheckpointError, match=r"16-dim embedding vector .* trained with 'soft' conditions \(4 dims"):
        resolve_query(np.ones(EMB, np.float32), bundle)
    np.save(tmp_path / "emb.npy", np.ones(EMB, np.float32))
    (tmp_path / "emb.json").write_text(json.dumps({"kind": "embedding"}))
    with pytest.raises(CheckpointError, match="'embedding' condition.*trained with 'soft'"):
        resolve_query(tmp_path / "emb.npy", bundle)
    with pytest.raises(CheckpointError, match="class-average conditions for 4 classes"):
        resolve_query(run_dir / "03_query_conditions" / "conditions_soft.npz", bundle)
    np.save(tmp_path / "ok.npy", np.full(K, 0.5, np.float32))
    assert resolve_query(str(tmp_path / "ok.npy"), bundle).source == "file"

    onehot_run = _make_run(tmp_path / "onehot", "onehot")
    sf.write(tmp_path / "ex.wav", _noise(2.0), SR)
    with pytest.raises(CheckpointError, match="trained with 'onehot' conditions"):
        resolve_query([tmp_path / "ex.wav"], SeparationBundle.load(onehot_run))

    emb = SeparationBundle.load(_make_run(tmp_path / "emb", "embedding"))
    assert resolve_query("Piano", emb).vector.shape == (EMB,)
    with pytest.raises(CheckpointError, match=r"4-dim class-probability .* trained with 'embedding'"):
        resolve_query(np.ones(K, np.float32), emb)
    # an embedding model separates hierarchically too: nodes are asked for by probability-weighted class averages
    summary = separate_hierarchy(tmp_path / "ex.wav", emb, [1], threshold=0.0, out_dir=tmp_path / "h", progress=False)
    assert summary["node_condition"].startswith("probability-weighted") and summary["levels"]["1"]["nodes"]


def test_node_condition_embedding_is_weighted_class_average(tmp_path):
    from ussnb.separation import node_condition

    emb = SeparationBundle.load(_make_run(tmp_path / "emb", "embedding"))
    probs = np.array([0.8, 0.2, 0.0, 0.5], np.float32)
    c = node_condition(emb, probs, [0, 1])
    want = (0.8 * emb.class_conditions[0] + 0.2 * emb.class_conditions[1]) / 1.0
    np.testing.assert_allclose(c, want, rtol=1e-5)
    emb.class_counts = np.array([0, 0, 1, 1])  # no class of the node has an average: the segment's own condition
    seg = np.arange(EMB, dtype=np.float32)
    np.testing.assert_array_equal(node_condition(emb, probs, [0, 1], seg), seg)
    with pytest.raises(CheckpointError, match="no class-average condition"):
        node_condition(emb, probs, [0, 1])
    soft = SeparationBundle.load(_make_run(tmp_path / "soft", "soft"))
    np.testing.assert_allclose(node_condition(soft, probs, [1, 3]), [0.0, 0.2, 0.0, 0.5], atol=1e-7)


def test_bare_checkpoint_without_run(run_dir):
    import shutil

    ckpt = run_dir.parent / "bare.pt"
    shutil.copy(run_dir / "04_training" / "separator.pt", ckpt)
    b = SeparationBundle.load(ckpt)
    assert b.class_conditions is None
    assert resolve_query("Piano", b).vector.argmax() == 1  # soft: one-hot fallback, with a warning
    with pytest.raises(CheckpointError, match="no tagger is known"):
        resolve_query([ckpt], b)


# ------------------------------------------------------------------------------------------ bad inputs
def test_short_input_is_padded(bundle, tmp_path):
    x = _noise(0.3)
    sf.write(tmp_path / "short.wav", x, SR, subtype="FLOAT")
    y = separate(tmp_path / "short.wav", "Piano", bundle, progress=False)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    y2, r2 = separate(x, "Piano", bundle, progress=False, residual=True)
    np.testing.assert_allclose(y2, y, atol=1e-6)
    np.testing.assert_allclose(y2 + r2, x, atol=1e-5)


@pytest.mark.parametrize("case", ["zero_samples", "empty_file", "nan"])
def test_bad_files_are_clear_errors(bundle, tmp_path, case):
    path = tmp_path / "bad.wav"
    if case == "zero_samples":
        sf.write(path, np.zeros(0, np.float32), SR)
    elif case == "empty_file":
        path.write_bytes(b"")
    else:
        x = _noise(7.0)
        x[5 * SR + 10] = np.nan  # beyond the first block: found while streaming
        sf.write(path, x, SR, subtype="FLOAT")
    expected = {"zero_samples": "zero-length audio", "empty_file": "0 bytes", "nan": "NaN/inf"}[case]
    with pytest.raises(AudioError, match=expected):
        separate_file(path, tmp_path / "out.wav", "Piano", bundle, progress=False, block_seconds=1.0)
    assert not (tmp_path / "out.wav").exists() and not list(tmp_path.glob(".*"))
    with pytest.raises(AudioError, match=expected):
        separate_hierarchy(path, bundle, [1], out_dir=tmp_path / "h", progress=False, block_seconds=1.0)


def test_stereo_8khz_needs_resample(bundle, tmp_path):
    x = _noise(2.5, sr=8000)
    sf.write(tmp_path / "st.wav", np.stack([x, -0.5 * x], axis=1), 8000)
    with pytest.raises(AudioError, match="8000 Hz but the model works at 16000 Hz; pass --resample"):
        separate_file(tmp_path / "st.wav", tmp_path / "o.wav", "Piano", bundle, progress=False)
    info = separate_file(tmp_path / "st.wav", tmp_path / "o.wav", "Piano", bundle, progress=False, resample=True,
                         output_rate="model")
    y, sr = sf.read(tmp_path / "o.wav")
    assert sr == SR and y.shape == (2 * x.size,) and info["seconds"] == pytest.approx(2.5)
    info = separate_file(tmp_path / "st.wav", tmp_path / "o.wav", "Piano", bundle, progress=False, resample=True)
    y, sr = sf.read(tmp_path / "o.wav")  # the default: like the input
    assert sr == 8000 and y.shape == (x.size, 2) and info["seconds"] == pytest.approx(2.5)
    blocks = list(stream_audio_blocks(tmp_path / "st.wav", SR, 0.3))
    assert sum(b.size for b in blocks) == 2 * x.size and all(b.ndim == 1 for b in blocks)
    with pytest.raises(AudioError, match="pass --resample"):
        separate(x, "Piano", bundle, sr=8000, progress=False)


# ------------------------------------------------------------------------------------------ hierarchy
class StubTagger(torch.nn.Module):
    """Piano (0.9) where a 2 s segment is loud, Male speech (0.5) everywhere, nothing else."""

    sample_rate = SR
    classes = K
    embedding_size = EMB

    def tag(self, wave, frames=True):
        x = torch.as_tensor(np.asarray(wave), dtype=torch.float32)
        rms = x.pow(2).mean(-1).sqrt()
        clip = torch.zeros(x.shape[0], K)
        clip[:, 1] = 0.9 * (rms > 0.2).float()
        clip[:, 0] = 0.5
        return TagOutput(clip, clip[:, None].expand(-1, 2, -1), torch.zeros(x.shape[0], EMB))


def test_hierarchy_gates_segments_without_clicks(tmp_path):
    # 10 s: segments 0-1 loud (Piano active), 2-3 quiet, 4 loud
    x = _noise(10.0, amp=0.05, seed=3)
    loud = np.zeros_like(x, dtype=bool)
    loud[:4 * SR] = loud[8 * SR:] = True
    x[loud] *= 10
    sf.write(tmp_path / "clip.wav", x, SR, subtype="FLOAT")
    b = _identity_bundle(StubTagger(), kind="soft")
    for deep, why in (([1, 9], "whole numbers 1..6"), ([b.ontology.max_level + 1], "levels that exist: 1 ")):
        with pytest.raises(ConfigError, match=why):  # refused before anything is read or written
            separate_hierarchy(tmp_path / "clip.wav", b, levels=deep, out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    summary = separate_hierarchy(tmp_path / "clip.wav", b, levels=[1, 2], threshold=0.2, out_dir=tmp_path / "out",
                                 progress=False, block_seconds=1.3)
    folder = tmp_path / "out" / "clip"
    assert json.loads((folder / "summary.json").read_text()) == summary
    level1 = {n["label"]: n for n in summary["levels"]["1"]["nodes"]}
    assert set(level1) == {"Music", "Human sounds"}  # Test beep (a leaf missing from the ontology) never active
    assert level1["Music"]["active"] == [[0.0, 4.0], [8.0, 10.0]] and level1["Music"]["max_probability"] == 0.9
    assert level1["Human sounds"]["active"] == [[0.0, 10.0]]
    assert (folder / "level=2").is_dir() and len(list((folder / "level=2").glob("*.wav"))) == 2

    music, sr = sf.read(folder / level1["Music"]["file"], dtype="float32")
    assert sr == SR and music.shape == x.shape and sf.info(folder / level1["Music"]["file"]).subtype == "FLOAT"
    half = int(0.25 * SR)  # chunks = 2 s segments ± 0.25 s, cross-faded over 0.5 s centred on segment borders
    np.testing.assert_allclose(music[:4 * SR - half], x[:4 * SR - half], atol=1e-6)  # identity where active
    np.testing.assert_allclose(music[8 * SR + half:], x[8 * SR + half:], atol=1e-6)
    assert np.abs(music[4 * SR + half:8 * SR - half]).max() == 0.0  # silence where inactive
    # no click: the fade spreads the on/off switch over the 0.5 s cross-fade
    assert np.abs(np.diff(music)).max() <= np.abs(np.diff(x)).max() + np.abs(x).max() / (2 * half) + 1e-6
    speech, _ = sf.read(folder / level1["Human sounds"]["file"], dtype="float32")
    np.testing.assert_allclose(speech, x, atol=1e-6)


def test_hierarchy_with_run_tagger_and_mini_ontology(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(tmp_path / "nothing"))
    monkeypatch.setenv("USSNB_DATA", str(tmp_path / "data"))
    b = SeparationBundle.load(run_dir)
    assert "mini-ontology" in b.ontology.source and b.ontology.level("/t/ussnb_test_beep") == 1
    sf.write(tmp_path / "song.flac", _noise(5.0), SR)
    summary = separate_hierarchy(tmp_path / "song.flac", b, [1, 2, 3], threshold=0.0, out_dir=tmp_path / "out",
                                 progress=False)
    labels1 = {n["label"] for n in summary["levels"]["1"]["nodes"]}
    assert labels1 == {"Human sounds", "Music", "Test beep"}  # θ = 0: every node is active
    for level, entry in summary["levels"].items():
        for node in entry["nodes"]:
            path = tmp_path / "out" / "song" / node["file"]
            assert path.is_file() and node["file"].startswith(f"level={level}/")
            assert sf.info(path).frames == 5 * SR


def test_hierarchy_plan_groups_by_max():
    b = _identity_bundle()
    probs = np.array([[0.1, 0.0, 0.3, 0.0], [0.0, 0.05, 0.1, 0.0]], np.float32)
    plan = hierarchy_plan(probs, b.ontology, [1], threshold=0.2)
    assert [(t.label, t.active.tolist()) for t in plan[1]] == [("Music", [True, False])]


# ------------------------------------------------------------------------------------------ CLI
def test_cli_same_stems_residual_skip_and_force(run_dir, tmp_path, capsys):
    from ussnb.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sf.write(tmp_path / "a" / "take.wav", _noise(3.0, seed=1), SR)
    sf.write(tmp_path / "b" / "take.wav", _noise(2.0, seed=2), SR)
    out = tmp_path / "out"
    args = [str(tmp_path / "a" / "take.wav"), str(tmp_path / "b"), "--query", "Snare drum", "--checkpoint",
            str(run_dir), "--out", str(out), "--residual", "--no-progress"]
    assert main(["separate", *args]) == 0
    wavs = sorted(p.name for p in out.glob("*.wav"))
    targets = [w for w in wavs if "residual" not in w]
    assert len(wavs) == 4 and len(targets) == 2 and all("take" in w and "snare-drum" in w for w in wavs)
    lengths = sorted(sf.info(out / w).frames for w in targets)
    assert lengths == [2 * SR, 3 * SR]  # the two inputs did not overwrite each other
    summary = json.loads((out / "summary.json").read_text())
    assert [it["status"] for it in summary["items"]] == ["done", "done"] and summary["query"] == "Snare drum"
    mtimes = {w: (out / w).stat().st_mtime_ns for w in wavs}

    capsys.readouterr()
    assert main(["separate", *args]) == 0
    assert capsys.readouterr().out.count("skipped") == 2
    assert {w: (out / w).stat().st_mtime_ns for w in wavs} == mtimes
    assert [it["status"] for it in json.loads((out / "summary.json").read_text())["items"]] == ["skipped"] * 2

    assert main(["separate", *args, "--force"]) == 0
    assert all((out / w).stat().st_mtime_ns != mtimes[w] for w in wavs)

    # without --residual: exactly one file per input
    out2 = tmp_path / "out2"
    assert main(["separate", str(tmp_path / "a"), "--query", "/m/05r5c", "--checkpoint",
                 str(run_dir / "04_training" / "separator.pt"), "--out", str(out2), "--no-progress"]) == 0
    assert [p.name for p in out2.glob("*.wav")] == ["take__piano.wav"]


def test_cli_levels_and_errors(run_dir, tmp_path, capsys):
    from ussnb.cli import main

    sf.write(tmp_path / "x.wav", _noise(2.5), SR)
    sf.write(tmp_path / "x8k.wav", _noise(2.5, sr=8000), 8000)
    out = tmp_path / "out"
    code = main(["separate", str(tmp_path / "x.wav"), str(tmp_path / "x8k.wav"), "--levels", "1", "2",
                 "--threshold", "0", "--checkpoint", str(run_dir), "--out", str(out), "--no-progress",
                 "--no-resample"])
    assert code == 1  # the 8 kHz input failed (--no-resample), the other one was done
    err = capsys.readouterr().out
    assert "pass --resample" in err
    assert (out / "x" / "summary.json").is_file() and list((out / "x").glob("level=1/*.wav"))
    items = {Path(it["input"]).name: it["status"] for it in json.loads((out / "summary.json").read_text())["items"]}
    assert items == {"x.wav": "done", "x8k.wav": "failed"}
    # the same request again is skipped; another level or threshold is redone, not skipped
    args = [str(tmp_path / "x.wav"), "--checkpoint", str(run_dir), "--out", str(out), "--no-progress"]
    capsys.readouterr()
    assert main(["separate", *args, "--levels", "1", "--threshold", "0"]) == 0
    assert "skipped (done" in capsys.readouterr().out
    assert main(["separate", *args, "--levels", "1", "3", "--threshold", "0"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert "3" in json.loads((out / "x" / "summary.json").read_text())["levels"]
    assert main(["separate", *args, "--levels", "1", "--threshold", "0.5"]) == 0
    assert "skipped" not in capsys.readouterr().out
    # by default other rates are resampled
    assert main(["separate", str(tmp_path / "x8k.wav"), "--levels", "1", "--threshold", "0", "--checkpoint",
                 str(run_dir), "--out", str(tmp_path / "out8k"), "--no-progress"]) == 0

    assert main(["separate", str(tmp_path / "x.wav"), "--query", "pianno", "--checkpoint", str(run_dir),
                 "--out", str(out), "--no-progress"]) == 1
    assert "closest: 'Piano'" in capsys.readouterr().err


def test_output_names_never_collide(tmp_path):
    files = [tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav", tmp_path / "a" / "x.flac", tmp_path / "a" / "y.wav"]
    names = output_names(files)
    assert len(set(names)) == 4 and names[3] == "y" and all(n.startswith("x-") for n in names[:3])
