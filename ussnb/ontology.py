"""The AudioSet ontology: labels ↔ indices ↔ MIDs, the class tree, and Algorithm 4's grouping.

Two sources, one loader:
- the full AudioSet metadata, ``ontology.json`` (632 nodes) + ``class_labels_indices.csv`` (527 labels), from
  an explicit folder, ``USSNB_AUDIOSET_META``, ``<data root>/audioset_meta``, or downloaded from the official
  URLs when allowed (atomic writes; 0-byte or malformed files are refused);
- the **mini-ontology** shipped in the package (``resources/mini_ontology.json``) for the starter classes,
  with their AudioSet MIDs, names, indices and parent chains — used when the full metadata is absent, so the
  offline default never needs anything outside the repository.

Several parents. 38 AudioSet nodes have more than one parent (e.g. a sound under both an animal and a
"sounds of things" branch). We keep *every* parent link: a node's descendants are everything reachable through
``child_ids``, so a label counts under each of its ancestors and may contribute to two nodes of the same
level when grouping. A node's **level** is its shortest distance to a top node (level 1 = the 7 top
categories). The USS reference instead attaches each node to the first parent it finds; we prefer not to drop
the other memberships silently, since grouping by max is unaffected by a label being counted twice.
"""
from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import os
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import OntologyError
from .paths import audioset_meta_dir, data_root

log = logging.getLogger(__name__)

ONTOLOGY_URL = "https://raw.githubusercontent.com/audioset/ontology/master/ontology.json"
LABELS_URL = "http://storage.googleapis.com/us_audioset/youtube_corpus/v1/csv/class_labels_indices.csv"
ONTOLOGY_FILE = "ontology.json"
LABELS_FILE = "class_labels_indices.csv"
MINI_RESOURCE = "mini_ontology.json"


@dataclass(frozen=True)
class Label:
    """A class the models predict: position in the label list, AudioSet MID, display name, AudioSet index."""

    index: int
    mid: str
    name: str
    audioset_index: int


