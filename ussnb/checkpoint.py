"""Saving and loading models with their configuration.

A checkpoint is a dict ``{"format": "ussnb", "version", "kind", "config", "state_dict", ...extra}`` written
atomically (temporary file + ``os.replace``), so an interrupted write never leaves a truncated checkpoint.
Loading checks keys and shapes and fails loudly, naming the first offending keys.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from . import __version__
from .errors import CheckpointError
from .io import atomic_path

FORMAT = "ussnb"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def check_state_dict(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    what: str = "checkpoint",
    allow_missing: tuple[str, ...] = (),
    max_listed: int = 5,
) -> None:
    """Raise :class:`CheckpointError` if ``state_dict`` does not fit ``model`` (missing / unexpected keys,
    shape mismatches). ``allow_missing`` lists keys that may be absent (e.g. frozen buffers)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and k not in allow_missing]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), first: {missing[:max_listed]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), first: {unexpected[:max_listed]}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es), first: {shapes[:max_listed]}")
    if problems:
        raise CheckpointError(
            f"{what} does not match {type(model).__name__}: " + "; ".join(problems)
        )


def load_state_dict_checked(
    model: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    what: str = "checkpoint",
    allow_missing: tuple[str, ...] = (),
) -> None:
    """Check then load (non-strict only for the ``allow_missing`` keys)."""
    check_state_dict(model, state_dict, what=what, allow_missing=allow_missing)
    model.load_state_dict(dict(state_dict), strict=not allow_missing)


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    kind: str,
    config: Mapping[str, Any],
    **extra: Any,
) -> Path:
    """Save ``model`` with the ``config`` that rebuilds it (``kind`` names its registry entry)."""
    payload = {
        "format": FORMAT,
        "version": __version__,
        "torch_version": torch.__version__,
        "kind": kind,
        "config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    payload.update(extra)
    return atomic_torch_save(payload, path)


def read_checkpoint(path: str | os.PathLike, *, expect_kind: str | None = None) -> dict:
    """Read a ussnb checkpoint dict, checking its format (and kind, if given)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt / truncated / not a torch file
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch checkpoint file, or a corrupt / "
                              f"truncated one ({reason[:200]})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a ussnb checkpoint (no 'format': 'ussnb' entry); "
            "official third-party checkpoints are loaded by their model's own loader"
        )
    for key in ("kind", "config", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} lacks its '{key}' entry")
    if expect_kind is not None and payload["kind"] != expect_kind:
        raise CheckpointError(
            f"checkpoint {path} holds a '{payload['kind']}' model, expected '{expect_kind}'"
        )
    return payload
