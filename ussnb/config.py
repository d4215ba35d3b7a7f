"""Typed configuration: one source of truth for every pipeline parameter.

Each stage's parameters are a dataclass *section* here — its field names, types, defaults and one-line help.
Three things read them and nothing else defines a default:

* the notebooks: ``tools/build_notebooks.py`` writes each notebook's tagged ``parameters`` cell from its
  section (the line ``# ussnb-parameters: <section>`` in ``notebooks/src``), so a notebook run on its own has
  exactly these defaults;
* the presets (``ussnb/presets/*.yaml``): a mapping per section (``data:``, ``sed:``, ``anchors:``,
  ``queries:``, ``train:``, ``separation:``, ``eval:``) that overrides fields of that section only, plus
  top-level keys that go to *every* stage declaring the name (``zero_shot_classes``); the pipeline refuses a
  name no section has before anything runs;
* the code: :class:`ussnb.train.TrainConfig` extends :class:`TrainSection` (``python -m ussnb.train --preset
  cpu`` reads the preset's ``train`` section), stage 01 builds its SED training config from
  :class:`SedSection`.

Light on purpose (standard library only): the pipeline runner and ``ussnb doctor`` import it before torch.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Mapping, Optional, Union  # noqa: F401  (annotations of the sections below)

from .errors import ConfigError


def _p(default: Any, help: str):
    """A field with its help text (a list or dict default is copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataSection:
    """Stage 00: the weakly labelled dataset."""
    dataset: Union[str, list] = _p("starter", "starter | esc50 | a prepared folder | a list of them, combined: "
                                              "[starter, esc50]")
    n_train: int = _p(1500, "composed 10 s training clips (per dataset of a list)")
    n_validation: int = _p(200, "composed validation clips (per dataset)")
    n_test: int = _p(300, "composed test clips (per dataset)")
    zero_shot_classes: list = _p([], "class names or MIDs no training/validation clip may contain (zero-shot)")
    data_seed: int = _p(0, "seed of the composition (same seed -> identical clips)")
    example_clips: int = _p(3, "clips shown with an audio player")


@dataclass
class SedSection:
    """Stage 01: weak labels and the sound event detector (the run's tagger)."""
    tagger: str = _p("starter-sed", "trained here: starter-sed (CNN) | starter-htsat (HTS-AT-small); pretrained: "
                                    "efficientat-mn04 | htsat | panns-cnn14 | panns-cnn14-decisionlevelmax")
    tagger_fallback: str = _p("", "a trained tagger used when the pretrained one has no weights on disk (e.g. "
                                  "starter-htsat); empty: stop and say where the weights go")
    sed_steps: int = _p(1500, "training steps of a trained tagger")
    sed_batch_size: int = _p(16, "distinct classes per balanced batch")
    sed_lr: float = _p(0.001, "AdamW learning rate")
    sed_pooling: str = _p("attention", "starter-sed: attention | max : frames -> clip probability")
    sed_size: str = _p("cpu", "model size: default | cpu | tiny (ussnb.sed_training.SED_SIZES, HTSAT_SIZES)")
    sed_mixup: float = _p(0.0, "Beta(a, a) mixup of clips and tags; 0 turns it off")
    sed_eval_every: int = _p(250, "validation mAP every N steps")
    compare_with: list = _p([], "trained taggers (starter-sed, starter-htsat) also trained on these weak labels "
                                "with the same steps and batches, compared with the run tagger in one table")
    seed: int = _p(0, "seed of initialisation and sampling")


@dataclass
class AnchorsSection:
    """Stage 02: anchor mining (Algorithm 1 steps 1-2)."""
    anchor_strategy: str = _p("sed", "sed | in-clip-random | out-clip-random : how the cached anchors are chosen")
    anchor_seconds: float = _p(2.0, "anchor duration tau (0.5 ... 10 s)")
    score_window: float = _p(0.0, "seconds of the SED scoring window: 0 means tau (the paper), 1.953 is 200 "
                                  "HTS-AT frames (the 2021 system)")
    precision_durations: list = _p([0.5, 1.0, 2.0, 4.0], "tau values of the mining-precision table")
    step3_threshold: float = _p(0.3, "detection threshold theta of the step-3 demonstration")
    speed_batches: int = _p(3, "batches timed for the cached vs on-the-fly comparison")
    zero_shot_classes: list = _p([], "class names or MIDs held out of the *training* anchors (zero-shot evaluation)")
    mining_seed: int = _p(0, "seed of random anchors and demo mixtures")


@dataclass
class QueriesSection:
    """Stage 03: query conditions (eq. 9)."""
    example_files: list = _p([], "your own audio files for the query-by-example cell (empty: use test anchors)")


@dataclass
class TrainSection:
    """Stage 04: the query-conditioned separator (what ``python -m ussnb.train`` trains)."""
    separator: str = _p("meltcn", "meltcn | resunet30 | resunet60 | unet")
    separator_preset: Optional[str] = _p("default", "size preset of the separator (resunet30: paper | small | tiny)")
    condition: str = _p("soft", "onehot | soft | embedding | finetune | shortcut | adaptor")
    steps: int = _p(3000, "optimizer steps")
    batch_size: int = _p(16, "distinct classes per step (each 2-source mixture also trains its second query)")
    lr: float = _p(0.003, "AdamW peak learning rate")
    schedule: str = _p("linear-cosine", "constant | paper | linear-cosine")
    warmup_steps: int = _p(200, "warm-up steps (paper schedule: steps per factor 0.001/0.01/0.1)")
    loss: str = _p("neg-sdr", "neg-sdr | l1")
    n_sources: int = _p(2, "sources per mixture (2-4)")
    augmentation: str = _p("match-energy", "match-energy | random-gain | none")
    step3_threshold: Optional[float] = _p(None, "Algorithm 1 step 3 threshold (re-pair so no detected class is "
                                                "shared); None (or < 0) disables it")
    both_targets: bool = _p(True, "a 2-source mixture trains both of its queries")
    query_other: float = _p(0.0, "probability an item is queried by other anchors of its class (by-example "
                                 "training); 0: its own")
    query_examples: int = _p(2, "other anchors averaged into that query (like `ussnb separate --example EX1 EX2`)")
    speed_perturb: float = _p(0.15, "+- fraction of random speed change of anchors; 0 turns it off")
    val_every: int = _p(250, "validation SDRi every N steps")
    val_mixtures: int = _p(200, "fixed validation mixtures")
    accumulate: int = _p(1, "micro-batches per optimizer step (gradient accumulation: batch_size x accumulate)")
    sync_batchnorm: bool = _p(False, "under DDP: BatchNorm statistics over all ranks (SyncBatchNorm)")
    seed: int = _p(0, "seed of initialisation and sampling")


@dataclass
class SeparationSection:
    """Stage 05: hierarchical separation (Algorithm 3)."""
    input_file: str = _p("", "your own audio file (empty: a test clip of the dataset of this run)")
    levels: list = _p([1, 2, 3], "ontology levels to separate (1: the top categories; up to 6)")
    threshold: float = _p(0.2, "a node is active in a 2 s segment when its grouped probability reaches it "
                               "(the paper's)")
    calibrate: bool = _p(True, "choose theta per level on the validation clips' true events (when the dataset "
                               "has them)")
    detection_clips: int = _p(200, "clips per split for calibrating and measuring detection")
    query: str = _p("", "optional single query (class name, MID or index) separated from the same clip")
    segment_seconds: float = _p(2.0, "separation chunk length (s)")
    overlap: float = _p(0.25, "fraction of a chunk cross-faded with the next")


@dataclass
class EvalSection:
    """Stage 06: the paper's evaluation protocol on the kit's test sets."""
    pairs_per_class: int = _p(10, "starter-pairs / esc50-pairs mixtures per target class")
    pair_examples: int = _p(4, "test segments kept per class for query by example (zero-shot)")
    music_pieces: int = _p(4, "chorale excerpts in starter-music")
    music_seconds: float = _p(8.0, "length of each music excerpt (s)")
    speech_per_snr: int = _p(6, "noisy utterances per SNR (0, 5, 10, 15 dB) in starter-speech")
    speech_query: str = _p("mean", "mean: one 'speech' query (mean of the speech classes) | own: the item's "
                                   "speech class")
    zero_shot_classes: list = _p([], "class names or MIDs held out of the training anchors (same as stage 02)")
    esc50_dir: str = _p("", "ESC-50 folder for esc50-pairs (empty: USSNB_ESC50_DIR; absent: skipped)")
    benchmark_seed: int = _p(0, "seed of every benchmark recipe (same seed -> identical benchmarks and metrics)")


@dataclass
class AblationsSection:
    """notebooks/07_ablations: the finished sweeps beside the paper's tables (run by ``ussnb sweep``; not a
    pipeline stage)."""
    metric: str = _p("", "metric of the bar chart and the sentence (empty: the sweep's first, e.g. starter_pairs)")


# section name -> (dataclass, key of the stage in ussnb.run.STAGES)
SECTIONS: dict[str, tuple[type, str]] = {
    "data": (DataSection, "data"),
    "sed": (SedSection, "sed"),
    "anchors": (AnchorsSection, "anchors"),
    "queries": (QueriesSection, "queries"),
    "train": (TrainSection, "training"),
    "separation": (SeparationSection, "separation"),
    "eval": (EvalSection, "evaluation"),
}
STAGE_SECTION: dict[str, str] = {stage: name for name, (_, stage) in SECTIONS.items()}
# sections of notebooks that are not pipeline stages (their own command runs them; presets cannot set them)
COMMAND_SECTIONS: dict[str, type] = {"ablations": AblationsSection}  # 07_ablations: `ussnb sweep`


def _section_class(section: str) -> type:
    if section in SECTIONS:
        return SECTIONS[section][0]
    if section in COMMAND_SECTIONS:
        return COMMAND_SECTIONS[section]
    raise ConfigError(f"unknown config section {section!r}; sections: {', '.join([*SECTIONS, *COMMAND_SECTIONS])}")


def section_fields(section: str) -> dict[str, Any]:
    """``{name: dataclasses.Field}`` of one section (unknown section → ValueError listing them)."""
    return {f.name: f for f in fields(_section_class(section))}


def defaults(section: str) -> dict[str, Any]:
    """The section's default values (fresh copies of lists)."""
    return {k: (f.default_factory() if f.default is MISSING else f.default)  # type: ignore[misc]
            for k, f in section_fields(section).items()}


def parameter_lines(section: str) -> list[str]:
    """The typed lines of a notebook's parameters cell for ``section`` — ``name: type = default  # help`` — as
    papermill reads them (``Union[...]``/``Optional[...]`` need ``typing``, imported on the first line)."""
    fs = section_fields(section)
    values = defaults(section)
    lines = []
    if any(("Union[" in str(f.type) or "Optional[" in str(f.type)) for f in fs.values()):
        lines.append("from typing import Optional, Union  # noqa: E402,F401  (papermill reads `Union[...]`, "
                     "not `str | list`)")
        lines.append("")
    for name, f in fs.items():
        lines.append(f"{name}: {f.type} = {values[name]!r}  # {f.metadata['help']}")
    return lines


def from_namespace(section: str, namespace: Mapping[str, Any]) -> Any:
    """The section's dataclass from a notebook's globals (after papermill injected its parameters)."""
    cls = _section_class(section)
    return cls(**{k: namespace[k] for k in section_fields(section) if k in namespace})