class Ontology:
    """Labels plus the ontology tree (a DAG) over them.

    Args:
        nodes: dicts with ``id``, ``name``, ``child_ids`` (AudioSet ``ontology.json`` entries).
        labels: dicts with ``mid``, ``name`` (or ``display_name``) and optionally ``index`` (the AudioSet
            index); their order defines the columns of probability matrices.
    """

    def __init__(self, nodes: Sequence[dict], labels: Sequence[dict], *, source: str = "memory"):
        self.source = source
        self.nodes: dict[str, dict] = {}
        for n in nodes:
            if not isinstance(n, dict) or "id" not in n or "name" not in n:
                raise OntologyError(f"{source}: malformed ontology node {str(n)[:80]!r}")
            self.nodes[n["id"]] = {"id": n["id"], "name": n["name"], "child_ids": list(n.get("child_ids", []))}
        self.labels: list[Label] = []
        for i, row in enumerate(labels):
            name = row.get("name", row.get("display_name"))
            if not row.get("mid") or name is None:
                raise OntologyError(f"{source}: malformed label row {row!r}")
            self.labels.append(Label(i, row["mid"], name, int(row.get("index", i))))
        for lab in self.labels:  # labels missing from the tree become top-level leaves
            self.nodes.setdefault(lab.mid, {"id": lab.mid, "name": lab.name, "child_ids": []})
        self._by_mid = {lab.mid: lab for lab in self.labels}
        self._by_name = {lab.name.lower(): lab for lab in self.labels}
        self.parents: dict[str, list[str]] = {nid: [] for nid in self.nodes}
        for nid, node in self.nodes.items():
            for child in node["child_ids"]:
                if child in self.parents and nid not in self.parents[child]:
                    self.parents[child].append(nid)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_files(cls, ontology_json: str | os.PathLike, labels_csv: str | os.PathLike) -> "Ontology":
        nodes = _read_ontology_json(Path(ontology_json))
        labels = _read_labels_csv(Path(labels_csv))
        return cls(nodes, labels, source=str(Path(ontology_json).parent))

    @classmethod
    def from_dir(cls, folder: str | os.PathLike) -> "Ontology":
        folder = Path(folder)
        return cls.from_files(folder / ONTOLOGY_FILE, folder / LABELS_FILE)

    @classmethod
    def mini(cls) -> "Ontology":
        """The starter classes' mini-ontology shipped inside the package."""
        try:
            text = resources.files("ussnb.resources").joinpath(MINI_RESOURCE).read_text()
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            raise OntologyError("the packaged mini-ontology (ussnb/resources/mini_ontology.json) is missing") from exc
        data = json.loads(text)
        return cls(data["nodes"], data["labels"], source="mini-ontology")

    def subset(self, mids: Sequence[str]) -> "Ontology":
        """The same tree with only ``mids`` as labels, in that order (e.g. a dataset's classes)."""
        missing = [m for m in mids if m not in self._by_mid]
        if missing:
            raise OntologyError(f"{len(missing)} MID(s) not among the labels of {self.source}: {missing[:5]}")
        keep = self._ancestors_closure(mids)
        nodes = [
            {"id": n["id"], "name": n["name"], "child_ids": [c for c in n["child_ids"] if c in keep]}
            for nid, n in self.nodes.items() if nid in keep
        ]
        labels = [{"mid": m, "name": self._by_mid[m].name, "index": self._by_mid[m].audioset_index} for m in mids]
        return Ontology(nodes, labels, source=f"{self.source} (subset of {len(mids)})")

    def _ancestors_closure(self, mids: Iterable[str]) -> set[str]:
        keep: set[str] = set()
        stack = list(mids)
        while stack:
            nid = stack.pop()
            if nid not in keep:
                keep.add(nid)
                stack.extend(self.parents.get(nid, []))
        return keep

    def to_json(self) -> dict:
        return {"nodes": list(self.nodes.values()),
                "labels": [{"index": lab.audioset_index, "mid": lab.mid, "name": lab.name} for lab in self.labels]}

    # ------------------------------------------------------------------ lookup
    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"Ontology({len(self.labels)} labels, {len(self.nodes)} nodes, from {self.source})"

    def label(self, query: str | int) -> Label:
        """A label by display name (case-insensitive), MID, or position. Unknown → error with closest names."""
        if isinstance(query, (int, np.integer)):
            if not 0 <= int(query) < len(self.labels):
                raise OntologyError(f"label index {query} out of range 0..{len(self.labels) - 1}")
            return self.labels[int(query)]
        text = str(query).strip()
        if text in self._by_mid:
            return self._by_mid[text]
        if text.lower() in self._by_name:
            return self._by_name[text.lower()]
        if text.isdigit():
            return self.label(int(text))
        close = self.closest(text)
        hint = "; closest: " + ", ".join(repr(c) for c in close) if close else ""
        raise OntologyError(f"unknown label {text!r} in {self.source}{hint}")

    def index(self, query: str | int) -> int:
        return self.label(query).index

    def mid(self, query: str | int) -> str:
        return self.label(query).mid

    def name(self, query: str | int) -> str:
        q = str(query)
        if q in self.nodes and q not in self._by_mid:
            return self.nodes[q]["name"]
        return self.label(query).name

    def closest(self, text: str, n: int = 5) -> list[str]:
        """Display names nearest to ``text``: substring matches first, then by a fuzzy score that compares
        the query word by word with each name's words (so typos and word order matter little)."""
        low = text.lower().strip()
        names = [lab.name for lab in self.labels]
        subs = [nm for nm in names if low and low in nm.lower()]
        q_tokens = _tokens(low)

        def score(name: str) -> float:
            n_tokens = _tokens(name.lower())
            whole = difflib.SequenceMatcher(None, low, name.lower()).ratio()
            if not q_tokens or not n_tokens:
                return whole
            words = sum(max(difflib.SequenceMatcher(None, q, t).ratio() for t in n_tokens) for q in q_tokens)
            return max(whole, words / len(q_tokens))

        ranked = sorted((nm for nm in names if nm not in subs), key=score, reverse=True)
        return (subs + [nm for nm in ranked if score(nm) >= 0.5])[:n]

    def search(self, text: str = "") -> list[Label]:
        """Labels whose name contains ``text`` (case-insensitive); all labels for an empty text."""
        low = text.lower().strip()
        return [lab for lab in self.labels if low in lab.name.lower() or low == lab.mid.lower()]

    # ------------------------------------------------------------------ tree
    @cached_property
    def top_nodes(self) -> list[str]:
        """Nodes without a parent (level 1), in file order."""
        return [nid for nid in self.nodes if not self.parents[nid]]

    @cached_property
    def levels(self) -> dict[str, int]:
        """Level of every node: shortest distance to a top node, top nodes = 1."""
        level = {nid: 1 for nid in self.top_nodes}
        queue = deque(self.top_nodes)
        while queue:
            nid = queue.popleft()
            for child in self.nodes[nid]["child_ids"]:
                if child in self.nodes and child not in level:
                    level[child] = level[nid] + 1
                    queue.append(child)
        return level

    def level(self, node: str) -> int:
        return self.levels[self._node_id(node)]

    @property
    def max_level(self) -> int:
        return max(self.levels.values())

    def _node_id(self, node: str | int) -> str:
        if isinstance(node, str) and node in self.nodes:
            return node
        return self.label(node).mid

    def children(self, node: str | int) -> list[str]:
        return [c for c in self.nodes[self._node_id(node)]["child_ids"] if c in self.nodes]

    def descendants(self, node: str | int, include_self: bool = True) -> set[str]:
        """All node ids reachable from ``node`` through child links (every parent link is kept)."""
        root = self._node_id(node)
        seen = {root}
        stack = [root]
        while stack:
            for child in self.children(stack.pop()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        if not include_self:
            seen.discard(root)
        return seen

    def label_descendants(self, node: str | int, include_self: bool = True) -> list[int]:
        """Label positions of ``node``'s descendants (and itself), restricted to the label list."""
        return sorted(self._by_mid[m].index for m in self.descendants(node, include_self) if m in self._by_mid)

    def path(self, node: str | int) -> list[str]:
        """Names from a top node down to ``node`` along a shortest path."""
        nid = self._node_id(node)
        chain = [nid]
        while self.parents[chain[-1]]:
            parent = min(self.parents[chain[-1]], key=lambda p: self.levels.get(p, 99))
            if parent in chain:
                break
            chain.append(parent)
        return [self.nodes[n]["name"] for n in reversed(chain)]

    def nodes_at_level(self, level: int) -> list[str]:
        """Nodes of ``level`` with at least one label beneath them (or being one), in file order."""
        return [nid for nid, lv in self.levels.items() if lv == level and self.label_descendants(nid)]

    @cached_property
    def _group_cache(self) -> dict[int, tuple[list[str], list[list[int]]]]:
        return {}

    def group_indices(self, level: int) -> tuple[list[str], list[list[int]]]:
        """Node ids of ``level`` and, for each, the label positions grouped under it."""
        if level not in self._group_cache:
            if level < 1 or level > self.max_level:
                raise OntologyError(f"level must be in 1..{self.max_level}, got {level}")
            nodes = self.nodes_at_level(level)
            self._group_cache[level] = (nodes, [self.label_descendants(n) for n in nodes])
        return self._group_cache[level]

    def group(self, probs: np.ndarray, level: int) -> tuple[np.ndarray, list[str]]:
        """Algorithm 4: ``(segments, labels)`` probabilities → ``(segments, nodes of level)`` by the max over
        each node's descendants including itself. Returns the grouped matrix and the node ids."""
        probs = np.asarray(probs)
        if probs.shape[-1] != len(self.labels):
            raise OntologyError(f"probabilities have {probs.shape[-1]} classes, the ontology {len(self.labels)}")
        nodes, groups = self.group_indices(level)
        out = np.stack([probs[..., g].max(axis=-1) for g in groups], axis=-1) if groups else \
            np.zeros(probs.shape[:-1] + (0,), dtype=probs.dtype)
        return out, nodes


def _tokens(text: str) -> list[str]:
    return [t for t in "".join(c if c.isalnum() else " " for c in text).split() if t]


# ---------------------------------------------------------------------------------------------- files
def _read_ontology_json(path: Path) -> list[dict]:
    if not path.is_file():
        raise OntologyError(f"{path}: AudioSet ontology file not found")
    if path.stat().st_size == 0:
        raise OntologyError(f"{path}: ontology file is empty (0 bytes) — a failed download? delete it and retry")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OntologyError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, list) or not data or not all(isinstance(n, dict) and "id" in n for n in data):
        raise OntologyError(f"{path}: expected a JSON list of nodes with 'id', 'name', 'child_ids'")
    return data


