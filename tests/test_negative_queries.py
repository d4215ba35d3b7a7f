"""Negative queries (``ussnb separate --exclude``, :func:`ussnb.separation.exclusion_query`): the mixture without
the excluded sounds, or a query's target without them, by a second separation (``residual``) or by condition
arithmetic (``condition``) — through the kit's one inference path.

Behaviour is checked with a band "separator" whose function is known (class k owns one frequency band; the
condition's entry k opens that band's mask), a band "tagger" that reports the bands holding energy, and three
tones, one per band; the command line with the tiny run of ``tests/cli/test_bad_inputs.make_run``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.cli.test_bad_inputs import ERROR_LINE, MIDS, NAMES, SR, make_run
from ussnb.cli import main
from ussnb.errors import CheckpointError, ConfigError, OntologyError
from ussnb.separation import (SeparationBundle, exclusion_query, resolve_query, separate, subtract_conditions)
from ussnb.taggers.base import TagOutput

EDGES = [0, 1000, 2200, 4000, 8001]  # Hz: class k owns [EDGES[k], EDGES[k + 1])
TONES = [500.0, 1500.0, 3000.0, 6000.0]  # one tone per class band
N_FFT, HOP = 512, 128


def _band_of_bins() -> torch.Tensor:
    freqs = torch.linspace(0, SR / 2, N_FFT // 2 + 1)
    owner = torch.zeros(len(EDGES) - 1, N_FFT // 2 + 1)
    for k in range(len(EDGES) - 1):
        owner[k] = ((freqs >= EDGES[k]) & (freqs < EDGES[k + 1])).float()
    return owner  # (classes, bins)


class BandSeparator(torch.nn.Module):
    """``f(x, c)``: STFT mask ``clip(Σ_k c_k · 1[bin in band k], 0, 1)`` — what an ideal separator of these
    band-limited "classes" does."""

    sample_rate = SR
    condition_size = len(MIDS)

    def __init__(self):
        super().__init__()
        self.register_buffer("owner", _band_of_bins())
        self.register_buffer("window", torch.hann_window(N_FFT))

    def forward(self, x, c):
        spec = torch.stft(x[:, 0], N_FFT, HOP, window=self.window, return_complex=True)  # (b, bins, frames)
        mask = (c @ self.owner).clamp(0, 1)[:, :, None]
        return torch.istft(spec * mask, N_FFT, HOP, window=self.window, length=x.shape[-1])[:, None]


class BandTagger(torch.nn.Module):
    """Clip "probabilities": 1 for a class whose band holds more than 5 % of the segment's energy."""

    sample_rate = SR
    classes = len(MIDS)

    def __init__(self):
        super().__init__()
        self.register_buffer("owner", _band_of_bins())

    def tag(self, wave, sr=None, *, frames=True):
        x = torch.as_tensor(np.asarray(wave, np.float32))
        power = torch.stft(x, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True).abs().pow(2).sum(-1)
        share = power @ self.owner.T / power.sum(-1, keepdim=True).clamp_min(1e-12)
        clip = (share > 0.05).float()
        return TagOutput(clip=clip, frames=torch.zeros(0), embedding=clip)


def _band_bundle(with_tagger: bool = True) -> SeparationBundle:
    k = len(MIDS)
    bundle = SeparationBundle(model=BandSeparator(), kind="onehot", labels=list(MIDS), names=list(NAMES),
                              class_conditions=np.eye(k, dtype=np.float32), class_counts=np.ones(k), source="bands")
    if with_tagger:
        bundle._tagger = BandTagger()
    return bundle


def _tones(seconds: float = 3.3) -> list[np.ndarray]:
    t = np.arange(int(seconds * SR)) / SR
    return [(0.2 * np.sin(2 * np.pi * f * t + k)).astype(np.float32) for k, f in enumerate(TONES)]


def _energy_db(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(np.asarray(x, np.float64) ** 2) / np.sum(np.asarray(ref, np.float64) ** 2)))


def _sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - est).astype(np.float64) ** 2)))


