"""The tagger a pipeline run uses, saved in stage 01's folder and loaded by later stages.

``tagger.json`` names it: either the kit's own ``sed`` model trained on the run's dataset (``tagger.pt``
beside it), or a pretrained AudioSet tagger (``efficientat-mn04``, ``panns-cnn14``, ...) whose 527 outputs
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
PRETRAINED_NAMES = ("efficientat-mn04", "panns-cnn14", "panns-cnn14-decisionlevelmax", "panns-cnn10", "panns-cnn6")


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
    from .sed import load_sed

    if name in ("sed", "starter-sed"):
        path = Path(checkpoint or "tagger.pt")
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        model = load_sed(path)
        if model.labels is not None and list(model.labels) != list(labels):
            raise CheckpointError(f"{path}: the SED model was trained on other classes than this dataset's")
        model.name = "starter-sed"
        return model.eval()
    if name in PRETRAINED_NAMES:
        base = get_tagger(name, checkpoint)
        return DatasetTagger(base, audioset_columns(labels), labels, name=name).eval()
    raise CheckpointError(f"unknown tagger {name!r}; use 'starter-sed' or one of {PRETRAINED_NAMES}")
