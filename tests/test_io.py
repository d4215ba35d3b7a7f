"""ussnb.io: one atomic-write helper with per-call temporary names; canonical metrics JSON."""
import json
import math

import numpy as np
import pytest

from ussnb.io import atomic_path, dumps_metrics


def test_atomic_path_renames_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "sub" / "a.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target and tmp.name.endswith(".npz")
        np.savez(tmp, x=np.arange(3))
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            np.savez(tmp, x=np.arange(5))
            raise RuntimeError("interrupted")
    assert np.load(target)["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.npz"]  # no temporary file left


def test_temporary_names_differ_per_call(tmp_path):
    with atomic_path(tmp_path / "x.json") as a, atomic_path(tmp_path / "x.json") as b:
        assert a != b
        a.write_text("1")
        b.write_text("2")
    assert (tmp_path / "x.json").read_text() in ("1", "2")


def test_metrics_json_is_canonical():
    text = dumps_metrics({"b": 1.234567891, "a": [np.float32(0.5), np.int64(3), math.nan], "c": {"z": True}})
    assert text == dumps_metrics({"c": {"z": True}, "a": [0.5, 3, None], "b": 1.2346})
    assert json.loads(text) == {"a": [0.5, 3, None], "b": 1.2346, "c": {"z": True}}


def test_file_lock_is_exclusive_across_processes(tmp_path):
    import subprocess
    import sys

    from ussnb.io import file_lock

    probe = ("import fcntl, sys\nf = open(sys.argv[1], 'a')\ntry:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except BlockingIOError:\n    sys.exit(3)\n")
    lock = tmp_path / "sub" / ".x.lock"
    with file_lock(lock):
        assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 3  # held: the other waits
    assert subprocess.run([sys.executable, "-c", probe, str(lock)]).returncode == 0  # released
