"""Audio taggers and sound event detectors behind one interface (:class:`Tagger`, :class:`TagOutput`).

Registry names (``available_taggers()``):

* ``panns-cnn6``, ``panns-cnn10`` — PANNs Cnn6 / Cnn10 (AudioSet, 527 classes), embedding 512
* ``panns-cnn14`` — PANNs Cnn14 (the USS query net), embedding 2048
* ``panns-cnn14-decisionlevelmax`` — PANNs Cnn14_DecisionLevelMax (the USS anchor miner), embedding 2048
* ``efficientat-mn04`` — EfficientAT MobileNetV3 mn04_as (~1 M parameters), embedding 384
* ``sed`` — small trainable decision-level CNN (:class:`~ussnb.taggers.sed.SedCnn`), embedding ``hidden``

``build_tagger(name, **kw)`` builds the architecture with fresh weights (no file needed);
``get_tagger(name, path=None, **kw)`` returns it ready to use: pretrained weights for PANNs / EfficientAT
(explicit ``path``, ``USSNB_WEIGHTS_DIR`` or download), a saved :class:`SedCnn` checkpoint for ``sed``
(``path`` required).
"""
from __future__ import annotations

from typing import Any

from .base import FRAME_RATE, TagOutput, Tagger, WeightsNotFoundError
from ..errors import ConfigError

_PANNS = {
    "panns-cnn6": "Cnn6",
    "panns-cnn10": "Cnn10",
    "panns-cnn14": "Cnn14",
    "panns-cnn14-decisionlevelmax": "Cnn14_DecisionLevelMax",
}
_EFFICIENTAT = {"efficientat-mn04": "mn04_as"}


def available_taggers() -> list[str]:
    """Names accepted by :func:`build_tagger` / :func:`get_tagger`."""
    return [*_PANNS, *_EFFICIENTAT, "sed"]


def _check(name: str) -> str:
    key = name.lower()
    if key not in available_taggers():
        raise ConfigError(f"unknown tagger {name!r}; available: {available_taggers()}")
    return key


def build_tagger(name: str, **kw: Any) -> Tagger:
    """The architecture ``name`` with freshly initialised weights (``kw`` go to its constructor;
    ``sed`` needs ``classes``)."""
    key = _check(name)
    if key in _PANNS:
        from .panns import MODELS

        return MODELS[_PANNS[key]](**kw)
    if key in _EFFICIENTAT:
        from .efficientat import PRETRAINED, MobileNetAT

        kw.setdefault("width_mult", PRETRAINED[_EFFICIENTAT[key]]["width_mult"])
        return MobileNetAT(**kw)
    from .sed import SedCnn

    return SedCnn(**kw)


def get_tagger(name: str, path: str | None = None, **kw: Any) -> Tagger:
    """A ready tagger in eval mode: pretrained weights (PANNs, EfficientAT) or a saved ``sed`` checkpoint."""
    key = _check(name)
    if key in _PANNS:
        from .panns import load_panns

        return load_panns(_PANNS[key], path, **kw)
    if key in _EFFICIENTAT:
        from .efficientat import load_efficientat

        return load_efficientat(_EFFICIENTAT[key], path, **kw)
    if path is None:
        raise ValueError("get_tagger('sed') needs path= to a checkpoint saved by save_sed (or use build_tagger)")
    from .sed import load_sed

    return load_sed(path, **kw)


__all__ = [
    "FRAME_RATE", "TagOutput", "Tagger", "WeightsNotFoundError", "available_taggers", "build_tagger",
    "get_tagger",
]