def _read_labels_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise OntologyError(f"{path}: AudioSet label file not found")
    text = path.read_text(encoding="utf-8") if path.stat().st_size else ""
    if not text.strip():
        raise OntologyError(f"{path}: label file is empty (0 bytes)")
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"index", "mid", "display_name"} <= set(rows[0]):
        raise OntologyError(f"{path}: expected columns index, mid, display_name")
    return [{"index": int(r["index"]), "mid": r["mid"], "name": r["display_name"]} for r in rows]


def _validate_download(kind: str):
    def check(tmp: Path) -> None:
        (_read_ontology_json if kind == "ontology" else _read_labels_csv)(tmp)
    return check


def download_audioset_meta(folder: str | os.PathLike) -> Path:
    """Download ``ontology.json`` and ``class_labels_indices.csv`` from their official locations."""
    from .download import download_file

    folder = Path(folder)
    download_file(ONTOLOGY_URL, folder / ONTOLOGY_FILE, validate=_validate_download("ontology"))
    download_file(LABELS_URL, folder / LABELS_FILE, validate=_validate_download("labels"))
    return folder


def find_audioset_meta(meta_dir: str | os.PathLike | None = None) -> Path | None:
    """The first folder holding both metadata files: argument, ``USSNB_AUDIOSET_META``,
    ``<data root>/audioset_meta``; None if there is none."""
    explicit = audioset_meta_dir(meta_dir)
    candidates = [explicit] if explicit is not None else []
    candidates.append(data_root() / "audioset_meta")
    for folder in candidates:
        if folder is not None and (folder / ONTOLOGY_FILE).exists() and (folder / LABELS_FILE).exists():
            return folder
    if meta_dir is not None:
        raise OntologyError(f"{meta_dir}: needs both {ONTOLOGY_FILE} and {LABELS_FILE}")
    return None


def load_ontology(
    meta_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    fallback_mini: bool = True,
) -> Ontology:
    """The full AudioSet ontology if its files can be found (or downloaded), else the mini-ontology."""
    folder = find_audioset_meta(meta_dir)
    if folder is None and download:
        folder = download_audioset_meta(data_root() / "audioset_meta")
    if folder is not None:
        return Ontology.from_dir(folder)
    if fallback_mini:
        log.info("AudioSet metadata not found (set USSNB_AUDIOSET_META); using the starter mini-ontology")
        return Ontology.mini()
    raise OntologyError(
        "AudioSet metadata not found: set USSNB_AUDIOSET_META to a folder with ontology.json and "
        "class_labels_indices.csv, or allow downloading them"
    )
