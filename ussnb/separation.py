"""Separation for users: "give me the dog in this recording", "split this soundtrack by the AudioSet ontology".

- :class:`SeparationBundle` — everything inference needs, from a checkpoint file (``separator.pt``) or a
  pipeline run directory (then also the run's tagger and class-average conditions): the separator, its
  condition type, the class MIDs / names, the ontology restricted to them, the tagger (loaded lazily), the
  eq.-9 class-average conditions.
- :func:`resolve_query` — a class (name, MID or index → its class-average condition), example audio files
  (query by example through the tagger), a saved ``.npy`` / ``.npz`` condition, or a vector; every condition
  type mismatch is an error that names both types.
- :func:`exclusion_query` / :func:`negative_query` — "everything except the dog" and "the music without the
  voice": a query (or the whole mixture) minus excluded sounds, by a second separation subtracted chunk by chunk
  (``residual``) or by condition arithmetic (``condition``), run inside the same chunk function.
- :func:`separate` / :func:`separate_file` — chunked, batched, cross-faded overlap-add
  (:func:`ussnb.audio.stream_overlap_add`) streamed from disk to disk: memory does not grow with the input's
  length. Optionally the residual ("everything else") track.
- :func:`separate_hierarchy` — Algorithm 3 with Algorithm 4's grouping: pass 1 streams the file and tags
  non-overlapping 2 s segments; for every requested ontology level a node is active in a segment when the
  max probability over its descendants reaches θ; pass 2 streams the file again and, for each node active
  somewhere, separates every active segment with condition = that segment's tagging vector zeroed outside
  the node's descendants, silence elsewhere (chunks = the segments plus 0.25 s margins, cross-faded, so a
  track fades in and out over 0.5 s around segment borders instead of clicking). Writes
  ``out/<name>/level=<l>/<node label>.wav`` (float32) and ``out/<name>/summary.json``.

Rates. The separator works at ``bundle.sample_rate``; an input at another rate is resampled only when asked
(``resample=True`` / ``--resample``), else :class:`~ussnb.errors.AudioError` says so. The tagger's own rate is
an internal detail: pass 1 always converts to it.

Output like the input (:func:`separate_file`, ``output_rate="input"``, the default). Separation always runs
once, on the channels' mean at the model's rate. The estimate is then resampled back to the input's rate
(streaming soxr) and, for an input of several channels, applied to every channel by a time-frequency ratio
mask ``clip(|Ŝ| / |X_mono|, 0, 1)`` (STFT at the input's rate, :func:`ussnb.audio.mask_channels`, streamed by
:class:`~ussnb.audio.StreamingChannelMask`); the residual is each channel minus its target. Chosen by
measurement (``perf/stereo_output.py``: 54 starter pairs panned to five stereo layouts at 48 kHz, per-channel
SDRi against the stereo target): the mask gave 4.9 dB on average, separating every channel on its own 4.0 dB
(at twice the compute), the mono estimate copied to both channels 1.5 dB. Bands above the model's Nyquist
frequency get a mask of 0 (the separator says nothing about them), so they go to the residual. A mono input
at the model's rate is written exactly as with ``output_rate="model"`` (the model's rate, mono: today's
output, bit for bit). Formats: ``wav`` (float32, default), ``wav16`` / ``wav24`` (PCM, clipped to ±1),
``flac`` (24-bit).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import soundfile as sf
import torch

from .audio import (StreamingChannelMask, channel_layout, check_wave, resample as resample_array, segment_hop,
                    stream_audio_blocks, stream_channel_blocks, stream_length, stream_overlap_add)
from .errors import AudioError, CheckpointError, ConfigError, DataError, OntologyError, QueryError, UssnbError
from .inference import forward_chunks
from .io import AtomicTarget, atomic_write_text, short_hash
from .paths import check_output_folder

log = logging.getLogger(__name__)

TAG_SECONDS = 2.0  # Algorithm 3 tags non-overlapping 2 s segments
HIERARCHY_KINDS = ("soft", "onehot")
DEFAULT_THRESHOLD = 0.2  # the paper's θ for a node to be active in a segment
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64", ".rf64",
                  ".m4a", ".aac", ".opus", ".wma", ".webm", ".mka", ".mp4", ".g722"}
MAX_LEVEL = 6  # the AudioSet ontology has 6 levels
MAX_SEGMENT_SECONDS = 600.0  # longer chunks only cost memory
MAX_BATCH_SIZE = 1024
OUTPUT_RATES = ("input", "model")
#: --format → (soundfile format, subtype, file suffix)
OUTPUT_FORMATS = {"wav": ("WAV", "FLOAT", ".wav"), "wav16": ("WAV", "PCM_16", ".wav"),
                  "wav24": ("WAV", "PCM_24", ".wav"), "flac": ("FLAC", "PCM_24", ".flac")}
_KIND_TEXT = {
    "onehot": "one-hot class vectors",
    "soft": "the tagger's class probabilities",
    "embedding": "the tagger's embeddings",
    "finetune": "a fine-tuned tagger's outputs",
    "shortcut": "a tagger + shortcut copy's outputs",
    "adaptor": "a tagger + adaptor's outputs",
}


# ============================================================================================== settings
def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_whole(value) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value).is_integer()


def check_settings(
    *,
    segment_seconds: Any = None,
    overlap: Any = None,
    batch_size: Any = None,
    threshold: Any = None,
    levels: Any = None,
    output_rate: Any = None,
    output_format: Any = None,
) -> list[int] | None:
    """Refuse out-of-range or wrongly typed separation settings with a :class:`ConfigError` naming the
    option (the ``ussnb separate`` flag and the API argument). Settings left ``None`` are not checked.

    ``output_rate`` (``--output-rate``): ``input`` or ``model``. ``output_format`` (``--format``): one of
    :data:`OUTPUT_FORMATS` (wav, wav16, wav24, flac).

    ``segment_seconds`` (``--segment``): finite, > 0, ≤ 600 s. ``overlap`` (``--overlap``): in [0, 1).
    ``batch_size`` (``--batch-size``): an integer in 1..1024. ``threshold`` (``--threshold``): in [0, 1].
    ``levels`` (``--levels``): integers in 1..6 (see :func:`check_levels_exist` for the model's ontology).
    Returns ``levels`` as a list of ints without repeats (None if not given)."""
    if segment_seconds is not None:
        if not _is_number(segment_seconds) or not math.isfinite(segment_seconds) or not \
                0 < segment_seconds <= MAX_SEGMENT_SECONDS:
            raise ConfigError(f"--segment (segment_seconds) must be a chunk length in seconds, > 0 and at most "
                              f"{MAX_SEGMENT_SECONDS:g}, got {segment_seconds!r}")
    if overlap is not None:
        if not _is_number(overlap) or not 0.0 <= overlap < 1.0:  # NaN fails the comparison too
            raise ConfigError(f"--overlap (overlap) must be a fraction in [0, 1) (the part of a chunk cross-faded "
                              f"with the next), got {overlap!r}")
    if batch_size is not None:
        if not _is_whole(batch_size) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"--batch-size (batch_size) must be a whole number of chunks in 1..{MAX_BATCH_SIZE}, "
                              f"got {batch_size!r}")
    if threshold is not None:
        values = list(threshold.values()) if isinstance(threshold, Mapping) else [threshold]
        for value in values:
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"--threshold (threshold) must be a probability in [0, 1], got {value!r}")
    if output_rate is not None and output_rate not in OUTPUT_RATES:
        raise ConfigError(f"--output-rate (output_rate) must be 'input' (the input's rate and channels) or 'model' "
                          f"(the model's rate, mono), got {output_rate!r}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"--format (output_format) must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    if levels is None:
        return None
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Iterable):
        levels = [levels]
    out: list[int] = []
    for level in levels:
        if not _is_whole(level) or not 1 <= level <= MAX_LEVEL:
            raise ConfigError(f"--levels (levels): ontology levels are whole numbers 1..{MAX_LEVEL} (1 = the top "
                              f"categories), got {level!r}")
        if int(level) not in out:
            out.append(int(level))
    if not out:
        raise ConfigError(f"--levels (levels): give at least one ontology level (1..{MAX_LEVEL})")
    return out


def check_levels_exist(levels: Iterable[int], ontology) -> None:
    """:class:`ConfigError` when a level is deeper than ``ontology`` (the one the model's classes span),
    listing the levels that exist and their node counts."""
    deepest = int(ontology.max_level)
    deep = sorted({int(lv) for lv in levels if int(lv) > deepest})
    if deep:
        counts = [(lv, len(ontology.nodes_at_level(lv))) for lv in range(1, deepest + 1)]
        exist = ", ".join(f"{lv} ({n} node{'' if n == 1 else 's'})" for lv, n in counts)
        raise ConfigError(f"--levels {' '.join(map(str, deep))}: the ontology of this model's classes "
                          f"({ontology.source}) has {deepest} level(s); levels that exist: {exist}")


# ============================================================================================== bundle
@dataclass
class SeparationBundle:
    """A separator with what it needs to be queried.

    Attributes:
        model: ``model(mixture (batch, 1, samples), condition (batch, C)) → (batch, 1, samples)``.
        kind: condition type it was trained with (onehot | soft | embedding | finetune | shortcut | adaptor).
        labels: class MIDs (the order of class-probability vectors).
        names: display names of ``labels``.
        class_conditions: ``(classes, C)`` eq.-9 class-average conditions of ``kind`` (None if unknown).
        class_counts: anchors per class behind ``class_conditions`` (0 = no average for that class).
        query_net_state: learned query-net weights (learnable condition types).
        source: where it came from (checkpoint path or run directory).
    """

    model: torch.nn.Module
    kind: str
    labels: list[str]
    names: list[str]
    class_conditions: np.ndarray | None = None
    class_counts: np.ndarray | None = None
    query_net_state: dict | None = None
    source: str = ""
    run: Any = None  # the ussnb.run.Run it belongs to, if any
    tagger_loader: Callable[[], Any] | None = None
    _tagger: Any = field(default=None, repr=False)
    _ontology: Any = field(default=None, repr=False)
    _query_net: Any = field(default=None, repr=False)

    def __post_init__(self):
        self.model.eval()
        if self.names is None or len(self.names) != len(self.labels):
            self.names = list(self.labels)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, checkpoint_or_run: str | os.PathLike, **kwargs) -> "SeparationBundle":
        """From a checkpoint file or a pipeline run directory (``RUN/04_training/separator.pt`` + the run's
        tagger and class-average conditions)."""
        path = Path(checkpoint_or_run)
        if path.is_dir():
            return cls.from_run(path, **kwargs)
        if not path.exists():
            raise CheckpointError(f"{path}: no such checkpoint file or run directory")
        return cls.from_checkpoint(path, **kwargs)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, **kwargs) -> "SeparationBundle":
        """From a pipeline run directory (or its training stage folder itself)."""
        from .run import SEPARATOR_FILE, Run

        folder = Path(run_dir)
        if (folder / SEPARATOR_FILE).is_file():  # a training stage folder itself
            return cls.from_checkpoint(folder / SEPARATOR_FILE, **kwargs)
        return Run(folder).bundle(**kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, run: Any = None, tagger: Any = None, device: Any = None,
                        precision: str | None = None) -> "SeparationBundle":
        """A ``separator.pt`` written by :func:`ussnb.train.train_separator` (or ``save_separator`` with the
        extras ``condition`` and ``labels``). ``run``: the :class:`~ussnb.run.Run` whose tagger, class-average
        conditions and dataset names go with it — by default the run the checkpoint sits in (its training
        folder), if any. ``tagger``: a tagger object to use instead of the run's. ``device`` (auto | cpu |
        cuda[:N]; default ``USSNB_DEVICE`` or auto) and ``precision`` (fp32 | bf16 | fp16 | best; default
        ``USSNB_PRECISION`` or fp32): where and how the separator runs — the model is
        :func:`ussnb.separators.optimize`'s module, the tagger and query net follow it to the device."""
        from .checkpoint import read_checkpoint
        from .run import Run
        from .runtime import resolve_device
        from .separators import load_separator, optimize

        path = Path(path)
        payload = read_checkpoint(path)
        model = load_separator(path, payload)  # one read of the file
        device = resolve_device(device)
        model = optimize(model, precision, device=device)  # checks the precision (None: USSNB_PRECISION / fp32)
        kind = payload.get("condition")
        labels = payload.get("labels")
        if kind is None or labels is None:
            raise CheckpointError(f"{path}: the checkpoint does not record its condition type and class labels "
                                  "('condition', 'labels'); it was not written by the training stage")
        run = run if run is not None else Run.of_checkpoint(path)
        names = _label_names(labels, run)
        conditions = counts = None
        if run is not None and run.has("queries"):
            conditions, counts = _class_conditions(run, kind, labels, int(model.condition_size))
        if conditions is None and isinstance(payload.get("class_conditions"), dict):
            cc = payload["class_conditions"]
            conditions = np.asarray(cc["conditions"], np.float32)
            counts = np.asarray(cc.get("counts", np.ones(len(labels))), np.int64)
        if conditions is None and kind == "onehot":
            conditions, counts = np.eye(len(labels), dtype=np.float32), np.ones(len(labels), np.int64)
        loader = None
        if tagger is None:
            loader = _tagger_loader(run, payload.get("tagger"), labels, path)
        bundle = cls(model=model, kind=kind, labels=list(labels), names=names, class_conditions=conditions,
                     class_counts=counts, query_net_state=payload.get("query_net_state"), source=str(path),
                     run=run, tagger_loader=loader)
        bundle._tagger = tagger
        return bundle

    # ------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def device(self):
        """Where the separator (and with it the tagger and query net) runs."""
        from .inference import model_device

        return model_device(self.model)

    @property
    def condition_size(self) -> int:
        return int(self.model.condition_size)

    @property
    def classes(self) -> int:
        return len(self.labels)

    @property
    def tagger(self):
        """The tagger (outputs in this bundle's class order), loaded on first use."""
        if self._tagger is None:
            if self.tagger_loader is None:
                raise CheckpointError(
                    f"{self.source}: no tagger is known for this checkpoint (query by example and hierarchical "
                    "separation need one) — pass the pipeline run directory instead of the bare checkpoint")
            self._tagger = self.tagger_loader().to(self.device)
            if int(self._tagger.classes) != self.classes:
                raise CheckpointError(f"the tagger has {self._tagger.classes} classes, the separator's dataset "
                                      f"{self.classes}")
        return self._tagger

    @property
    def ontology(self):
        """The AudioSet ontology (full metadata if configured, else the starter mini-ontology) restricted to
        this bundle's labels; labels it does not know become top-level leaves."""
        if self._ontology is None:
            self._ontology = ontology_for(self.labels, self.names)
        return self._ontology

    def query_net(self):
        """A :class:`~ussnb.queries.QueryNet` mapping waveforms to this model's conditions."""
        from .queries import LEARNABLE, QueryNet

        if self.kind == "onehot":
            raise CheckpointError(
                f"query by example needs a model trained with tagger-based conditions; {self.source} was trained "
                "with 'onehot' conditions (class labels only) — query a class by name instead")
        if self._query_net is None:
            tagger = self.tagger
            if self.kind in LEARNABLE:
                import copy

                # the learnable kinds keep the dimension of the tagger head they start from
                output = "embedding" if int(getattr(tagger, "embedding_size", -1)) == self.condition_size else "soft"
                net = QueryNet(copy.deepcopy(tagger), self.kind, output=output)
                if self.query_net_state is None:
                    raise CheckpointError(f"{self.source}: a '{self.kind}' model without its learned query-net "
                                          "weights (query_net_state) cannot be queried")
                net.load_state_dict(self.query_net_state)
            else:
                net = QueryNet(tagger, self.kind)
            if int(net.dim) != self.condition_size:
                raise CheckpointError(f"the query net gives {net.dim}-dim conditions, the separator expects "
                                      f"{self.condition_size}")
            self._query_net = net.to(self.device).eval()
        return self._query_net

    def calibrated_thresholds(self) -> dict[int, float] | None:
        """θ per level calibrated by the run's stage 05 (``thresholds.json``), or None."""
        if self.run is None or not self.run.has("separation"):
            return None
        path = self.run.thresholds_path
        if not path.is_file():
            return None
        try:
            return {int(k): float(v) for k, v in json.loads(path.read_text())["thresholds"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{path}: unreadable calibrated thresholds ({exc})") from exc

    def class_index(self, query: str | int) -> int:
        """Position of a class given by display name (dataset's or AudioSet's, case-insensitive), MID or
        index. Unknown → :class:`OntologyError` listing the nearest labels."""
        if isinstance(query, (int, np.integer)):
            if not 0 <= int(query) < self.classes:
                raise OntologyError(f"class index {query} out of range 0..{self.classes - 1}")
            return int(query)
        text = str(query).strip()
        if text in self.labels:
            return self.labels.index(text)
        low = text.lower()
        for i, name in enumerate(self.names):
            if name.lower() == low:
                return i
        if text.isdigit():
            return self.class_index(int(text))
        onto = self.ontology
        try:
            return onto.label(text).index
        except OntologyError:
            pass
        close = onto.closest(text)
        hint = ("closest: " + ", ".join(repr(c) for c in close)) if close else \
            ("known: " + ", ".join(repr(n) for n in self.names[:12]) + (", ..." if self.classes > 12 else ""))
        raise OntologyError(f"unknown class {text!r}: this model separates {self.classes} classes; {hint}")


def _label_names(labels: Sequence[str], run) -> list[str]:
    if run is not None and run.has("data"):
        try:
            ds = run.dataset()
            if all(m in ds.label_names for m in labels):
                return [ds.label_names[m] for m in labels]
        except (UssnbError, OSError, KeyError, ValueError) as exc:
            log.debug("dataset names unavailable: %s", exc)
    if run is not None and run.has("queries"):
        for sidecar in sorted(run.stage("queries").glob("conditions_*.json")):
            try:
                meta = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                continue
            if meta.get("names") and list(meta.get("labels", [])) == list(labels):
                return list(meta["names"])
    from .ontology import load_ontology

    try:
        onto = load_ontology()
        known = {lab.mid: lab.name for lab in onto.labels}
    except UssnbError:
        known = {}
    return [known.get(m, m) for m in labels]


def _class_conditions(run, kind: str, labels: Sequence[str], size: int):
    """The run's stage-03 conditions of ``kind``, reordered to ``labels``; None if absent."""
    path = run.conditions_path(kind)
    if not path.is_file():
        return None, None
    cc = run.class_conditions(kind)
    if cc.kind != kind:
        raise CheckpointError(f"{path} holds '{cc.kind}' conditions, the separator was trained with '{kind}'")
    if cc.conditions.shape[1] != size:
        raise CheckpointError(f"{path}: {cc.conditions.shape[1]}-dim conditions, the separator expects {size}")
    missing = [m for m in labels if m not in cc.labels]
    if missing:
        raise CheckpointError(f"{path} lacks conditions for {len(missing)} of the separator's classes: {missing[:5]}")
    order = [cc.labels.index(m) for m in labels]
    return cc.conditions[order].astype(np.float32), np.asarray(cc.counts)[order]


def _tagger_loader(run, spec, labels, ckpt_path) -> Callable[[], Any] | None:
    from .taggers.stage import PRETRAINED_NAMES, TAGGER_SPEC, build_run_tagger

    if run is not None and run.has("sed") and (run.stage("sed") / TAGGER_SPEC).is_file():
        return lambda: run.tagger().eval()
    if isinstance(spec, dict) and spec.get("name"):
        base = Path(ckpt_path).parent
        return lambda: build_run_tagger(spec["name"], spec.get("labels", labels), checkpoint=spec.get("checkpoint"),
                                        base_dir=base).eval()
    if isinstance(spec, str) and spec in PRETRAINED_NAMES:
        return lambda: build_run_tagger(spec, labels).eval()
    return None


def ontology_for(labels: Sequence[str], names: Sequence[str] | None = None):
    """``load_ontology().subset(labels)``; labels missing from it become top-level leaves."""
    from .ontology import Ontology, load_ontology

    full = load_ontology()
    known_mids = {lab.mid: lab for lab in full.labels}
    names = list(names) if names is not None else list(labels)
    if all(m in known_mids for m in labels):
        return full.subset(list(labels))
    known = [m for m in labels if m in known_mids]
    nodes = list(full.subset(known).nodes.values()) if known else []
    missing = [m for m in labels if m not in known_mids]
    log.info("%d label(s) not in %s, treated as top-level leaves: %s", len(missing), full.source, missing[:5])
    rows = [{"mid": m, "name": known_mids[m].name if m in known_mids else n,
             "index": known_mids[m].audioset_index if m in known_mids else -1} for m, n in zip(labels, names)]
    return Ontology(nodes, rows, source=f"{full.source} (subset of {len(labels)}, {len(missing)} as leaves)")


# ============================================================================================== queries
@dataclass
class Query:
    """A resolved query: the condition ``vector`` (C,), what it came from and a filename ``slug``."""

    vector: np.ndarray
    source: str  # class | example | file | vector
    label: str
    slug: str
    detail: dict = field(default_factory=dict)


def slugify(text: str, max_len: int = 40) -> str:
    """Lower-case ASCII letters, digits and ``-``: ``"Male speech, man speaking"`` → ``male-speech-man-speaking``."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return (slug[:max_len].rstrip("-") or "query")


def safe_filename(text: str, max_len: int = 80) -> str:
    """A label as a file name: path separators and control / reserved characters replaced by ``_``."""
    name = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", str(text)).strip().strip(".")
    return name[:max_len].rstrip() or "unnamed"


def _short_hash(*parts: str) -> str:
    return short_hash(list(parts), 6)


def resolve_query(query: Any, bundle: SeparationBundle) -> Query:
    """Turn a user query into a condition vector for ``bundle.model``.

    Args:
        query: a class display name / MID / index (→ the eq.-9 class-average condition); a list of example
            audio files (query by example through the tagger); a path to a saved ``.npy`` / ``.npz``
            condition; or an array / tensor ``(C,)``.

    Raises:
        OntologyError: unknown class (nearest labels listed).
        AudioError: an example file is silent, empty or unreadable.
        CheckpointError: the condition does not fit the model (type / size), naming both.
    """
    if isinstance(query, Query):
        if query.vector is not None or query.source != "negative":
            _check_vector(query.vector, bundle, what=query.label)
        for v in query.detail.get("excluded_vectors", []) if query.source == "negative" else []:
            _check_vector(np.asarray(v, np.float32), bundle, what=query.label)
        return query
    if isinstance(query, torch.Tensor):
        query = query.detach().cpu().numpy()
    if isinstance(query, np.ndarray) and query.dtype.kind in "fiu":
        vec = _as_vector(query, "the condition array")
        _check_vector(vec, bundle, what="the condition array")
        return Query(vec, "vector", "vector", "vector-" + hashlib.sha1(vec.tobytes()).hexdigest()[:6])
    if isinstance(query, (list, tuple)):
        files = [Path(q) for q in query]
        if not files:
            raise AudioError("query by example needs at least one audio file")
        return _example_query(files, bundle)
    if isinstance(query, os.PathLike) or isinstance(query, str) and \
            Path(query).suffix.lower() in AUDIO_SUFFIXES | {".npy", ".npz"}:
        path = Path(query)
        if path.suffix.lower() in (".npy", ".npz"):
            return _file_query(path, bundle)
        return _example_query([path], bundle)
    if isinstance(query, str) and ("/" in query or os.sep in query) and Path(query).is_file():
        raise DataError(f"{query}: a file, but neither a saved condition (.npy / .npz) nor an audio file "
                        "(.wav, .flac, .mp3, ...) — query a class by name, MID or index, or by example")
    if isinstance(query, (str, int, np.integer)):
        return _class_query(query, bundle)
    raise ConfigError(f"cannot interpret a query of type {type(query).__name__}")


def _class_query(query, bundle: SeparationBundle) -> Query:
    k = bundle.class_index(query)
    mid, name = bundle.labels[k], bundle.names[k]
    if not _has_class_condition(bundle, k):
        raise DataError(f"class {name!r} ({mid}) had no training anchors, so it has no class-average "
                        "condition — query it by example instead (--example)")
    vec, how = _class_vector(bundle, k)
    _check_vector(vec, bundle, what=f"class {name!r}")
    return Query(vec, "class", name, slugify(name), {"mid": mid, "index": k, "condition": how})


def _has_class_condition(bundle: SeparationBundle, k: int) -> bool:
    """False only for a class whose class average is known to be missing (no training anchors)."""
    return bundle.class_conditions is None or bundle.class_counts is None or bundle.class_counts[k] > 0


def _class_vector(bundle: SeparationBundle, k: int, *, warn: bool = True) -> tuple[np.ndarray, str]:
    """Class ``k``'s condition and how it was made: its eq.-9 class average; for a ``soft`` model without
    averages the one-hot vector (a perfect tagger's output); otherwise a :class:`QueryError`."""
    if bundle.class_conditions is not None:
        return bundle.class_conditions[k].astype(np.float32), f"class average ({bundle.kind})"
    if bundle.kind == "soft":
        if warn:
            log.warning("no class-average soft conditions found beside %s: using the one-hot vector of %r (a "
                        "perfect tagger's output); pass the run directory for the eq.-9 averages", bundle.source,
                        bundle.names[k])
        vec = np.zeros(bundle.condition_size, np.float32)
        vec[k] = 1.0
        return vec, "one-hot (no class averages available)"
    from .run import STAGE_NAMES, conditions_file

    raise QueryError(
        f"{bundle.source}: no class-average '{bundle.kind}' conditions are known, so a class cannot be queried "
        f"by name (expected {STAGE_NAMES['queries']}/{conditions_file(bundle.kind)} in the run directory) — pass the "
        "pipeline run directory, or query by example (--example)")


DEFAULT_TEXT_TOP = 3


def text_query(text: str, bundle: SeparationBundle, top: int = DEFAULT_TEXT_TOP) -> Query:
    """A query from a free description ("a dog barking in the distance"), no network needed.

    The bundle's classes (its label set, through :attr:`SeparationBundle.ontology`: names and ontology
    descriptions) are ranked with :meth:`ussnb.ontology.Ontology.rank_text`; classes without a class-average
    condition (no training anchors) are passed over. The condition is the score-weighted average of the best
    ``top`` classes' class-average conditions, ``c = Σ_k w_k c̄_k`` with ``w_k = s_k / Σ s`` over those
    classes. ``detail`` records the text, ``top`` and every chosen class with its score and weight.

    Raises:
        ConfigError: empty text, ``top`` not a whole number ≥ 1.
        OntologyError: nothing in the text matches one of the model's classes (closest names listed).
        QueryError: the model has no class-average conditions of its kind.
    """
    from .ontology import text_terms

    if not isinstance(text, str) or not text.strip():
        raise ConfigError("--text is empty: describe the sound to extract, e.g. --text \"a dog barking\"")
    if not _is_whole(top) or top < 1:
        raise ConfigError(f"--top (top) must be a whole number of classes ≥ 1, got {top!r}")
    top = int(top)
    onto = bundle.ontology
    try:
        ranked = onto.rank_text(text, top=None)
    except OntologyError as exc:
        if not text_terms(text):
            raise
        close = onto.closest(text)
        hint = ("closest: " + ", ".join(repr(c) for c in close)) if close else \
            ("its classes: " + ", ".join(repr(n) for n in bundle.names[:12]) + (", ..." if bundle.classes > 12 else ""))
        raise OntologyError(f"no class of this model ({bundle.classes} classes) matches the text {text!r}: none of "
                            f"its words ({', '.join(dict.fromkeys(text_terms(text)))}) is in a class name or "
                            f"description; {hint}") from exc
    usable = [(lab, score) for lab, score in ranked if _has_class_condition(bundle, lab.index)]
    if not usable:
        names = ", ".join(repr(bundle.names[lab.index]) for lab, _ in ranked[:5])
        raise DataError(f"the text {text!r} matches only classes without training anchors ({names}), so none has "
                        "a class-average condition — query by example instead (--example)")
    chosen = usable[:top]
    total = sum(score for _, score in chosen)
    vec = np.zeros(bundle.condition_size, np.float64)
    classes, how = [], ""
    for lab, score in chosen:
        k = lab.index
        v, how = _class_vector(bundle, k, warn=False)
        weight = score / total
        vec += weight * v
        classes.append({"name": bundle.names[k], "mid": bundle.labels[k], "index": k, "score": round(score, 4),
                        "weight": round(weight, 4)})
    if how.startswith("one-hot"):
        log.warning("no class-average soft conditions found beside %s: using weighted one-hot vectors; pass the "
                    "run directory for the eq.-9 averages", bundle.source)
    vec = vec.astype(np.float32)
    _check_vector(vec, bundle, what=f"the text {text!r}")
    slug = "text-" + slugify(text, 32) + (f"-top{top}" if top != DEFAULT_TEXT_TOP else "")
    last = ranked.index(chosen[-1])
    skipped = [bundle.names[lab.index] for lab, _ in ranked[:last] if not _has_class_condition(bundle, lab.index)]
    detail = {"text": text, "top": top, "classes": classes,
              "condition": f"score-weighted {how}" if how else "score-weighted class averages"}
    if skipped:
        detail["skipped_without_anchors"] = skipped
    return Query(vec, "text", f"text: {text}", slug, detail)


EXCLUDE_METHODS = ("residual", "condition")
DEFAULT_EXCLUDE_METHOD = "residual"  # perf/negative_queries.py, 75 three-source starter mixtures, cpu run: alone
# 4.77 dB SDRi vs 0.29 (condition); query A minus B 7.99 vs 7.43; two-class query minus B 6.83 vs 6.81 (README)


def negative_query(target: Query | None, excluded: Sequence[Query], bundle: SeparationBundle,
                   method: str = DEFAULT_EXCLUDE_METHOD) -> Query:
    """A query that removes the ``excluded`` sounds from ``target`` (a resolved query), or from the whole
    mixture when ``target`` is None ("everything except the dog").

    Two methods (``method``):

    * ``residual`` (default): a second separation. The excluded sound is separated from the current estimate
      (the target estimate, or the mixture itself when there is no target) with the excluded condition, and
      subtracted: ``ŷ ← ŷ − f(ŷ, c_e)`` for every excluded ``c_e`` in turn. Alone this is exactly
      ``mixture − f(mixture, c_e)``. Costs one more forward pass per excluded sound.
    * ``condition``: condition arithmetic, one forward pass. ``c = c_t − Σ_e c_e``, clipped at 0 when all the
      conditions are non-negative (class probabilities, one-hot vectors, ReLU embeddings: a negative
      "probability" was never seen in training), then — for conditions that are not class-probability vectors
      (embeddings, learnable kinds) — rescaled to the target's L2 norm (an embedding's scale follows loudness,
      the separator was trained on real embeddings' norms). Class-probability vectors are not rescaled: their
      entries are absolute probabilities. Without a target, ``c_t`` is each chunk's own condition (the tagger /
      query net on the chunk, as hierarchical separation's segment conditions), so this needs the run's tagger.

    Which is better was measured on 3-source starter mixtures (``perf/negative_queries.py``); the default is the
    winner. Returns a :class:`Query` with ``source="negative"``; its ``vector`` is the condition of the one
    forward pass (the target's for ``residual``, the arithmetic's for ``condition``) or None (no target,
    per-chunk conditions); ``detail`` records the target, the excluded labels and the method."""
    if method not in EXCLUDE_METHODS:
        raise ConfigError(f"--exclude-method must be one of {', '.join(EXCLUDE_METHODS)}, got {method!r}")
    excluded = list(excluded)
    if not excluded:
        raise ConfigError("--exclude needs at least one class or example file")
    for e in excluded:
        _check_vector(e.vector, bundle, what=e.label)
    if target is None and method == "condition":
        bundle.tagger  # noqa: B018 — the per-chunk conditions need it: loads it, or says this checkpoint has none
    vec = None
    if target is not None:
        vec = target.vector if method == "residual" else subtract_conditions(target.vector, [e.vector for e in excluded],
                                                                                 class_probabilities=_class_dim(bundle))
    minus = "-minus-" + "-".join(slugify(e.slug, 24) for e in excluded)
    slug = (target.slug if target is not None else "all") + minus
    label = (target.label if target is not None else "everything") + " except " + ", ".join(e.label for e in excluded)
    detail = {"target": None if target is None else {"label": target.label, "source": target.source, **target.detail},
              "exclude": [{"label": e.label, "source": e.source, **e.detail} for e in excluded],
              "exclude_method": method, "excluded_vectors": [e.vector for e in excluded]}
    if target is not None and target.source == "text":
        detail["condition"] = target.detail.get("condition")
    return Query(vec, "negative", label, slug[:120], detail)


def exclusion_query(query, exclude: Sequence[Any], bundle: SeparationBundle,
                    method: str = DEFAULT_EXCLUDE_METHOD) -> Query:
    """``query`` (anything :func:`resolve_query` takes, or None = the whole mixture) without the sounds of
    ``exclude`` (each a class name / MID / index, an example audio file or a saved condition) — see
    :func:`negative_query`."""
    if isinstance(exclude, (str, int, os.PathLike)):
        exclude = [exclude]
    target = None if query is None else resolve_query(query, bundle)
    if target is not None and target.source == "negative":
        raise ConfigError("the query already has exclusions; give all of them in one exclude list")
    return negative_query(target, [resolve_query(e, bundle) for e in exclude], bundle, method)


def _class_dim(bundle: SeparationBundle) -> bool:
    """Whether the model's conditions are class-probability vectors (soft / onehot over its own classes)."""
    return bundle.kind in HIERARCHY_KINDS and bundle.condition_size == bundle.classes


def subtract_conditions(target: np.ndarray, excluded: Sequence[np.ndarray], *,
                        class_probabilities: bool) -> np.ndarray:
    """Condition arithmetic of :func:`negative_query` on ``(C,)`` or ``(batch, C)`` targets:
    ``c_t − Σ c_e``, clipped at 0 when every input is non-negative, and (not ``class_probabilities``) rescaled
    to the target's L2 norm (a zero difference stays zero)."""
    t = np.asarray(target, np.float64)
    e = np.sum([np.asarray(x, np.float64) for x in excluded], axis=0)
    d = t - e
    if t.min() >= 0 and e.min() >= 0:
        d = np.maximum(d, 0.0)
    if not class_probabilities:
        tn = np.linalg.norm(t, axis=-1, keepdims=True)
        dn = np.linalg.norm(d, axis=-1, keepdims=True)
        d = np.where(dn > 1e-12, d * tn / np.maximum(dn, 1e-12), 0.0)
    return d.astype(np.float32)


def _example_query(files: list[Path], bundle: SeparationBundle) -> Query:
    from .queries import query_by_example

    net = bundle.query_net()  # raises for onehot models / no tagger
    vec = query_by_example(files, net)
    stems = "+".join(f.stem for f in files[:2]) + (f"+{len(files) - 2}" if len(files) > 2 else "")
    slug = f"example-{slugify(stems, 24)}-{_short_hash(*[str(f.resolve()) for f in files])}"
    return Query(vec.astype(np.float32), "example", "example: " + ", ".join(f.name for f in files), slug,
                 {"files": [str(f) for f in files]})


def _file_query(path: Path, bundle: SeparationBundle) -> Query:
    if not path.is_file():
        raise DataError(f"{path}: condition file not found")
    kind = None
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            kind = json.loads(sidecar.read_text()).get("kind")
        except (OSError, ValueError):
            kind = None
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                key = next((k for k in ("condition", "vector", "embedding") if k in z), None)
                if key is None and keys == ["conditions", "counts"] or "conditions" in keys and key is None:
                    raise QueryError(
                        f"{path} holds class-average conditions for {z['conditions'].shape[0]} classes, not one "
                        "query — query a class by name (with the run directory as --checkpoint) instead")
                if key is None:
                    if len(keys) != 1:
                        raise QueryError(f"{path}: expected one array (or a 'condition' entry), found {keys}")
                    key = keys[0]
                arr = z[key]
                if kind is None and "kind" in z:
                    kind = str(z["kind"])
    except UssnbError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: cannot read the condition ({exc})") from exc
    vec = _as_vector(arr, str(path))
    _check_vector(vec, bundle, what=str(path), given_kind=kind)
    return Query(vec, "file", path.name, f"{slugify(path.stem, 24)}-{_short_hash(str(path.resolve()))}",
                 {"file": str(path), "kind": kind})


def _as_vector(arr, what: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0:
        raise QueryError(f"{what}: a condition must be one vector (C,), got shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise QueryError(f"{what}: the condition contains NaN/inf")
    return arr


def _guess_kind(dim: int, bundle: SeparationBundle) -> str:
    if dim == bundle.classes:
        return "class-probability (soft/onehot)"
    emb = None
    if bundle._tagger is not None or bundle.tagger_loader is not None:
        try:
            emb = int(bundle.tagger.embedding_size)
        except Exception:  # the tagger may be unavailable; the message then stays generic
            emb = None
    if emb == dim or dim in (128, 512, 768, 960, 1024, 2048):
        return "embedding"
    return "unknown-type"


def _check_vector(vec: np.ndarray, bundle: SeparationBundle, *, what: str, given_kind: str | None = None) -> None:
    size = bundle.condition_size
    trained = f"'{bundle.kind}' conditions ({size} dims: {_KIND_TEXT.get(bundle.kind, bundle.kind)})"
    if given_kind is not None and given_kind != bundle.kind:
        compatible = {given_kind, bundle.kind} <= set(HIERARCHY_KINDS) and vec.shape[0] == size
        if not compatible:
            raise QueryError(f"{what} is a '{given_kind}' condition ({vec.shape[0]} dims) but the separator "
                                  f"({bundle.source}) was trained with {trained}")
        log.warning("%s is a '%s' condition; the model was trained with '%s' ones", what, given_kind, bundle.kind)
    if vec.shape[0] != size:
        guess = _guess_kind(vec.shape[0], bundle)
        raise QueryError(f"{what} is a {vec.shape[0]}-dim {guess} vector but the separator ({bundle.source}) "
                              f"was trained with {trained}")


# ============================================================================================== separation
def _query_fn(bundle: SeparationBundle, q: Query, residual: bool):
    """The chunk function of a resolved query: ``(batch, segment)`` chunks → estimates (and residuals).
    A :func:`negative_query` adds its second separations (``residual``) or per-chunk conditions (``condition``
    without a target) here, so every exclusion runs through :func:`~ussnb.inference.forward_chunks` too."""
    cond = None if q.vector is None else np.asarray(q.vector, np.float32)[None]
    negative = q.detail.get("exclude_method") if q.source == "negative" else None
    excluded = [np.asarray(v, np.float32)[None] for v in q.detail.get("excluded_vectors", [])] if negative else []

    def fn(chunks: np.ndarray, starts: list[int]) -> np.ndarray:
        n = len(chunks)
        if cond is not None:
            y = forward_chunks(bundle.model, chunks, np.repeat(cond, n, axis=0))
        elif negative == "condition":  # everything except: each chunk's own condition minus the excluded
            y = forward_chunks(bundle.model, chunks, _chunk_negative_conditions(bundle, chunks, excluded))
        else:
            y = chunks
        if negative == "residual":
            for c in excluded:
                y = y - forward_chunks(bundle.model, y, np.repeat(c, n, axis=0))
        return np.stack([y, chunks - y]) if residual else y

    return fn


def _chunk_negative_conditions(bundle: SeparationBundle, chunks: np.ndarray, excluded: Sequence[np.ndarray]):
    """``(batch, segment)`` chunks at the model's rate → their own conditions (:func:`segment_tags` at the
    tagger's rate) minus the excluded ones (:func:`subtract_conditions`)."""
    tsr = int(bundle.tagger.sample_rate)
    x = chunks if tsr == bundle.sample_rate else resample_array(chunks, bundle.sample_rate, tsr)
    _, own = segment_tags(bundle, x)
    return subtract_conditions(own, [e[0] for e in excluded], class_probabilities=_class_dim(bundle))


def _input_blocks(wave_or_path, bundle: SeparationBundle, *, sr: int | None, resample: bool, block_seconds: float):
    """(blocks, expected length or None, display name)"""
    target = bundle.sample_rate
    if isinstance(wave_or_path, (str, os.PathLike)):
        path = Path(wave_or_path)
        return stream_audio_blocks(path, target, block_seconds, resample=resample), stream_length(path, target), str(path)
    wave = np.asarray(wave_or_path.detach().cpu().numpy() if isinstance(wave_or_path, torch.Tensor) else wave_or_path,
                      dtype=np.float32)
    if wave.ndim == 2:  # (channels, samples)
        wave = wave.mean(axis=0)
    if wave.ndim != 1:
        raise AudioError(f"expected a waveform (samples,) or (channels, samples), got shape {wave.shape}")
    check_wave(wave, name="input audio")
    rate = target if sr is None else int(sr)
    if rate != target:
        if not resample:
            raise AudioError(f"input audio is at {rate} Hz but the model works at {target} Hz; pass --resample "
                             "(resample=True) to convert it")
        wave = resample_array(wave, rate, target)
    return [wave], wave.shape[0], "input audio"


def separate(
    wave_or_path,
    query,
    bundle: SeparationBundle,
    segment_seconds: float = 2.0,
    overlap: float = 0.25,
    batch_size: int = 8,
    residual: bool = False,
    progress: bool = True,
    *,
    resample: bool = False,
    sr: int | None = None,
    block_seconds: float = 30.0,
    exclude: Sequence[Any] | None = None,
    exclude_method: str = DEFAULT_EXCLUDE_METHOD,
):
    """Separate ``query`` from a waveform or an audio file (in memory; see :func:`separate_file` for disk to
    disk). With ``exclude`` the excluded sounds are removed from the query's estimate, or from the mixture
    when ``query`` is None (:func:`exclusion_query`, ``exclude_method`` residual | condition).

    Args:
        wave_or_path: ``(samples,)`` / ``(channels, samples)`` array at ``sr`` (default: the model's rate), or a
            path (read block by block; channels averaged).
        query: anything :func:`resolve_query` accepts, or a resolved :class:`Query`.
        segment_seconds, overlap: chunk length and the fraction shared by consecutive chunks (cross-faded).
        resample: convert another input rate to the model's (else :class:`AudioError`).

    Returns:
        ``(samples,)`` float32 at ``bundle.sample_rate``, or ``(target, residual)`` with ``residual=True``
        (``residual = mixture − target``).
    """
    check_settings(segment_seconds=segment_seconds, overlap=overlap, batch_size=batch_size)
    q = resolve_query(query, bundle) if not exclude else exclusion_query(query, exclude, bundle, exclude_method)
    blocks, total, _ = _input_blocks(wave_or_path, bundle, sr=sr, resample=resample, block_seconds=block_seconds)
    segment, hop = segment_hop(bundle.sample_rate, segment_seconds, overlap)
    parts = list(stream_overlap_add(blocks, _query_fn(bundle, q, residual), segment, hop, batch_size,
                                    n_outputs=2 if residual else 1, progress=progress, total=total,
                                    desc=f"separating {q.label}"))
    if not parts:
        raise AudioError("zero-length audio")
    out = np.concatenate(parts, axis=-1)
    return (out[0], out[1]) if residual else out


class _WavWriter:
    """An audio file (float32 WAV by default; see :data:`OUTPUT_FORMATS`) written to a temporary file beside
    ``path`` and renamed over it on :meth:`commit`. PCM formats clip to ±1 (counted in :attr:`clipped`)."""

    def __init__(self, path: Path, sr: int, expected: int | None = None, *, channels: int = 1,
                 output_format: str = "wav"):
        self.path = Path(path)
        self.target = AtomicTarget(self.path)
        fmt, self.subtype, _ = OUTPUT_FORMATS[output_format]
        width = 4 if self.subtype == "FLOAT" else 3 if self.subtype == "PCM_24" else 2
        if fmt == "WAV" and expected is not None and expected * width * channels > 0xF0000000:
            fmt = "RF64"
        self.file = sf.SoundFile(self.target.tmp, "w", samplerate=int(sr), channels=int(channels),
                                 subtype=self.subtype, format=fmt)
        self.frames = 0
        self.clipped = 0

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, np.float32)
        if self.subtype != "FLOAT":
            over = np.abs(block) > 1.0
            if over.any():
                self.clipped += int(over.sum())
                block = np.clip(block, -1.0, 1.0)
        self.file.write(block)
        self.frames += len(block)

    def commit(self) -> Path:
        self.file.close()
        if self.clipped:
            log.warning("%s: %d sample(s) beyond ±1 clipped (%s); --format wav keeps them", self.path.name,
                        self.clipped, self.subtype)
        return self.target.commit()

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.target.abort()


def separate_file(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    query,
    bundle: SeparationBundle,
    *,
    residual_path: str | os.PathLike | None = None,
    segment_seconds: float = 2.0,
    overlap: float = 0.25,
    batch_size: int = 8,
    resample: bool = False,
    progress: bool = True,
    block_seconds: float = 30.0,
    output_rate: str = "input",
    output_format: str | None = None,
) -> dict:
    """Stream ``in_path`` → the separated ``out_path`` (and the residual, mixture − target, to ``residual_path``).

    ``output_rate="input"`` (default): the output has the input's sample rate and channels (see the module
    notes: one separation of the channels' mean, mapped back by resampling and, for several channels, a
    time-frequency mask; a mono input at the model's rate is written exactly as with ``"model"``).
    ``"model"``: the model's rate, mono. ``output_format``: one of :data:`OUTPUT_FORMATS` (None: ``flac`` for
    a ``.flac`` ``out_path``, else ``wav`` = float32); the paths' suffixes must fit it.

    Memory stays bounded by a block plus a batch of chunks whatever the input's length; outputs appear
    complete or not at all (temporary file + rename). Returns a summary dict (paths, rate, channels, format,
    seconds, real-time factor, query)."""
    t0 = time.perf_counter()
    check_settings(segment_seconds=segment_seconds, overlap=overlap, batch_size=batch_size, output_rate=output_rate,
                   output_format=output_format)
    out_path = Path(out_path)
    if output_format is None:
        output_format = "flac" if out_path.suffix.lower() == ".flac" else "wav"
    suffix = OUTPUT_FORMATS[output_format][2]
    for p in (out_path, residual_path):
        if p is not None and Path(p).suffix.lower() != suffix:
            raise ConfigError(f"{p}: --format {output_format} writes {suffix} files, not {Path(p).suffix or 'no suffix'}")
    q = resolve_query(query, bundle)
    in_path = Path(in_path)
    sr = bundle.sample_rate
    blocks = stream_audio_blocks(in_path, sr, block_seconds, resample=resample)
    total = model_total = stream_length(in_path, sr)
    segment, hop = segment_hop(sr, segment_seconds, overlap)
    rate, channels = sr, 1
    if output_rate == "input":
        in_rate, in_channels, in_frames = channel_layout(in_path)
        if in_rate != sr and not resample:  # the same refusal stream_audio_blocks would give
            raise AudioError(f"{in_path}: sample rate is {in_rate} Hz but the model works at {sr} Hz; pass "
                             "--resample (resample=True) to convert it")
        if in_channels > 1 or in_rate != sr:
            rate, channels, total = in_rate, in_channels, in_frames
    like_input = (rate, channels) != (sr, 1)
    writers = [_WavWriter(out_path, rate, total, channels=channels, output_format=output_format)]
    if residual_path is not None:
        writers.append(_WavWriter(Path(residual_path), rate, total, channels=channels, output_format=output_format))
    try:
        estimates = stream_overlap_add(blocks, _query_fn(bundle, q, residual_path is not None and not like_input),
                                       segment, hop, batch_size, n_outputs=1 if like_input else len(writers),
                                       progress=progress, total=model_total,
                                       desc=f"{in_path.name}: {q.label}")
        if like_input:
            for target, mixture in _like_input(estimates, in_path, sr, rate, channels, block_seconds):
                writers[0].write(target)
                if len(writers) > 1:
                    writers[1].write(mixture - target)
        else:
            for block in estimates:
                rows = [block] if len(writers) == 1 else list(block)
                for w, row in zip(writers, rows):
                    w.write(row)
        if writers[0].frames == 0:
            raise AudioError(f"{in_path}: zero-length audio (no samples)")
        paths = [w.commit() for w in writers]
    except BaseException:
        for w in writers:
            w.abort()
        raise
    seconds = writers[0].frames / rate
    wall = time.perf_counter() - t0
    info = {"input": str(in_path), "output": str(paths[0]), "residual": str(paths[1]) if len(paths) > 1 else None,
            "query": q.label, "query_source": q.source, "sample_rate": rate, "channels": channels,
            "format": output_format, "output_rate": output_rate, "seconds": round(seconds, 3),
            "wall_seconds": round(wall, 3), "real_time_factor": round(wall / max(seconds, 1e-9), 4)}
    clipped = sum(w.clipped for w in writers)
    if clipped:
        info["clipped_samples"] = clipped
    return info


def _like_input(estimates: Iterable[np.ndarray], path: Path, model_rate: int, rate: int, channels: int,
                block_seconds: float) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """The model-rate mono estimate (a stream of blocks) mapped onto the input: resampled to the input's
    ``rate`` and, for several ``channels``, applied to each by :class:`~ussnb.audio.StreamingChannelMask`.
    Yields ``(target, mixture)`` pairs of aligned ``(samples, channels)`` blocks at ``rate`` that together
    cover the input exactly (the estimate is zero-padded or trimmed by the resampler's rounding)."""
    up = None
    if rate != model_rate:
        import soxr

        up = soxr.ResampleStream(model_rate, rate, 1, dtype="float32", quality="HQ")
    reader = iter(stream_channel_blocks(path, block_seconds))
    masker = StreamingChannelMask(rate, channels) if channels > 1 else None
    state = {"x": np.zeros((0, channels), np.float32), "e": np.zeros(0, np.float32), "ended": False}
    pending: list[np.ndarray] = []  # mixture rows given to the masker, not yet matched by its output

    def read(need: int | None) -> None:
        while not state["ended"] and (need is None or state["x"].shape[0] < need):
            block = next(reader, None)
            if block is None:
                state["ended"] = True
            else:
                state["x"] = np.concatenate([state["x"], block])

    def take(n: int):
        x, e = state["x"][:n], state["e"][:n]
        state["x"], state["e"] = state["x"][n:], state["e"][n:]
        if masker is None:
            return e[:, None], x
        pending.append(x)
        y = masker.push(x, e)
        return y, _pop(y.shape[0])

    def _pop(m: int) -> np.ndarray:
        mix = np.concatenate(pending) if pending else np.zeros((0, channels), np.float32)
        pending.clear()
        if m < mix.shape[0]:
            pending.append(mix[m:])
        return mix[:m]

    for block in estimates:
        e = up.resample_chunk(np.ascontiguousarray(block, np.float32)) if up is not None else block
        state["e"] = np.concatenate([state["e"], np.asarray(e, np.float32)])
        read(state["e"].shape[0])
        n = min(state["e"].shape[0], state["x"].shape[0])
        if n:
            y, x = take(n)
            if y.shape[0]:
                yield y, x
    if up is not None:
        state["e"] = np.concatenate([state["e"], up.resample_chunk(np.zeros(0, np.float32), last=True)])
    read(None)
    n = state["x"].shape[0]
    e = state["e"][:n]
    state["e"] = np.pad(e, (0, n - e.shape[0]))
    if n:
        y, x = take(n)
        if y.shape[0]:
            yield y, x
    if masker is not None:
        y = masker.finish()
        if y.shape[0]:
            yield y, _pop(y.shape[0])


# ============================================================================================== hierarchy
def segment_tags(bundle: SeparationBundle, x: np.ndarray, *, with_conditions: bool = True):
    """``(segments, samples)`` at the tagger's rate → the tagger's clip probabilities ``(segments, classes)`` and,
    with ``with_conditions``, each segment's own condition of the model's kind ``(segments, C)`` (the tagger's
    embedding for ``embedding``; the query net's output for the other tagger-based kinds; the probabilities
    themselves for a class-probability model whose kind has no query net, ``onehot``), else None."""
    out = bundle.tagger.tag(np.ascontiguousarray(x, np.float32), frames=False)
    probs = out.clip.detach().cpu().float().numpy()
    if not with_conditions:
        return probs, None
    if bundle.kind == "embedding":
        return probs, out.embedding.detach().cpu().float().numpy()
    if bundle.kind == "onehot":
        return probs, probs
    with torch.inference_mode():
        return probs, bundle.query_net()(torch.from_numpy(np.ascontiguousarray(x, np.float32))).float().cpu().numpy()


def tag_segments(
    path: str | os.PathLike,
    bundle: SeparationBundle,
    *,
    tag_seconds: float = TAG_SECONDS,
    batch_size: int = 8,
    progress: bool = True,
    block_seconds: float = 30.0,
    with_conditions: bool = False,
):
    """Pass 1 of Algorithm 3: the tagger's clip probabilities of consecutive non-overlapping ``tag_seconds``
    segments (the last zero-padded), streamed at the tagger's own rate. Returns ``(segments, classes)``; with
    ``with_conditions`` also ``(segments, C)``, each segment's own condition of the model's kind (the
    tagger's embedding for ``embedding``; the query net's output for the learnable kinds)."""
    from tqdm.auto import tqdm

    tagger = bundle.tagger
    tsr = int(tagger.sample_rate)
    seg = int(round(tag_seconds * tsr))
    total = stream_length(path, tsr)
    bar = tqdm(total=int(np.ceil(total / seg)) if total else None, desc=f"tagging {Path(path).name}",
               unit="segment", disable=not progress)
    probs: list[np.ndarray] = []
    conds: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    buf = np.zeros(0, np.float32)

    def flush():
        if pending:
            p, c = segment_tags(bundle, np.stack(pending), with_conditions=with_conditions)
            probs.append(p)
            if with_conditions:
                conds.append(c)
            bar.update(len(pending))
            pending.clear()

    try:
        for block in stream_audio_blocks(path, tsr, block_seconds, resample=True):
            buf = np.concatenate([buf, block]) if buf.size else block
            while buf.shape[0] >= seg:
                pending.append(buf[:seg].copy())
                buf = buf[seg:]
                if len(pending) >= batch_size:
                    flush()
        if buf.shape[0] or not (probs or pending):
            pending.append(np.pad(buf, (0, seg - buf.shape[0])))
        flush()
    finally:
        bar.close()
    probs_a = np.concatenate(probs).astype(np.float32)
    if with_conditions:
        return probs_a, np.concatenate(conds).astype(np.float32)
    return probs_a


def node_condition(bundle: SeparationBundle, probs: np.ndarray, label_indices: Sequence[int],
                   segment_condition: np.ndarray | None = None) -> np.ndarray:
    """The condition that asks the separator for an ontology node's sound in one segment.

    * K-dim class conditions (``soft`` / ``onehot``): the segment's tagging vector with the classes outside the
      node's group zeroed (the paper's Algorithm 3).
    * Other conditions (``embedding``, learnable kinds): an embedding cannot be "restricted" to classes, so the
      node is asked for by the class-average conditions (eq. 9, stage 03) of its classes, weighted by the
      segment's probability of each: ``c = Σ_k p_k c̄_k / Σ_k p_k`` over the group's classes that have an average.
      When none has one (e.g. classes held out of training), the segment's own condition is used."""
    if bundle.kind in HIERARCHY_KINDS and bundle.condition_size == bundle.classes:
        mask = np.zeros(bundle.classes, np.float32)
        mask[list(label_indices)] = 1.0
        return (probs * mask).astype(np.float32)
    idx = np.asarray(list(label_indices), dtype=int)
    if bundle.class_conditions is not None and idx.size:
        counts = bundle.class_counts if bundle.class_counts is not None else np.ones(bundle.classes)
        w = probs[idx].astype(np.float64) * (np.asarray(counts)[idx] > 0)
        if w.sum() > 1e-6:
            return (w @ bundle.class_conditions[idx].astype(np.float64) / w.sum()).astype(np.float32)
    if segment_condition is None:
        raise CheckpointError(f"{bundle.source}: no class-average condition for any class of this node and no "
                              "segment condition to fall back on")
    return np.asarray(segment_condition, np.float32)


@dataclass
class Track:
    """One output of hierarchical separation: an ontology node at a level."""

    level: int
    node: str
    label: str
    label_indices: list[int]
    active: np.ndarray  # (segments,) bool
    probability: np.ndarray  # (segments,) grouped max probability
    file: str = ""


def hierarchy_plan(probs: np.ndarray, ontology, levels: Iterable[int],
                   threshold: float | Mapping[int, float] = 0.2) -> dict[int, list[Track]]:
    """Algorithm 4 per level: group segment probabilities by the level's nodes (max over descendants);
    the nodes active (≥ ``threshold``, one value or one per level) in at least one segment, most probable
    first. Levels deeper than the ontology give no tracks."""
    out: dict[int, list[Track]] = {}
    for level in levels:
        level = int(level)
        if level < 1:
            raise OntologyError(f"ontology levels start at 1, got {level}")
        if level > ontology.max_level:
            out[level] = []
            continue
        grouped, nodes = ontology.group(probs, level)
        _, groups = ontology.group_indices(level)
        tracks = []
        for j, (node, idx) in enumerate(zip(nodes, groups)):
            active = grouped[:, j] >= (threshold[level] if isinstance(threshold, Mapping) else threshold)
            if active.any():
                tracks.append(Track(level, node, ontology.nodes[node]["name"], list(idx), active, grouped[:, j]))
        tracks.sort(key=lambda t: -float(t.probability.max()))
        out[level] = tracks
    return out


def level_thresholds(threshold, levels: Sequence[int], bundle: "SeparationBundle | None" = None) -> dict[int, float]:
    """θ per level: a number for every level; a mapping per level (levels it lacks: :data:`DEFAULT_THRESHOLD`);
    ``None``: the run's calibrated thresholds (stage 05 ``thresholds.json``, see
    :func:`ussnb.eval.detection.calibrate_thresholds`) when the bundle has them, else the paper's 0.2."""
    if threshold is None:
        threshold = bundle.calibrated_thresholds() if bundle is not None else None
        if threshold is None:
            threshold = DEFAULT_THRESHOLD
    if isinstance(threshold, Mapping):
        given = {int(k): float(v) for k, v in threshold.items()}
        return {int(lv): given.get(int(lv), DEFAULT_THRESHOLD) for lv in levels}
    return {int(lv): float(threshold) for lv in levels}


def threshold_record(thresholds: Mapping[int, float]):
    """The summary's ``threshold``: one number when every level has the same, else ``{"level": θ}``."""
    values = set(thresholds.values())
    return float(next(iter(values))) if len(values) == 1 else {str(k): v for k, v in sorted(thresholds.items())}


def _intervals(active: np.ndarray, seconds: float, duration: float) -> list[list[float]]:
    """Merged runs of active segments as ``[start, end]`` seconds."""
    runs, start = [], None
    for i, a in enumerate(list(active) + [False]):
        if a and start is None:
            start = i
        elif not a and start is not None:
            runs.append([round(start * seconds, 3), round(min(i * seconds, duration), 3)])
            start = None
    return runs


def separate_hierarchy(
    path: str | os.PathLike,
    bundle: SeparationBundle,
    levels: Sequence[int] = (1, 2, 3),
    threshold: float | Mapping[int, float] | None = None,
    out_dir: str | os.PathLike = "separated",
    *,
    name: str | None = None,
    segment_seconds: float = 2.0,
    overlap: float = 0.25,
    batch_size: int = 8,
    resample: bool = False,
    progress: bool = True,
    tag_seconds: float = TAG_SECONDS,
    block_seconds: float = 30.0,
) -> dict:
    """Hierarchical separation (Algorithm 3 with Algorithm 4 grouping), streamed twice from disk.

    Writes ``out_dir/<name>/level=<l>/<node label>.wav`` (float32, the model's rate) for every node of each
    requested level active in ≥ 1 segment, ``tagging.npz`` (segment probabilities) and ``summary.json`` (per
    level: node, label, ontology path, file, active intervals, max probability). Returns the summary.

    Chunks follow the tagging grid: chunk i is tagging segment i (``tag_seconds``) extended on both sides by
    half a cross-fade (``overlap · segment_seconds / 2``, 0.25 s by default), separated with segment i's
    restricted tagging vector where the node is active there, silence elsewhere. Consecutive chunks are
    cross-faded over the margin, so a track fades in / out over 0.5 s centred on a segment border instead of
    clicking, and each segment costs one forward pass per active label group (tracks whose nodes group the
    same labels share it).

    Detection always uses the tagger's class probabilities; what the separator is given per node and segment is
    :func:`node_condition` — the restricted tagging vector for ``soft`` / ``onehot`` models, the
    probability-weighted class-average condition of the node's classes for ``embedding`` (and learnable)
    models. Settings out of range (:func:`check_settings`) and levels deeper than the ontology of the model's
    classes raise :class:`~ussnb.errors.ConfigError`.
    """
    t0 = time.perf_counter()
    path = Path(path)
    class_dim = bundle.kind in HIERARCHY_KINDS and bundle.condition_size == bundle.classes
    if bundle.kind == "onehot" and not class_dim:
        raise CheckpointError(f"{bundle.source}: a one-hot model whose condition size differs from its classes")
    levels = check_settings(segment_seconds=segment_seconds, overlap=overlap, batch_size=batch_size,
                            threshold=threshold, levels=levels)
    check_levels_exist(levels, bundle.ontology)
    thresholds = level_thresholds(threshold, levels, bundle)
    sr = bundle.sample_rate
    # rate check up front: the user's --resample decides about the separator's rate
    probe = stream_audio_blocks(path, sr, 0.01, resample=resample)
    try:
        if next(probe, None) is None:
            raise AudioError(f"{path}: zero-length audio (no samples)")
    finally:
        probe.close()
    name = name or path.stem
    folder = Path(out_dir) / name
    tagged = tag_segments(path, bundle, tag_seconds=tag_seconds, batch_size=batch_size, progress=progress,
                          block_seconds=block_seconds, with_conditions=not class_dim)
    probs, seg_conds = (tagged, None) if class_dim else tagged
    t_tag = time.perf_counter() - t0
    onto = bundle.ontology
    plan = hierarchy_plan(probs, onto, levels, thresholds)
    tracks = [t for lv in sorted(plan) for t in plan[lv]]
    used: set[str] = set()
    for t in tracks:
        base = f"level={t.level}/{safe_filename(t.label)}"
        fname, i = base, 1
        while fname.lower() in used:
            i += 1
            fname = f"{base} ({i})"
        used.add(fname.lower())
        t.file = fname + ".wav"
    tag_len = int(round(tag_seconds * sr))
    margin = int(round(overlap * segment_seconds * sr / 2))
    segment, hop = tag_len + 2 * margin, tag_len
    n_seg = probs.shape[0]
    keys = [tuple(t.label_indices) for t in tracks]
    total = stream_length(path, sr)

    def fn(chunks: np.ndarray, starts: list[int]) -> np.ndarray:
        """Algorithm 3 on a batch of chunks (chunk j = tagging segment ``starts[j] // hop``)."""
        out = np.zeros((len(tracks), len(chunks), segment), np.float32)
        requests: dict[tuple, list[int]] = {}  # (chunk, label group) → tracks
        for j, s in enumerate(starts):
            si = min(n_seg - 1, s // hop)
            for i, t in enumerate(tracks):
                if t.active[si]:
                    requests.setdefault((j, si, keys[i]), []).append(i)
        items = list(requests.items())
        for b in range(0, len(items), batch_size):
            part = items[b:b + batch_size]
            x = np.stack([chunks[j] for (j, _, _), _ in part])
            c = np.stack([node_condition(bundle, probs[si], tracks[ids[0]].label_indices,
                                         None if seg_conds is None else seg_conds[si]) for (_, si, _), ids in part])
            y = forward_chunks(bundle.model, x, c)
            for ((j, _, _), ids), est in zip(part, y):
                for i in ids:
                    out[i, j] = est
        return out

    def blocks():
        if margin:  # chunk i then starts half a cross-fade before segment i
            yield np.zeros(margin, np.float32)
        yield from stream_audio_blocks(path, sr, block_seconds, resample=resample)

    writers = [_WavWriter(folder / t.file, sr, total) for t in tracks]
    frames = 0
    try:
        if tracks:
            skip = margin
            # chunks per call: enough for about one forward batch of (chunk, label group) requests, so that the
            # dense (tracks, chunks, samples) buffers stay small with many tracks
            ola_batch = max(1, batch_size // max(1, len(set(keys))))
            for block in stream_overlap_add(blocks(), fn, segment, hop, ola_batch, n_outputs=len(tracks),
                                            progress=progress, total=(total + margin) if total else None,
                                            desc=f"separating {path.name}"):
                if skip:
                    cut = min(skip, block.shape[1])
                    block, skip = block[:, cut:], skip - cut
                for w, row in zip(writers, block):
                    w.write(row)
            frames = writers[0].frames
            for w in writers:
                w.commit()
        else:
            frames = sum(b.shape[0] for b in stream_audio_blocks(path, sr, block_seconds, resample=resample))
    except BaseException:
        for w in writers:
            w.abort()
        raise
    duration = frames / sr
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "tagging.npz", probabilities=probs, labels=np.array(bundle.labels),
             segment_seconds=np.float32(tag_seconds))
    wall = time.perf_counter() - t0
    summary = {
        "input": str(path), "name": name, "sample_rate": sr, "duration_seconds": round(duration, 3),
        "threshold": threshold_record(thresholds), "tag_segment_seconds": tag_seconds, "segments": int(n_seg),
        "separation": {"chunk_seconds": round(segment / sr, 4), "crossfade_seconds": round(2 * margin / sr, 4)},
        "checkpoint": bundle.source, "condition": bundle.kind, "ontology": onto.source,
        "node_condition": "restricted tagging vector" if class_dim else
                          "probability-weighted class-average conditions of the node's classes",
        "levels": {}, "wall_seconds": round(wall, 3), "tagging_seconds": round(t_tag, 3),
        "real_time_factor": round(wall / max(duration, 1e-9), 4),
    }
    for level in sorted(plan):
        summary["levels"][str(level)] = {
            "nodes": [{"node": t.node, "label": t.label, "path": onto.path(t.node), "file": t.file,
                       "active": _intervals(t.active, tag_seconds, duration), "n_active_segments": int(t.active.sum()),
                       "max_probability": round(float(t.probability.max()), 4)} for t in plan[level]],
        }
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=1))
    return summary


def hierarchy_done(folder: Path, levels: Sequence[int], threshold, bundle: SeparationBundle) -> bool:
    """Whether ``folder`` already holds a finished hierarchical separation with every level asked for, the same
    threshold and the same checkpoint (otherwise it is redone; its old tracks go only once the redo is done)."""
    try:
        done = json.loads((folder / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return ({str(int(lv)) for lv in levels} <= set(done.get("levels", {}))
            and done.get("threshold") == threshold_record(level_thresholds(threshold, levels, bundle))
            and done.get("checkpoint") == bundle.source)


def detection_report(summary: dict, ontology, events: Sequence[dict]) -> dict:
    """How hierarchical separation's detections relate to the true events of a clip (evaluation only).

    For each true class c (events ``{"mid", "onset", "offset", ...}`` whose MID the ontology knows), the
    requested level to check is the deepest one not below c's own level; c counts as *detected* when one of
    its ancestors-or-self at that level is among the detected nodes (``in_time``: and active in a tagging
    segment overlapping one of c's events; ``exact``: c itself is a detected node). ``precision`` is the
    fraction of detected nodes (all levels) that are an ancestor-or-self of some true class.
    """
    detected = {int(lv): {n["node"]: n for n in v["nodes"]} for lv, v in summary["levels"].items()}
    levels = sorted(lv for lv in detected if lv <= ontology.max_level)
    by_mid: dict[str, list[dict]] = {}
    for ev in events:
        if ev.get("mid") in ontology.nodes:
            by_mid.setdefault(ev["mid"], []).append(ev)
    classes = []
    for mid, evs in by_mid.items():
        own = ontology.level(mid)
        usable = [lv for lv in levels if lv <= own]
        entry = {"mid": mid, "label": ontology.nodes[mid]["name"], "class_level": own,
                 "events": [[round(float(e["onset"]), 3), round(float(e["offset"]), 3)] for e in evs],
                 "exact": mid in detected.get(own, {})}
        if not usable:
            entry.update(checked_level=None, detected=None, in_time=None)
            classes.append(entry)
            continue
        lv = max(usable)
        ancestors = [n for n in ontology.nodes_at_level(lv) if mid in ontology.descendants(n)]
        hits = [a for a in ancestors if a in detected[lv]]
        in_time = any(start < e["offset"] and e["onset"] < end for a in hits for start, end in detected[lv][a]["active"]
                      for e in evs)
        entry.update(checked_level=lv, nodes=[ontology.nodes[a]["name"] for a in ancestors],
                     detected=bool(hits), in_time=bool(in_time))
        classes.append(entry)
    checked = [c for c in classes if c["detected"] is not None]
    true_set = set(by_mid)
    all_nodes = [(lv, n) for lv, nodes in detected.items() for n in nodes]
    related = [1 for lv, n in all_nodes if ontology.descendants(n) & true_set] if all_nodes else []
    return {
        "true_classes": [c["label"] for c in classes],
        "true_classes_detected": round(float(np.mean([c["detected"] for c in checked])), 4) if checked else None,
        "true_classes_detected_in_time": round(float(np.mean([c["in_time"] for c in checked])), 4) if checked else None,
        "true_classes_detected_exact": round(float(np.mean([c["exact"] for c in classes])), 4) if classes else None,
        "detected_nodes_precision": round(len(related) / len(all_nodes), 4) if all_nodes else None,
        "classes": classes,
    }


__all__ = [
    "OUTPUT_FORMATS", "OUTPUT_RATES", "Query", "SeparationBundle", "Track", "check_levels_exist", "check_output_folder", "check_settings",
    "detection_report", "hierarchy_done", "hierarchy_plan", "ontology_for", "resolve_query",
    "safe_filename", "separate", "separate_file", "separate_hierarchy", "slugify", "tag_segments", "text_query",
    "threshold_record",
]
