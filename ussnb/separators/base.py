"""The contract every separator keeps (mirrors :class:`ussnb.taggers.base.Tagger`).

A :class:`Separator` is an ``nn.Module`` called as ``model(mixture (batch, audio_channels, samples), condition
(batch, condition_size)) → (batch, audio_channels, samples)`` at ``model.sample_rate``. Its constructor
arguments are captured in ``model.config`` (:meth:`Separator.set_config`), which is all that
:func:`~ussnb.separators.save_separator` stores besides the weights, so :func:`~ussnb.separators.load_separator`
rebuilds it exactly; ``registry_name`` is its name in the registry.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn


class Separator(nn.Module):
    registry_name: str = ""

    def set_config(self, config: dict[str, Any]) -> None:
        """Record the constructor arguments (plain Python values) and the attributes every caller may read:
        ``sample_rate``, ``condition_size``, ``audio_channels``."""
        self.config = dict(config)
        self.condition_size = int(config["condition_size"])
        self.sample_rate = int(config["sample_rate"])
        self.audio_channels = int(config.get("audio_channels", 1))

    @property
    def n_fft(self) -> int:
        """STFT size in samples."""
        return int(self.config["n_fft"])

    @property
    def hop(self) -> int:
        """STFT hop in samples."""
        return int(self.config["hop"])

    def save(self, path: str | os.PathLike, **extra: Any) -> Path:
        """:func:`~ussnb.separators.save_separator` (atomic; config + weights + ``extra``)."""
        from . import save_separator

        return save_separator(path, self, **extra)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Separator":
        """:func:`~ussnb.separators.load_separator`; a :class:`~ussnb.errors.CheckpointError` if the file holds
        another kind of separator than ``cls``."""
        from ..errors import CheckpointError
        from . import load_separator

        model = load_separator(path)
        if cls is not Separator and not isinstance(model, cls):
            raise CheckpointError(f"{path} holds a {model.registry_name!r} separator, not a {cls.registry_name!r}")
        return model

    def extra_repr(self) -> str:
        return f"{self.registry_name}: {self.sample_rate} Hz, condition_size={self.condition_size}"
