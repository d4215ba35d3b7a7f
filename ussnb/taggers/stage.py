"""The tagger a pipeline run uses, saved in stage 01's folder and loaded by later stages.

``tagger.json`` names it: either a model trained on the run's dataset from its weak labels (``tagger.pt``
beside it: ``starter-sed``, the kit's CNN, or ``starter-htsat``, HTS-AT-small), or a pretrained AudioSet tagger
(``efficientat-mn04``, ``panns-cnn14``, ``htsat``, ...) whose 527 outputs
are restricted to the dataset's classes by their AudioSet indices, so that column k of every output is the
dataset's class k everywhere downstream (anchor mining, soft conditions, hierarchical separation).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch

from ..errors import CheckpointError, DataError
from .base import TagOutput, Tagger

TAGGER_SPEC = "tagger.json"  # the stage folder's record of which tagger the run uses
PRETRAINED_NAMES = ("efficientat-mn04", "panns-cnn14", "panns-cnn14-decisionlevelmax", "panns-cnn10", "panns-cnn6",
                    "htsat")
TRAINED_NAMES = ("starter-sed", "starter-htsat")  # trained in stage 01 from the run's weak labels


class DatasetTagger(Tagger):
    """A 527-class tagger seen through the columns of a dataset's labels.

    Args:
        base: the AudioSet tagger.
        columns: for each dataset class, its AudioSet index (the base model's output column).
        labels: the dataset's MIDs (kept for reference).
    """

    def __init__(self, base: Tagger, columns: Sequence[int], labels: Sequence[str] | None = None, name: str = ""):
        super().__init__()
        self.base = base
        self.register_buffer("columns", torch.as_tensor(list(columns), dtype=torch.long), persistent=False)
        self.labels = list(labels) if labels is not None else None
        self.name = name or type(base).__name__
        self.sample_rate, self.classes = base.sample_rate, len(columns)
        self.embedding_size, self.frame_rate = base.embedding_size, base.frame_rate
        self.min_samples = getattr(base, "min_samples", 1)

    def _tag(self, wave: torch.Tensor, frames: bool = True) -> TagOutput:
        out = self.base._tag(wave, frames=frames)
        return TagOutput(out.clip[:, self.columns], out.frames[:, :, self.columns], out.embedding, out.frame_rate)


def audioset_columns(mids: Sequence[str]) -> list[int]:
    """AudioSet indices of ``mids`` (full metadata if configured, else the starter mini-ontology)."""
    from ..ontology import load_ontology

    onto = load_ontology()
    try:
        return [onto.label(m).audioset_index for m in mids]
    except Exception as exc:
        raise DataError(f"cannot map the dataset's classes to AudioSet outputs: {exc}") from exc


def save_stage_tagger(stage_dir: str | os.PathLike, name: str, labels: Sequence[str], checkpoint: str | None = None,
                      **extra) -> Path:
    """Record which tagger the run uses (``tagger.json``)."""
    stage_dir = Path(stage_dir)
    spec = {"name": name, "labels": list(labels), "checkpoint": checkpoint} | extra
    path = stage_dir / TAGGER_SPEC
    path.write_text(json.dumps(spec, indent=1))
    return path


def load_stage_tagger(stage_dir: str | os.PathLike) -> Tagger:
    """The run's tagger in eval mode, with outputs in the dataset's class order."""
    stage_dir = Path(stage_dir)
    spec_path = stage_dir / TAGGER_SPEC
    if not spec_path.is_file():
        raise CheckpointError(f"{stage_dir}: no tagger.json — run stage 01 (weak labels and SED) first")
    spec = json.loads(spec_path.read_text())
    return build_run_tagger(spec["name"], spec["labels"], checkpoint=spec.get("checkpoint"), base_dir=stage_dir)


def build_run_tagger(name: str, labels: Sequence[str], *, checkpoint: str | None = None,
                     base_dir: str | os.PathLike | None = None) -> Tagger:
    from . import get_tagger

    if name in ("sed", *TRAINED_NAMES):
        path = Path(checkpoint or "tagger.pt")
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if name == "starter-htsat":
            from .htsat import load_htsat_checkpoint as load
        else:
            from .sed import load_sed as load
        model = load(path)
        if model.labels is not None and list(model.labels) != list(labels):
            raise CheckpointError(f"{path}: the {name} model was trained on other classes than this dataset's")
        model.name = "starter-sed" if name == "sed" else name
        return model.eval()
    if name in PRETRAINED_NAMES:
        base = get_tagger(name, checkpoint)
        return DatasetTagger(base, audioset_columns(labels), labels, name=name).eval()
    raise CheckpointError(f"unknown tagger {name!r}; use one of {TRAINED_NAMES + PRETRAINED_NAMES}")


def resolve_run_tagger(name: str, fallback: str = "") -> tuple[str, str]:
    """The tagger stage 01 will use for the requested ``name``: ``(name, why)``. A pretrained tagger whose
    weights are not on disk is replaced by ``fallback`` (a trained one) when given — ``why`` says so — else
    loading it later raises the message saying where the weights go. Unknown names raise ConfigError."""
    from ..errors import ConfigError

    known = TRAINED_NAMES + PRETRAINED_NAMES
    for n in (name, fallback):
        if n and n not in known:
            raise ConfigError(f"unknown tagger {n!r}; choose one of {', '.join(known)}")
    if fallback and fallback not in TRAINED_NAMES:
        raise ConfigError(f"tagger_fallback must be a trained tagger ({', '.join(TRAINED_NAMES)}), not {fallback!r}")
    if name in PRETRAINED_NAMES and fallback and not pretrained_available(name):
        from . import weights_file

        return fallback, (f"{name}: {weights_file(name)} is not in the weights folder (USSNB_WEIGHTS_DIR), so "
                          f"this run trains {fallback} from the weak labels instead")
    return name, ""


def pretrained_available(name: str) -> bool:
    """Whether the pretrained tagger ``name`` can be loaded offline (its weights are on disk)."""
    from ..paths import find_weights
    from . import weights_file

    return name in PRETRAINED_NAMES and find_weights(weights_file(name)) is not None
