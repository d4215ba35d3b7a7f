"""The run directory, owned in one place.

A pipeline run is a folder of stage folders (:data:`STAGES`, in order) plus the runner's records::

    runs/NAME/config.yaml          resolved parameters + runner settings   (Run.config_path)
    runs/NAME/timings.json         seconds per stage                       (Run.timings_path)
    runs/NAME/NN_stage/.done       hash of the parameters it finished with (Run.done_marker)
    00_data/dataset.json           where the dataset lives                 (Run.dataset / write_dataset)
    01_weak_labels_and_sed/tagger.json (+ tagger.pt)  the run's tagger     (Run.tagger)
    01_weak_labels_and_sed/sed_frames/<split>.npz     its p_SED per clip   (Run.sed_frames_path)
    02_anchor_mining/anchors/{train,validation,test}/ anchor sets          (Run.anchors / held_out_classes)
    03_query_conditions/conditions_<kind>.npz        eq. 9 averages        (Run.class_conditions)
    04_training/separator.pt (+ state.pt, history.json, validation.json)   (Run.separator / bundle)
    05_hierarchical_separation/thresholds.json       calibrated θ per level (Run.thresholds_path)

:class:`Run` is the only code that joins these names: the notebooks, :mod:`ussnb.separation`, the evaluation
protocol and the pipeline runner ask it for paths and objects. A notebook run on its own gets its stage folders
as parameters (``data_dir``, ``sed_dir``, ...) and builds ``Run.from_dirs(data_dir=..., ...)``; the whole run is
``Run("runs/cpu")``. Importing this module is cheap (the heavy loaders import lazily).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from .errors import CheckpointError, ConfigError, DataError

# notebook stem -> short key; a stage receives "<key>_dir" of itself and of every earlier stage
STAGES: list[tuple[str, str]] = [
    ("00_data", "data"),
    ("01_weak_labels_and_sed", "sed"),
    ("02_anchor_mining", "anchors"),
    ("03_query_conditions", "queries"),
    ("04_training", "training"),
    ("05_hierarchical_separation", "separation"),
    ("06_evaluation", "evaluation"),
]
STAGE_NAMES: dict[str, str] = {key: name for name, key in STAGES}

CONFIG_FILE = "config.yaml"
TIMINGS_FILE = "timings.json"
DONE_FILE = ".done"
DATASET_FILE = "dataset.json"
ANCHORS_FOLDER = "anchors"
SED_FRAMES_FOLDER = "sed_frames"
SEPARATOR_FILE = "separator.pt"
VALIDATION_FILE = "validation.json"  # the training stage's fixed validation mixtures and their floor / IRM
HISTORY_FILE = "history.json"
THRESHOLDS_FILE = "thresholds.json"


def conditions_file(kind: str) -> str:
    """File name of stage 03's class-average conditions of one condition type."""
    return f"conditions_{kind}.npz"


