"""The small public API of `import ussnb`."""
import subprocess
import sys
from pathlib import Path

import numpy as np

import ussnb
from tests.cli.test_bad_inputs import MIDS, SR, make_run

REPO = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = "import sys, ussnb; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'numpy'}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_load_run_and_separate_by_class_and_by_path(tmp_path, monkeypatch):
    monkeypatch.setenv("USSNB_AUDIOSET_META", str(tmp_path / "no-meta"))
    run = make_run(tmp_path / "run")
    bundle = ussnb.load_run(run)
    assert bundle.labels == MIDS and bundle.sample_rate == SR
    wave = np.random.default_rng(0).standard_normal(SR * 3).astype(np.float32) * 0.1
    a = ussnb.separate(wave, "Piano", bundle, progress=False)
    b = ussnb.separate(wave, "Piano", run, progress=False)  # a path is loaded for you
    assert a.shape == wave.shape and np.array_equal(a, b)
    target, rest = ussnb.separate(wave, "Piano", bundle, residual=True, progress=False)
    np.testing.assert_allclose(target + rest, wave, atol=1e-5)


def test_builders():
    model = ussnb.build_separator("meltcn", "tiny", condition_size=4)
    assert model.sample_rate > 0
    assert set(ussnb.__all__) == {"__version__", "build_separator", "get_tagger", "load_run", "separate"}
