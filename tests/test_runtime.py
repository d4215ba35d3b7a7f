"""Thread settings decided in one place (ussnb.runtime)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ussnb.errors import ConfigError, UssnbError
from ussnb.runtime import (autocast, available_cores, check_precision, device_env, resolve_device, resolve_threads,
                           thread_env)

REPO = Path(__file__).resolve().parents[1]


def test_default_is_the_cores_available(monkeypatch):
    monkeypatch.delenv("USSNB_THREADS", raising=False)
    assert resolve_threads(None) == available_cores() >= 1
    assert resolve_threads(0) == available_cores()
    assert resolve_threads("auto") == available_cores()
    assert resolve_threads(3) == 3 and resolve_threads("2") == 2


def test_environment_setting_is_used(monkeypatch):
    monkeypatch.setenv("USSNB_THREADS", "1")
    assert resolve_threads(None) == 1


@pytest.mark.parametrize("bad", [-1, "abc", 1.5, True, "2.5", 100000])
def test_bad_thread_counts_are_clear_errors(bad):
    with pytest.raises(ConfigError, match="threads"):
        resolve_threads(bad)
    assert issubclass(ConfigError, UssnbError)


def test_child_environment_limits_blas_to_one():
    env = thread_env(2)
    assert env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_NUM_THREADS"] == "1" and env["USSNB_THREADS"] == "2"


def test_configure_sets_every_pool_in_a_fresh_process():
    code = ("import json, numpy, torch\n"
            "from ussnb.runtime import configure_threads, thread_report\n"
            "n = configure_threads(1)\n"
            "r = thread_report()\n"
            "print(json.dumps({'n': n, 'intra': torch.get_num_threads(), 'inter': torch.get_num_interop_threads(), 'blas': r['blas']}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["n"] == 1 and got["intra"] == 1 and got["inter"] == 1
    assert "×1" in got["blas"] or got["blas"] in ("not loaded", "?")

# ------------------------------------------------------------------ devices and precision
NO_CUDA = not torch.cuda.is_available()


def test_devices_resolve_or_say_why_not(monkeypatch):
    monkeypatch.delenv("USSNB_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("USSNB_DEVICE", "cpu")
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if NO_CUDA:
        with pytest.raises(ConfigError, match="use --device cpu"):
            resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        check_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="unknown precision"):
        check_precision("fp8")
    assert device_env("cpu", "bf16") == {"USSNB_DEVICE": "cpu", "USSNB_PRECISION": "bf16"}
    with autocast("cpu", "bf16"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16
