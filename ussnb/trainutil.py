"""Pieces shared by the training loops: exact RNG capture/restore and atomic, resumable training state.

A training state is one file holding the model (with the config that rebuilds it), optimizer, scheduler,
step, sampler state, every RNG state (Python, NumPy global, torch, and named NumPy Generators) and the
history. Written atomically, so a run killed at any moment (even SIGKILL) resumes from the last complete
state and continues with exactly the numbers an uninterrupted run would produce.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import atomic_torch_save
from .errors import ConfigError


def capture_rng(generators: dict[str, np.random.Generator] | None = None) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generators": {k: g.bit_generator.state for k, g in (generators or {}).items()},
    }


def restore_rng(state: dict[str, Any], generators: dict[str, np.random.Generator] | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    for k, g in (generators or {}).items():
        g.bit_generator.state = state["generators"][k]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_state(path: str | os.PathLike, **state: Any) -> Path:
    """Atomically save a training state (any picklable values; tensors are stored on the CPU)."""
    return atomic_torch_save(state, path)


def load_state(path: str | os.PathLike) -> dict[str, Any] | None:
    """The saved training state, or None if there is none yet."""
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def warmup_lambda(schedule: str, warmup_steps: int, total_steps: int):
    """Learning-rate multiplier per step.

    ``constant``; ``paper`` (USS: ×0.001, ×0.01, ×0.1 for ``warmup_steps`` each, then ×1);
    ``linear-cosine`` (linear warm-up over ``warmup_steps``, then cosine decay to 5 % at ``total_steps``)."""
    import math

    def constant(step: int) -> float:
        return 1.0

    def paper(step: int) -> float:
        for i, factor in enumerate((0.001, 0.01, 0.1)):
            if step < (i + 1) * warmup_steps:
                return factor
        return 1.0

    def linear_cosine(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        progress = min(1.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    table = {"constant": constant, "paper": paper, "linear-cosine": linear_cosine}
    if schedule not in table:
        raise ConfigError(f"unknown schedule {schedule!r}; choose from {sorted(table)}")
    return table[schedule]


def resume_state(path: str | os.PathLike, config: dict, defaults: dict | None = None) -> dict[str, Any] | None:
    """The saved training state if it was written with ``config`` (resume), else None.

    ``defaults``: the configuration's default values — a state saved before a setting existed (its key is
    missing) still resumes when ``config`` has that setting at its default, since it trained with that meaning.
    A state written with *another* configuration is not an error: it is kept aside as
    ``<name>.previous.pt`` (replacing an older one) and training starts over, with a warning."""
    import logging
    import warnings

    path = Path(path)
    state = load_state(path)
    saved = None if state is None else state.get("config")
    if saved is not None and defaults:
        saved = {**{k: v for k, v in defaults.items() if k in config and k not in saved}, **saved}
    if state is None or saved == config:
        return state
    aside = path.with_name(path.stem + ".previous.pt")
    os.replace(path, aside)
    message = f"{path} was written with another configuration; kept it as {aside.name} and started over"
    logging.getLogger(__name__).warning(message)
    warnings.warn(message, stacklevel=2)
    return None