class Run:
    """A run directory (or a set of stage folders given one by one).

    ``Run(path)``: the stage folders are ``path/NN_stage``. ``Run.from_dirs(data_dir=..., anchors_dir=...)``: the
    folders a notebook received as parameters (keys ``<stage key>_dir``); stages not given are unknown and asking
    for them raises :class:`~ussnb.errors.DataError`.
    """

    def __init__(self, path: str | os.PathLike | None = None, dirs: Mapping[str, str | os.PathLike] | None = None):
        self.path = Path(path) if path is not None else None
        self._dirs = {k: Path(v) for k, v in (dirs or {}).items() if v}
        unknown = sorted(set(self._dirs) - set(STAGE_NAMES))
        if unknown:
            raise ConfigError(f"unknown stage key(s) {unknown}; stages: {', '.join(STAGE_NAMES)}")

    @classmethod
    def from_dirs(cls, run_dir: str | os.PathLike | None = None, **stage_dirs: str | os.PathLike) -> "Run":
        """From a notebook's parameters: ``Run.from_dirs(data_dir=data_dir, sed_dir=sed_dir, ...)``."""
        dirs = {}
        for name, value in stage_dirs.items():
            if not name.endswith("_dir"):
                raise TypeError(f"Run.from_dirs takes <stage>_dir keywords, got {name!r}")
            dirs[name[:-4]] = value
        return cls(run_dir, dirs)

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> "Run | None":
        """The run a ``separator.pt`` belongs to (it sits in the run's training folder), else None."""
        path = Path(checkpoint)
        return cls(path.parent.parent) if path.parent.name == STAGE_NAMES["training"] else None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})" if self.path is not None else f"Run(dirs={ {k: str(v) for k, v in self._dirs.items()} })"

    # ------------------------------------------------------------------ folders and runner records
    def stage(self, key: str) -> Path:
        """The folder of stage ``key`` (``data``, ``sed``, ``anchors``, ``queries``, ``training``,
        ``separation``, ``evaluation``; a stem such as ``04_training`` works too)."""
        key = {name: k for k, name in STAGE_NAMES.items()}.get(key, key)
        if key not in STAGE_NAMES:
            raise ConfigError(f"unknown stage {key!r}; stages: {', '.join(STAGE_NAMES)}")
        if key in self._dirs:
            return self._dirs[key]
        if self.path is None:
            raise DataError(f"this run was given no folder for stage '{key}' (pass {key}_dir)")
        return self.path / STAGE_NAMES[key]

    def has(self, key: str) -> bool:
        try:
            return self.stage(key).is_dir()
        except DataError:
            return False

    @property
    def config_path(self) -> Path:
        return self._root() / CONFIG_FILE

    @property
    def timings_path(self) -> Path:
        return self._root() / TIMINGS_FILE

    def done_marker(self, key: str) -> Path:
        return self.stage(key) / DONE_FILE

    def metrics(self, key: str) -> dict:
        """Stage ``key``'s ``metrics.json`` (DataError when the stage has not finished)."""
        path = self.stage(key) / "metrics.json"
        if not path.is_file():
            raise DataError(f"{path} does not exist: stage {STAGE_NAMES.get(key, key)} of this run has not finished")
        return json.loads(path.read_text())

    def timings(self) -> dict[str, float]:
        """Seconds per finished stage (the runner's ``timings.json``; empty when none)."""
        path = self.timings_path
        return json.loads(path.read_text()) if path.is_file() else {}

    def _root(self) -> Path:
        if self.path is None:
            raise DataError("this run was built from stage folders; it has no run directory")
        return self.path

    # ------------------------------------------------------------------ 00 data
    def write_dataset(self, root: str | os.PathLike, name: str) -> Path:
        """Stage 00's record of the dataset the later stages read."""
        from .io import atomic_write_text

        path = self.stage("data") / DATASET_FILE
        return atomic_write_text(path, json.dumps({"path": str(Path(root).resolve()), "name": name}, indent=1))

    def dataset_root(self) -> Path:
        path = self.stage("data") / DATASET_FILE
        if not path.is_file():
            raise DataError(f"{path} missing — run stage 00 (data) first")
        return Path(json.loads(path.read_text())["path"])

    def dataset(self):
        """The run's :class:`~ussnb.data.weak.WeakDataset`."""
        from . import data

        return data.load(self.dataset_root())

    # ------------------------------------------------------------------ 01 tagger
    def tagger(self):
        """The run's tagger (eval mode, outputs in the dataset's class order)."""
        from .taggers.stage import load_stage_tagger

        return load_stage_tagger(self.stage("sed"))

    def sed_frames_path(self, split: str) -> Path:
        """Stage 01's frame probabilities of ``split`` (:class:`ussnb.anchors.SedFrames`), read by mining."""
        return self.stage("sed") / SED_FRAMES_FOLDER / f"{split}.npz"

    # ------------------------------------------------------------------ 02 anchors
    def anchors_dir(self, split: str) -> Path:
        return self.stage("anchors") / ANCHORS_FOLDER / split

    def anchors(self, split: str):
        """The mined :class:`~ussnb.anchors.AnchorSet` of ``split``."""
        from .anchors import AnchorSet

        return AnchorSet(self.anchors_dir(split))

    def held_out_classes(self) -> list[str]:
        """MIDs the run's training anchors excluded (``mine_anchor_set(..., exclude_classes=...)``); [] if the
        anchors are not mined (or the run has no anchor stage)."""
        try:
            meta = self.anchors_dir("train") / "anchors.json"
        except DataError:
            return []
        if not meta.is_file():
            return []
        return list(json.loads(meta.read_text()).get("exclude", []))

    # ------------------------------------------------------------------ 03 conditions
    def conditions_path(self, kind: str) -> Path:
        return self.stage("queries") / conditions_file(kind)

    def class_conditions(self, kind: str):
        """Stage 03's :class:`~ussnb.queries.ClassConditions` of ``kind``."""
        from .queries import ClassConditions

        path = self.conditions_path(kind)
        if not path.is_file():
            raise CheckpointError(f"{path} missing — run stage 03 (query conditions) first")
        return ClassConditions(path)

    # ------------------------------------------------------------------ 04 separator
    @property
    def separator_path(self) -> Path:
        return self.stage("training") / SEPARATOR_FILE

    @property
    def validation_path(self) -> Path:
        return self.stage("training") / VALIDATION_FILE

    def separator(self):
        """The trained separator module (eval mode)."""
        from .separators import load_separator

        self._require_separator()
        return load_separator(self.separator_path).eval()

    def bundle(self, **kwargs: Any):
        """The separator with its condition type, class-average conditions and (lazily) the run's tagger — what
        :func:`ussnb.separation.separate` and the evaluation protocol query."""
        from .separation import SeparationBundle

        self._require_separator()
        return SeparationBundle.from_checkpoint(self.separator_path, run=self, **kwargs)

    def _require_separator(self) -> None:
        if not self.separator_path.is_file():
            raise CheckpointError(f"{self.path or self.stage('training')}: not a pipeline run directory with a "
                                  f"trained separator ({STAGE_NAMES['training']}/{SEPARATOR_FILE} missing — run the "
                                  "pipeline up to stage 04)")

    # ------------------------------------------------------------------ 05 hierarchy
    @property
    def thresholds_path(self) -> Path:
        return self.stage("separation") / THRESHOLDS_FILE
