"""Every user mistake on the ``ussnb`` command line ends in exit code 1 or 2 and one clear error line — never a
traceback — and nothing already finished is lost.

One tiny run directory (MelTCN separator + SED tagger + class-average conditions, random weights) and one
finished output folder are built once for the module; each case runs ``ussnb.cli.main(argv)`` in-process
(two also through ``python -m ussnb.cli``). Pipeline cases are refused before any notebook starts."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import soundfile as sf
import torch

from ussnb.cli import main
from ussnb.queries import save_conditions
from ussnb.separation import ontology_for
from ussnb.separators import build_separator, save_separator
from ussnb.taggers.sed import SedCnn, save_sed
from ussnb.taggers.stage import save_stage_tagger

SR = 16000
MIDS = ["/m/05zppz", "/m/05r5c", "/m/06rvn", "/t/ussnb_test_beep"]  # the last one is in no ontology
NAMES = ["Male speech, man speaking", "Piano", "Snare drum", "Test beep"]
K = len(MIDS)
ERROR_LINE = re.compile(r"^ussnb(?: [\w-]+)*: error: (.+)$", re.M)  # ours and argparse's


def make_run(root: Path) -> Path:
    """A tiny run directory (random weights) for the CLI's and the API's tests (tests/test_api.py)."""
    torch.manual_seed(0)
    sep = build_separator("meltcn", "tiny", condition_size=K)
    save_separator(root / "04_training" / "separator.pt", sep, condition="soft", labels=MIDS, tagger="starter-sed")
    sed = root / "01_weak_labels_and_sed"
    sed.mkdir(parents=True, exist_ok=True)
    save_sed(SedCnn(classes=K, channels=(8, 16), time_pools=(2, 2), hidden=16, labels=MIDS).eval(), sed / "tagger.pt")
    save_stage_tagger(sed, "starter-sed", MIDS, checkpoint="tagger.pt")
    save_conditions(root / "03_query_conditions" / "conditions_soft.npz",
                    np.random.default_rng(0).uniform(0, 1, (K, K)), kind="soft", labels=MIDS, names=NAMES)
    return root


def _env(root: Path) -> dict[str, str]:
    # the starter mini-ontology (not the full AudioSet one from the shared folder): its depth is known
    return {"USSNB_DATA": str(root / "data"), "USSNB_AUDIOSET_META": str(root / "no-meta")}


def _snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns,
                                         hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_inputs")
    paths = {"root": root, "run": make_run(root / "run")}
    rng = np.random.default_rng(0)
    sf.write(root / "good.wav", (0.1 * rng.standard_normal(int(2.5 * SR))).astype(np.float32), SR)
    (root / "in").mkdir()
    sf.write(root / "in" / "a.wav", (0.1 * rng.standard_normal(2 * SR)).astype(np.float32), SR)
    (root / "empty").mkdir()
    (root / "notaudio.wav").write_text("this is text, not audio\n")
    (root / "notes.txt").write_text("a text file\n")
    (root / "fake.pt").write_text("a text file renamed .pt\n")
    torch.save({"weights": torch.zeros(3)}, root / "other.pt")  # a torch file, but not a ussnb checkpoint
    (root / "badmeta").mkdir()
    (root / "badmeta" / "ontology.json").write_text("{ not json")
    (root / "badmeta" / "class_labels_indices.csv").write_text("index,mid,display_name\n")
    paths.update({k: root / v for k, v in [("good", "good.wav"), ("infolder", "in"), ("empty", "empty"),
                                           ("notaudio", "notaudio.wav"), ("text", "notes.txt"),
                                           ("fake", "fake.pt"), ("other", "other.pt"), ("badmeta", "badmeta"),
                                           ("missing", "missing.wav"), ("done", "done")]})
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _env(root).items():
            mp.setenv(key, value)
        # the ontology the run's model uses: one level deeper than it has is refused
        depth = ontology_for(MIDS, NAMES).max_level
        assert depth < 6
        paths["deeper"] = depth + 1
        # a finished output: later bad invocations into this folder must leave it exactly as it is
        assert main(["separate", str(paths["good"]), "--query", "Piano", "--checkpoint", str(paths["run"]),
                     "--out", str(paths["done"]), "--no-progress"]) == 0
    assert (paths["done"] / "good__piano.wav").is_file()
    return {k: str(v) for k, v in paths.items()}


class Case(NamedTuple):
    id: str
    argv: str  # shell-like, with {placeholders} from the `files` fixture and {out} (a fresh folder)
    words: tuple[str, ...]  # found (case-insensitively) in the error line
    code: int = 1  # 1: ussnb's own error, 2: argparse's
    made: tuple[str, ...] = ()  # files that must exist afterwards (finished outputs kept)


SEP = "separate {good} --checkpoint {run} --out {out} --no-progress"
SEPQ = SEP + " --query Piano"
CASES = [
    # ---- separate: numbers out of range / of the wrong type
    Case("overlap-1", SEPQ + " --overlap 1", ("--overlap", "[0, 1)")),
    Case("overlap-negative", SEPQ + " --overlap -0.5", ("--overlap",)),
    Case("overlap-not-a-number", SEPQ + " --overlap abc", ("--overlap", "invalid float"), code=2),
    Case("segment-negative", SEPQ + " --segment -1", ("--segment", "> 0")),
    Case("segment-zero", SEPQ + " --segment 0", ("--segment",)),
    Case("segment-nan", SEPQ + " --segment nan", ("--segment", "nan")),
    Case("segment-huge", SEPQ + " --segment 1e12", ("--segment", "at most")),
    Case("batch-size-0", SEPQ + " --batch-size 0", ("--batch-size", "1..")),
    Case("batch-size-float", SEPQ + " --batch-size 1.5", ("--batch-size", "invalid int"), code=2),
    Case("threads-negative", SEPQ + " --threads -1", ("threads",)),
    Case("threads-huge", SEPQ + " --threads 100000", ("threads", "at most")),
    Case("threshold-2", SEP + " --levels 1 --threshold 2", ("--threshold", "[0, 1]")),
    Case("threshold-negative", SEP + " --levels 1 --threshold -0.1", ("--threshold",)),
    Case("levels-9", SEP + " --levels 9", ("--levels", "1..6")),
    Case("levels-0", SEP + " --levels 1 0", ("--levels", "got 0")),
    Case("levels-deeper-than-ontology", SEP + " --levels {deeper}", ("--levels", "levels that exist", "1 (")),
    # ---- separate: queries, example files, checkpoints
    Case("query-empty", SEP + " --query ''", ("--query", "empty")),
    Case("query-unknown-class", SEP + " --query pianno", ("unknown class", "piano")),
    Case("query-and-levels", SEPQ + " --levels 1", ("not allowed with",), code=2),
    Case("example-missing", SEP + " --example {missing}", ("missing.wav", "no such")),
    Case("example-not-audio", SEP + " --example {text}", ("notes.txt", "audio")),
    Case("example-is-folder", SEP + " --example {infolder}", ("folder",)),
    Case("checkpoint-missing", "separate {good} --query Piano --checkpoint {root}/nope.pt --out {out}",
         ("nope.pt", "no such checkpoint")),
    Case("checkpoint-is-text", "separate {good} --query Piano --checkpoint {fake} --out {out}",
         ("fake.pt", "not a pytorch checkpoint")),
    Case("checkpoint-not-ussnb", "separate {good} --query Piano --checkpoint {other} --out {out}",
         ("other.pt", "not a ussnb checkpoint")),
    Case("checkpoint-folder-not-a-run", "separate {good} --query Piano --checkpoint {empty} --out {out}",
         ("not a pipeline run directory",)),
    Case("checkpoint-option-missing", "separate {good} --query Piano --out {out}", ("--checkpoint", "required"),
         code=2),
    # ---- separate: inputs and output folder
    Case("input-missing", "separate {missing} --query Piano --checkpoint {run} --out {out}",
         ("missing.wav", "no such")),
    Case("input-empty-folder", "separate {empty} --query Piano --checkpoint {run} --out {out}",
         ("no audio files",)),
    Case("input-not-audio", "separate {notaudio} --query Piano --checkpoint {run} --out {out} --no-progress",
         ("1 input(s) failed", "notaudio.wav", "unreadable"), made=("{out}/summary.json",)),
    Case("input-given-twice", "separate {good} {good} --query Piano --checkpoint {run} --out {out}",
         ("good.wav", "given twice")),
    Case("input-file-also-in-folder", "separate {infolder} {infolder}/a.wav --query Piano --checkpoint {run} "
         "--out {out}", ("a.wav", "given twice", "through the folder")),
    Case("out-is-a-file", "separate {good} --query Piano --checkpoint {run} --out {text}", ("--out", "is a file")),
    Case("out-under-a-file", "separate {good} --query Piano --checkpoint {run} --out {text}/sub",
         ("--out", "is a file")),
    Case("out-inside-input-folder", "separate {infolder} --query Piano --checkpoint {run} --out {infolder}/sub",
         ("inside the input folder",)),
    Case("out-unwritable", "separate {good} --query Piano --checkpoint {run} --out {unwritable} --no-progress",
         ("--out", "writ")),
    # ---- separate: finished outputs are kept
    Case("good-then-bad-input", "separate {good} {notaudio} --query Piano --checkpoint {run} --out {out} "
         "--no-progress", ("1 input(s) failed", "notaudio.wav", "kept"), made=("{out}/good__piano.wav",)),
    Case("done-folder-bad-overlap-force", "separate {good} --query Piano --checkpoint {run} --out {done} --force "
         "--overlap 1", ("--overlap",)),
    Case("done-folder-missing-second-input", "separate {good} {missing} --query Piano --checkpoint {run} "
         "--out {done} --force", ("missing.wav",)),
    Case("done-folder-bad-checkpoint", "separate {good} --query Piano --checkpoint {fake} --out {done} --force",
         ("fake.pt",)),
    # ---- pipeline (all refused before a notebook runs)
    Case("pipeline-unknown-preset", "pipeline --preset nope --run-dir {out}/run", ("unknown preset", "nope")),
    Case("pipeline-unknown-param", "pipeline --preset smoke --run-dir {out}/run -p bogus=1",
         ("unknown parameter", "bogus")),
    Case("pipeline-param-no-equals", "pipeline --preset smoke --run-dir {out}/run -p steps", ("key=value",)),
    Case("pipeline-param-not-int", "pipeline --preset smoke --run-dir {out}/run -p steps=abc",
         ("wrong parameter type", "steps")),
    Case("pipeline-param-float-for-int", "pipeline --preset smoke --run-dir {out}/run -p n_train=1.5",
         ("wrong parameter type", "n_train")),
    Case("pipeline-threads-negative", "pipeline --preset smoke --run-dir {out}/run --threads -1", ("threads",)),
    Case("pipeline-unknown-stage", "pipeline --preset smoke --run-dir {out}/run --stages 99",
         ("unknown stage", "99")),
    Case("pipeline-run-dir-is-a-file", "pipeline --preset smoke --run-dir {text}", ("--run-dir", "is a file")),
    # ---- data
    Case("data-no-action", "data", ("choose an action",), code=2),
    Case("data-unknown-dataset", "data prepare nope", ("invalid choice",), code=2),
    Case("data-segments-without-equals", "data prepare audioset --segments train", ("--segments", "split=path")),
    Case("data-audioset-no-segments", "data prepare audioset", ("segments",)),
    Case("data-audioset-no-audio-dir", "data prepare audioset --segments train={text}", ("--audio-dir",)),
    Case("data-audioset-csv-missing", "data prepare audioset --segments train={root}/nope.csv "
         "--audio-dir train={infolder}", ("nope.csv", "not found")),
    Case("data-n-train-negative", "data prepare esc50 --n-train -5", ("--n-train", "≥ 1")),
    Case("data-seed-negative", "data prepare starter --seed -1", ("--seed",)),
    Case("data-info-unknown", "data info nope", ("nope", "neither a known dataset")),
    Case("data-info-unprepared", "data info starter", ("not prepared", "ussnb data prepare starter")),
    Case("data-info-file", "data info {text}", ("notes.txt", "not a dataset folder")),
    # ---- labels
    Case("labels-meta-missing", "labels dog --meta {root}/nonexistent", ("ontology.json",)),
    Case("labels-meta-malformed", "labels dog --meta {badmeta}", ("ontology.json", "not valid json")),
]
SUBPROCESS_CASES = ["overlap-1", "data-segments-without-equals", "input-given-twice"]


def _argv(case: Case, files: dict, out: Path) -> tuple[list[str], dict]:
    values = {**files, "out": str(out)}
    if "{unwritable}" in case.argv:
        values["unwritable"] = _unwritable(out.parent)
    return shlex.split(case.argv.format(**values)), values


def _unwritable(tmp: Path) -> str:
    if os.geteuid() != 0:
        ro = tmp / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return str(ro / "out")
    # root may write anywhere permission bits allow nothing: take a folder no one can create
    probe = Path("/sys/ussnb-test-unwritable")
    try:
        probe.mkdir()
    except OSError:
        return str(probe)
    probe.rmdir()
    pytest.skip("no folder that root cannot create on this machine")


def _error_line(case: Case, code, out: str, err: str) -> str:
    assert "Traceback" not in out + err, out + err
    assert code == case.code, f"exit code {code}, expected {case.code}; stderr: {err}"
    lines = ERROR_LINE.findall(err)
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    line = lines[0]
    for word in case.words:
        assert word.lower() in line.lower(), f"{word!r} not in the error line {line!r}"
    return line


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_invocation_is_one_clear_line(case, files, tmp_path, capsys, monkeypatch):
    for key, value in _env(Path(files["root"])).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    argv, values = _argv(case, files, out)
    done = Path(files["done"])
    before = _snapshot(done)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    _error_line(case, code, captured.out, captured.err)
    assert _snapshot(done) == before, "a finished output changed"
    for made in case.made:
        assert Path(made.format(**values)).is_file(), f"{made} was not kept"
    if not case.made:  # refused up front: no output folder / run directory was created
        assert not out.exists(), f"{out} was created by a refused invocation"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_no_traceback_end_to_end(case_id, files, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    argv, _ = _argv(case, files, tmp_path / "out")
    env = {**os.environ, **_env(Path(files["root"]))}
    proc = subprocess.run([sys.executable, "-m", "ussnb.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=110)
    _error_line(case, proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.strip().splitlines()[-1].startswith("ussnb: error:")


def test_good_then_bad_input_summary(files, tmp_path, capsys, monkeypatch):
    """The good input is done and listed as done; the bad one is listed with its error."""
    for key, value in _env(Path(files["root"])).items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out"
    assert main(["separate", files["good"], files["notaudio"], "--query", "Piano", "--checkpoint", files["run"],
                 "--out", str(out), "--no-progress"]) == 1
    items = {Path(it["input"]).name: it for it in json.loads((out / "summary.json").read_text())["items"]}
    assert items["good.wav"]["status"] == "done" and items["notaudio.wav"]["status"] == "failed"
    assert "unreadable" in items["notaudio.wav"]["error"]
    assert sf.info(out / "good__piano.wav").frames == int(2.5 * SR)
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, word", [
    pytest.param({"batch_size": float("nan")}, "--batch-size", id="batch-size-nan"),
    pytest.param({"batch_size": True}, "--batch-size", id="batch-size-bool"),
    pytest.param({"overlap": "0.5"}, "--overlap", id="overlap-str"),
    pytest.param({"overlap": float("nan")}, "--overlap", id="overlap-nan"),
    pytest.param({"segment_seconds": float("inf")}, "--segment", id="segment-inf"),
    pytest.param({"threshold": float("nan")}, "--threshold", id="threshold-nan"),
    pytest.param({"levels": [1.5]}, "--levels", id="levels-fraction"),
    pytest.param({"levels": []}, "at least one", id="levels-none"),
    pytest.param({"levels": ["2"]}, "--levels", id="levels-str"),
])
def test_api_settings_are_config_errors(kwargs, word):
    """The public API refuses the same values with the kit's own error type (a ValueError too)."""
    from ussnb.errors import ConfigError
    from ussnb.separation import check_settings

    with pytest.raises(ConfigError, match=re.escape(word)):
        check_settings(**kwargs)
    assert check_settings(levels=(2, 1, 2)) == [2, 1]


def test_api_refuses_before_writing(files, tmp_path, monkeypatch):
    from ussnb.errors import ConfigError
    from ussnb.cli.batch import run_separate
    from ussnb.separation import SeparationBundle, separate_file

    for key, value in _env(Path(files["root"])).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="--overlap"):
        run_separate([files["good"]], tmp_path / "out", files["run"], query="Piano", overlap=1.0, progress=False)
    bundle = SeparationBundle.load(files["run"])
    with pytest.raises(ConfigError, match="--batch-size"):
        separate_file(files["good"], tmp_path / "out" / "x.wav", "Piano", bundle, batch_size=0, progress=False)
    assert not (tmp_path / "out").exists()
