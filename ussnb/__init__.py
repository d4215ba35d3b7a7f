"""ussnb: universal sound source separation trained on weakly labelled data, as a notebook kit.

The small public API (everything else lives in the submodules)::

    import ussnb
    run = ussnb.load_run("runs/cpu")                       # a pipeline run directory or a separator.pt
    dog = ussnb.separate("street.wav", "Dog", run)         # a class by name, MID or index
    dog = ussnb.separate("street.wav", ["bark1.wav"], run) # ... or by example recordings
    model = ussnb.build_separator("resunet30", "paper", condition_size=2048)
    tagger = ussnb.get_tagger("efficientat-mn04")

Importing ``ussnb`` loads nothing heavy (``ussnb doctor`` runs before torch is installed); each function
imports what it needs when called.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "build_separator", "get_tagger", "load_run", "separate"]


def load_run(checkpoint_or_run: Any, **kwargs: Any):
    """A trained separator with what it needs to be queried (:class:`ussnb.separation.SeparationBundle`): from a
    pipeline run directory (its tagger and class-average conditions too) or a ``separator.pt``."""
    from .separation import SeparationBundle

    return SeparationBundle.load(checkpoint_or_run, **kwargs)


def separate(audio: Any, query: Any, model: Any, **kwargs: Any):
    """Separate ``query`` from ``audio`` (a path or a ``(samples,)`` array at the model's rate) with ``model``
    (what :func:`load_run` returns, or a run directory / checkpoint path). ``query``: a class name, MID or
    index, example recording path(s), or a condition vector. Returns ``(samples,)`` at the model's rate
    (``residual=True``: ``(target, residual)``). Keyword arguments: see :func:`ussnb.separation.separate`."""
    from .separation import SeparationBundle, separate as _separate

    bundle = model if isinstance(model, SeparationBundle) else load_run(model)
    return _separate(audio, query, bundle, **kwargs)


def build_separator(name: str, preset: str | None = None, **kwargs: Any):
    """A separator from the registry (``meltcn``, ``resunet30``, ``resunet60``, ``unet``) and a size preset."""
    from .separators import build_separator as _build

    return _build(name, preset, **kwargs)


def get_tagger(name: str, path: str | None = None, **kwargs: Any):
    """A tagger / sound event detector by name (``efficientat-mn04``, ``panns-cnn14``, ...; see
    :func:`ussnb.taggers.available_taggers`), with pretrained weights where it has them."""
    from .taggers import get_tagger as _get

    return _get(name, path, **kwargs)
