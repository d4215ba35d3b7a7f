"""Audio taggers and sound event detectors behind one interface (:class:`Tagger`, :class:`TagOutput`).

Registry names (``available_taggers()``):

* ``panns-cnn6``, ``panns-cnn10`` — PANNs Cnn6 / Cnn10 (AudioSet, 527 classes), embedding 512
* ``panns-cnn14`` — PANNs Cnn14 (the USS query net), embedding 2048
* ``panns-cnn14-decisionlevelmax`` — PANNs Cnn14_DecisionLevelMax (the USS anchor miner), embedding 2048
* ``efficientat-mn04`` — EfficientAT MobileNetV3 mn04_as (~1 M parameters), embedding 384
* ``htsat`` — HTS-AT (:class:`~ussnb.taggers.htsat.HTSAT`, embed_dim 96: the released AudioSet model, 30 M
  parameters), embedding 768; frames from its token-semantic SED head
* ``htsat-small`` — HTS-AT sized to train on 2 CPU cores from weak labels (embed_dim 24, one shifted and one
  plain block per stage, ~1.3 M parameters for 20 classes), embedding 192; needs ``classes``
* ``sed`` — small trainable decision-level CNN (:class:`~ussnb.taggers.sed.SedCnn`), embedding ``hidden``

``build_tagger(name, **kw)`` builds the architecture with fresh weights (no file needed);
``get_tagger(name, path=None, **kw)`` returns it ready to use: pretrained weights for PANNs / EfficientAT
(explicit ``path``, ``USSNB_WEIGHTS_DIR`` or download), the released ``HTSAT_AudioSet_Saved_1.ckpt`` for
``htsat`` (explicit ``path`` or ``USSNB_WEIGHTS_DIR``; it is on Google Drive, so it is never downloaded), a saved
checkpoint for ``sed`` / ``htsat-small`` (``path`` required; :func:`~ussnb.taggers.sed.save_sed`,
:func:`~ussnb.taggers.htsat.save_htsat`).
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
_HTSAT = ("htsat", "htsat-small")


def available_taggers() -> list[str]:
    """Names accepted by :func:`build_tagger` / :func:`get_tagger`."""
    return [*_PANNS, *_EFFICIENTAT, *_HTSAT, "sed"]


def _check(name: str) -> str:
    key = name.lower()
    if key not in available_taggers():
        raise ConfigError(f"unknown tagger {name!r}; available: {available_taggers()}")
    return key


def weights_file(name: str) -> str:
    """Official file name of the pretrained weights of ``name`` (as looked up in ``USSNB_WEIGHTS_DIR``)."""
    key = _check(name)
    if key in _PANNS:
        from .panns import OFFICIAL_FILES

        return OFFICIAL_FILES[_PANNS[key]]
    if key in _EFFICIENTAT:
        from .efficientat import PRETRAINED

        return PRETRAINED[_EFFICIENTAT[key]]["file"]
    if key == "htsat":
        from .htsat import OFFICIAL_FILE

        return OFFICIAL_FILE
    raise ConfigError(f"tagger {name!r} has no pretrained weights (it is trained from a dataset's weak labels)")


def build_tagger(name: str, **kw: Any) -> Tagger:
    """The architecture ``name`` with freshly initialised weights (``kw`` go to its constructor;
    ``sed`` and ``htsat-small`` need ``classes``)."""
    key = _check(name)
    if key in _PANNS:
        from .panns import MODELS

        return MODELS[_PANNS[key]](**kw)
    if key in _EFFICIENTAT:
        from .efficientat import PRETRAINED, MobileNetAT

        kw.setdefault("width_mult", PRETRAINED[_EFFICIENTAT[key]]["width_mult"])
        return MobileNetAT(**kw)
    if key == "htsat":
        from .htsat import HTSAT

        return HTSAT(**kw)
    if key == "htsat-small":
        from .htsat import HTSAT, small_config

        if "classes" not in kw:
            raise ValueError("build_tagger('htsat-small') needs classes= (the dataset's number of classes)")
        return HTSAT(**small_config(**kw))
    from .sed import SedCnn

    return SedCnn(**kw)


def get_tagger(name: str, path: str | None = None, **kw: Any) -> Tagger:
    """A ready tagger in eval mode: pretrained weights (PANNs, EfficientAT, HTS-AT) or a saved ``sed`` /
    ``htsat-small`` checkpoint."""
    key = _check(name)
    if key in _PANNS:
        from .panns import load_panns

        return load_panns(_PANNS[key], path, **kw)
    if key in _EFFICIENTAT:
        from .efficientat import load_efficientat

        return load_efficientat(_EFFICIENTAT[key], path, **kw)
    if key == "htsat":
        from .htsat import load_htsat

        kw.pop("download", None)  # accepted for symmetry; the checkpoint is never downloaded
        return load_htsat(path, **kw)
    if key == "htsat-small":
        if path is None:
            raise ValueError("get_tagger('htsat-small') needs path= to a checkpoint saved by save_htsat "
                             "(or use build_tagger)")
        from .htsat import load_htsat_checkpoint

        return load_htsat_checkpoint(path, **kw)
    if path is None:
        raise ValueError("get_tagger('sed') needs path= to a checkpoint saved by save_sed (or use build_tagger)")
    from .sed import load_sed

    return load_sed(path, **kw)


__all__ = [
    "FRAME_RATE", "TagOutput", "Tagger", "WeightsNotFoundError", "available_taggers", "build_tagger",
    "get_tagger", "weights_file",
]
