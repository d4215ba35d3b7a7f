"""Query-conditioned separators and their registry.

Every separator is a :class:`~ussnb.separators.base.Separator`, called as ``model(mixture (batch, channels, samples), condition (batch, condition_size))
→ (batch, channels, samples)`` at ``model.sample_rate``, keeps its constructor arguments in ``model.config``
and its registry name in ``model.registry_name``, so :func:`save_separator` / :func:`load_separator` need
nothing else.

==========  ===============================================================================================
name        model
==========  ===============================================================================================
resunet30   ResUNet30 of the USS paper (presets ``paper`` = official layout, ``small``, ``tiny``)
resunet60   two residual blocks per stage
resunet     generic ResUNet (``blocks_per_stage`` free)
unet        plain conv-BN-ReLU U-Net with additive FiLM and a sigmoid magnitude mask
meltcn      mel-band mask from a dilated TCN — the fast CPU separator (presets ``default``, ``small``, ``tiny``)
==========  ===============================================================================================
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..checkpoint import load_state_dict_checked, read_checkpoint, save_checkpoint
from ..errors import CheckpointError, ConfigError
from .base import Separator
from .meltcn import MelTCN
from .optimize import OptimizedSeparator, optimize
from .resunet import PRESETS, ResUNet, ResUNet30, ResUNet60, load_official_uss_checkpoint
from .unet import UNet

_REGISTRY: dict[str, type[Separator]] = {
    "resunet30": ResUNet30,
    "resunet60": ResUNet60,
    "resunet": ResUNet,
    "unet": UNet,
    "meltcn": MelTCN,
}


def available_separators() -> list[str]:
    """Registered separator names."""
    return sorted(_REGISTRY)


def _lookup(name: str) -> type[Separator]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown separator {name!r}; available: {available_separators()}") from None


def build_separator(name: str, preset: str | None = None, **config) -> nn.Module:
    """Build a registered separator from keyword arguments, optionally starting from a size ``preset``."""
    cls = _lookup(name)
    if preset is not None:
        if not hasattr(cls, "from_preset"):
            raise ConfigError(f"separator {name!r} has no presets")
        return cls.from_preset(preset, **config)
    return cls(**config)


def save_separator(path: str | os.PathLike, model: nn.Module, **extra) -> Path:
    """Save ``model`` with its registry name and config (atomic write). ``extra`` entries are stored alongside."""
    name = getattr(model, "registry_name", None)
    if name not in _REGISTRY or not isinstance(model, _REGISTRY[name]):
        raise ValueError(f"{type(model).__name__} is not a registered separator")
    return save_checkpoint(path, model, kind=name, config=model.config, **extra)


def load_separator(path: str | os.PathLike, payload: dict | None = None) -> nn.Module:
    """Rebuild and load a separator saved by :func:`save_separator`; returned in eval mode. ``payload``: the
    file's content if the caller has read it already (:func:`ussnb.checkpoint.read_checkpoint`), so it is not
    read twice.

    Raises :class:`CheckpointError` for an unknown kind, a config the constructor rejects, or state-dict keys /
    shapes that do not match the rebuilt model (first offending keys named).
    """
    payload = read_checkpoint(path) if payload is None else payload
    kind, config = payload["kind"], payload["config"]
    if kind not in _REGISTRY:
        raise CheckpointError(f"{path}: unknown separator kind {kind!r}; available: {available_separators()}")
    try:
        model = _REGISTRY[kind](**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild {kind!r} from its saved config {config}: {exc}") from exc
    load_state_dict_checked(model, payload["state_dict"], what=f"separator checkpoint {path}")
    return model.eval()


__all__ = [
    "PRESETS", "MelTCN", "ResUNet", "ResUNet30", "ResUNet60", "Separator", "UNet", "available_separators",
    "build_separator", "load_official_uss_checkpoint", "load_separator", "save_separator",
]