# ------------------------------------------------------------------------------------------ behaviour
@pytest.mark.parametrize("method", ["residual", "condition"])
def test_exclude_alone_removes_the_excluded_sound(method):
    a, b, c, _ = _tones()  # speech band, piano band, snare band
    mix = a + b + c
    bundle = _band_bundle()
    out = separate(mix, None, bundle, exclude=["Piano"], exclude_method=method, progress=False)
    assert out.shape == mix.shape
    # what is left of B: the estimate projected onto B's band is tiny; A and C come through
    left_b = separate(out, "Piano", bundle, progress=False)
    assert _energy_db(left_b, b) < -30
    assert _sdr(a + c, out) > 25


@pytest.mark.parametrize("method", ["residual", "condition"])
def test_exclude_from_a_query_removes_it_from_the_target(method):
    a, b, c, _ = _tones()
    mix = a + b + c
    bundle = _band_bundle(with_tagger=False)  # a query with a target needs no tagger
    union = resolve_query("Male speech, man speaking", bundle).vector + resolve_query("Piano", bundle).vector
    both = separate(mix, union, bundle, progress=False)
    assert _sdr(a + b, both) > 25  # the query alone asks for A and B
    out = separate(mix, union, bundle, exclude=["Piano"], exclude_method=method, progress=False)
    assert _sdr(a, out) > 25
    assert _energy_db(separate(out, "Piano", bundle, progress=False), b) < -30


def test_alone_residual_is_mixture_minus_the_estimate(tmp_path, monkeypatch):
    """With a real (tiny, random) separator: exclusion alone = mixture − f(mixture, c_excluded), exactly the
    ``--residual`` track of ``--query EXCLUDED``; a query minus a class = target − f(target, c_excluded)."""
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(tmp_path / "no-meta"))
    bundle = SeparationBundle.load(make_run(tmp_path / "run"))
    mix = (0.1 * np.random.default_rng(0).standard_normal(int(3.7 * SR))).astype(np.float32)
    est_b, residual = separate(mix, "Piano", bundle, residual=True, progress=False)
    out = separate(mix, None, bundle, exclude=["Piano"], progress=False)
    np.testing.assert_allclose(out, mix - est_b, atol=1e-5)
    np.testing.assert_allclose(out, residual, atol=1e-5)
    # the second separation runs on each chunk's target estimate: with one chunk, on the whole target estimate
    one = dict(segment_seconds=4.0, overlap=0.0, progress=False)
    mix4 = np.pad(mix, (0, 4 * SR - mix.shape[0]))
    target = separate(mix4, "Snare drum", bundle, **one)
    minus = separate(mix4, "Snare drum", bundle, exclude=["Piano"], exclude_method="residual", **one)
    np.testing.assert_allclose(minus, target - separate(target, "Piano", bundle, **one), atol=1e-5)
    # condition arithmetic with a target: one pass with the clipped difference of the class averages
    c_t, c_e = (resolve_query(n, bundle).vector for n in ("Snare drum", "Piano"))
    by_condition = separate(mix, "Snare drum", bundle, exclude=["Piano"], exclude_method="condition", progress=False)
    np.testing.assert_allclose(by_condition, separate(mix, np.maximum(c_t - c_e, 0), bundle, progress=False),
                               atol=1e-6)


def test_condition_arithmetic():
    t = np.array([0.9, 0.1, 0.0, 0.5], np.float32)
    e = np.array([0.1, 0.8, 0.3, 0.2], np.float32)
    np.testing.assert_allclose(subtract_conditions(t, [e], class_probabilities=True), [0.8, 0.0, 0.0, 0.3], atol=1e-6)
    np.testing.assert_allclose(subtract_conditions(t, [e, e], class_probabilities=True), [0.7, 0, 0, 0.1], atol=1e-6)
    # embeddings (signed): no clipping, rescaled to the target's norm
    ts, es = np.array([1.0, -2.0, 2.0]), np.array([0.0, -1.0, 1.0])
    d = subtract_conditions(ts, [es], class_probabilities=False)
    np.testing.assert_allclose(np.linalg.norm(d), 3.0, rtol=1e-6)
    np.testing.assert_allclose(d / np.linalg.norm(d), np.array([1.0, -1.0, 1.0]) / np.sqrt(3), rtol=1e-6)
    # batched (per-chunk conditions)
    assert subtract_conditions(np.stack([t, t]), [e], class_probabilities=True).shape == (2, 4)


