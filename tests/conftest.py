"""Shared test fixtures.

Developer/CI-only data (AudioSet metadata, the ESC-50 subset, pretrained weights, parity vectors) lives in a
``shared`` folder beside the project. Tests find it through ``USSNB_SHARED`` (``.ci/run`` sets it) or, failing
that, ``../shared`` next to the repository. Tests that need it skip with a clear reason when it is absent;
parity tests never skip when it is present.

``tests`` is a package (``__init__.py`` in every folder), so test modules of the same name may live in different
folders and share helpers by import (``tests.tiny_starter``: a tiny starter set and its test sets, once per
session).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny_starter import music, pairs, speech, tiny_starter  # noqa: F401  (session fixtures, see there)
from tests.smoke import smoke_run  # noqa: F401  (the smoke pipeline run, once per session)

REPO = Path(__file__).resolve().parents[1]


def _shared() -> Path | None:
    env = os.environ.get("USSNB_SHARED")
    candidate = Path(env) if env else REPO.parent / "shared"
    return candidate if candidate.is_dir() else None


SHARED = _shared()

# Point the kit's own environment variables at the shared data unless the caller already did.
if SHARED is not None:
    os.environ.setdefault("USSNB_AUDIOSET_META", str(SHARED / "data" / "audioset"))
    os.environ.setdefault("USSNB_ESC50_DIR", str(SHARED / "data" / "esc50"))
    os.environ.setdefault("USSNB_WEIGHTS_DIR", str(SHARED / "weights"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if SHARED is None:
        pytest.skip("shared data folder not found (set USSNB_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference"


@pytest.fixture(autouse=True)
def _torch_threads():
    import torch

    torch.set_num_threads(2)
    yield