def test_api_errors(tmp_path):
    bundle = _band_bundle(with_tagger=False)
    with pytest.raises(OntologyError, match="unknown class 'Pianno'.*closest: 'Piano'"):
        exclusion_query(None, ["Pianno"], bundle)
    with pytest.raises(ConfigError, match="exclude-method"):
        exclusion_query("Piano", ["Snare drum"], bundle, "subtract")
    with pytest.raises(ConfigError, match="at least one"):
        exclusion_query("Piano", [], bundle)
    # alone by condition arithmetic needs each chunk's own condition, i.e. a tagger
    with pytest.raises(CheckpointError, match="no tagger"):
        exclusion_query(None, ["Piano"], bundle, "condition")
    with pytest.raises(ConfigError, match="already has exclusions"):
        exclusion_query(exclusion_query("Piano", ["Snare drum"], bundle), ["Snare drum"], bundle)


# ------------------------------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("negative")
    run = make_run(root / "run")
    sf.write(root / "mix.wav", (0.1 * np.random.default_rng(1).standard_normal(int(2.5 * SR))).astype(np.float32), SR,
             subtype="FLOAT")
    sf.write(root / "example.wav", (0.1 * np.random.default_rng(2).standard_normal(2 * SR)).astype(np.float32), SR,
             subtype="FLOAT")
    return root, run


@pytest.fixture
def offline(cli_files, monkeypatch):
    root, _ = cli_files
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(root / "no-meta"))
    monkeypatch.setenv("USSNB_DATA", str(root / "data"))


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["separate", *map(str, argv), "--no-progress"])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_exclude_alone_and_with_a_query(cli_files, offline, capsys, tmp_path):
    root, run = cli_files
    out = tmp_path / "out"
    code, stdout, _ = _run(capsys, root / "mix.wav", "--exclude", "Piano", "--checkpoint", run, "--out", out,
                           "--residual")
    assert code == 0, stdout
    assert "everything except Piano" in stdout and "--exclude-method residual" in stdout
    alone, _ = sf.read(out / "mix__all-minus-piano.wav", dtype="float32")
    removed, _ = sf.read(out / "mix__all-minus-piano__residual.wav", dtype="float32")
    mix, _ = sf.read(root / "mix.wav", dtype="float32")
    np.testing.assert_allclose(alone + removed, mix, atol=1e-6)
    code, stdout, _ = _run(capsys, root / "mix.wav", "--query", "Snare drum", "--exclude", "Piano",
                           root / "example.wav", "--exclude-method", "condition", "--checkpoint", run, "--out", out)
    assert code == 0, stdout
    written = sorted(p.name for p in out.glob("mix__snare-drum-minus-piano-example-*.wav"))
    assert len(written) == 1, sorted(p.name for p in out.iterdir())
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["exclude_method"] == "condition" and summary["exclude"][0] == "Piano"


@pytest.mark.parametrize("args, message", [
    (["--exclude", "Pianno"], r"unknown class 'Pianno'.*closest: 'Piano'"),
    (["--levels", "1", "--exclude", "Piano"], r"--exclude goes with --query"),
    (["--query", "Piano", "--exclude-method", "condition"], r"--exclude-method goes with --exclude"),
    (["--exclude", "missing-bark.wav"], r"missing-bark.wav: no such example audio file \(--exclude\)"),
    (["--exclude", " "], r"--exclude got an empty name"),
    ([], r"give exactly one of .* or --exclude alone"),
])
def test_cli_errors(cli_files, offline, capsys, tmp_path, args, message):
    root, run = cli_files
    code, _, err = _run(capsys, root / "mix.wav", *args, "--checkpoint", run, "--out", tmp_path / "out")
    assert code == 1, err
    assert "Traceback" not in err
    lines = ERROR_LINE.findall(err)
    assert lines, err
    import re

    assert re.search(message, lines[-1]), lines[-1]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.wav"))


def test_cli_bad_method_is_argparse_error(cli_files, offline, capsys, tmp_path):
    root, run = cli_files
    with pytest.raises(SystemExit) as exc:
        main(["separate", str(root / "mix.wav"), "--exclude", "Piano", "--exclude-method", "subtract",
              "--checkpoint", str(run), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert "invalid choice: 'subtract'" in capsys.readouterr().err
