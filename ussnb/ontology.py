"""The AudioSet ontology: labels ↔ indices ↔ MIDs, the class tree, and Algorithm 4's grouping.

Two sources, one loader:
- the full AudioSet metadata, ``ontology.json`` (632 nodes) + ``class_labels_indices.csv`` (527 labels), from
  an explicit folder, ``USSNB_AUDIOSET_META``, ``<data root>/audioset_meta``, or downloaded from the official
  URLs when allowed (atomic writes; 0-byte or malformed files are refused);
- the **mini-ontology** shipped in the package (``resources/mini_ontology.json``) for the starter classes,
  with their AudioSet MIDs, names, indices and parent chains — used when the full metadata is absent, so the
  offline default never needs anything outside the repository. Its class descriptions are the kit's own
  one-sentence descriptions (``STARTER_DESCRIPTIONS`` in ``ussnb/data/recipes/starter/catalogue.py``, written
  into the resource by ``tools/make_mini_ontology.py``), not AudioSet's.

Text queries. :meth:`Ontology.rank_text` ranks the *classes* (label rows, not abstract-only nodes) for a free
text such as "a dog barking in the distance" with Okapi BM25 (k1 = 1.2, b = 0.75) over two fields, the class
name and its ontology ``description``, combined as ``3 × BM25(name) + BM25(description)``: each field has its
own term-frequency saturation and length normalisation, so a word of the name counts three times a word of
the description; the idf is one per word, over the classes (Lucene's ``ln(1 + (N - n + 0.5) / (n + 0.5))``,
n = classes with the word in their name *or* description). A shared idf keeps a word that is rare among
names but common in descriptions ("play" in "Children playing" and in most instrument descriptions) from
outweighing a specific one ("violin"); on 36 hand-written queries over the 527 AudioSet classes it put an
expected class first for 34 (per-field idf: 32, BM25F with the same weights: 34) and in the top 3 for 35.
Words are lower-cased, punctuation is dropped, a small English stop-word list is removed, and a light
stemmer folds plurals, "-ing" and "-ed" forms and a final "e" (:func:`text_terms`: "barking dogs" →
``bark dog``, "whistling" and "whistle" → ``whistl``).

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
import math
import os
from collections import Counter, deque
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
            if n.get("description"):
                self.nodes[n["id"]]["description"] = str(n["description"])
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
            | ({"description": n["description"]} if "description" in n else {})
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

    def description(self, node: str | int) -> str:
        """A node's ontology description ("" when the metadata has none)."""
        return self.nodes[self._node_id(node)].get("description", "")

    @cached_property
    def _text_index(self) -> tuple["_BM25", "_BM25"]:
        names = [text_terms(lab.name) for lab in self.labels]
        descriptions = [text_terms(self.nodes.get(lab.mid, {}).get("description", "")) for lab in self.labels]
        idf = _idf([set(a) | set(b) for a, b in zip(names, descriptions)])  # one idf per word, over both fields
        return _BM25(names, idf), _BM25(descriptions, idf)

    def rank_text(self, text: str, top: int | None = 10) -> list[tuple[Label, float]]:
        """The classes that best match a free ``text``, best first: ``[(label, score), ...]`` with score > 0,
        at most ``top`` of them (None: every class that matches). Score = 3 × BM25 over the class names + BM25
        over their descriptions (see the module notes). Raises :class:`OntologyError` when the text has no
        words left after the stop words, or when no class matches (listing the closest names)."""
        if top is not None and (isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1):
            raise OntologyError(f"top must be a whole number ≥ 1, got {top!r}")
        terms = list(dict.fromkeys(text_terms(text)))
        if not terms:
            raise OntologyError(f"the text {text!r} has no words to match (only punctuation or stop words like "
                                "'a', 'the', 'of'): describe the sound, e.g. \"a dog barking\"")
        names, descriptions = self._text_index
        scores = NAME_WEIGHT * names.scores(terms) + descriptions.scores(terms)
        order = sorted((i for i in range(len(self.labels)) if scores[i] > 0), key=lambda i: (-scores[i], i))
        if not order:
            close = self.closest(text)
            hint = ("; closest names: " + ", ".join(repr(c) for c in close)) if close else \
                "; `ussnb labels` lists every class name"
            raise OntologyError(f"no class of {self.source} matches the text {text!r} (none of the words "
                                f"{', '.join(terms)} is in a class name or description){hint}")
        return [(self.labels[i], float(scores[i])) for i in order[:top]]

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


# ---------------------------------------------------------------------------------------------- text ranking
BM25_K1 = 1.2
BM25_B = 0.75
NAME_WEIGHT = 3.0  # a word of a class name counts this many times a word of its description
STOP_WORDS = frozenset("""
a an the of in on at to for from by with without within into onto over under about around near far away
and or nor but not no so if than then as is are was were be been being am it its this that these those there
here which who whom whose what when where while such other another also may might can could will would should
often usually typically generally sometimes very some any each every all both either neither
someone somebody something somewhere one ones i me my we us our you your he him his she her they them their
""".split())
_VOWELS = set("aeiouy")


def _stem(word: str) -> str:
    """A light English stemmer, the same on both sides of a match: plural -s / -es / -ies, -ing, -ed (only
    when a vowel stays, so "string", "thing", "red" are kept), a doubled final consonant after -ing/-ed
    ("running" → run, but "hissing" → hiss), then a final -e ("whistle" and "whistling" → whistl)."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif w.endswith("sses"):
        w = w[:-2]
    elif len(w) > 4 and w.endswith(("xes", "ches", "shes", "zzes")):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suffix in ("ing", "ed"):
        stem = w[:-len(suffix)]
        if w.endswith(suffix) and len(stem) >= 3 and _VOWELS & set(stem):
            if len(stem) > 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz" + "aeiou":
                stem = stem[:-1]
            w = stem
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w


def text_terms(text: str) -> list[str]:
    """Words of ``text`` as the ranking compares them: lower case, punctuation dropped, stop words and
    one-letter words removed, each word stemmed (:func:`_stem`)."""
    return [_stem(t) for t in _tokens(str(text).lower()) if t not in STOP_WORDS and len(t) > 1]


def _idf(docs: Sequence[set[str]]) -> dict[str, float]:
    """Lucene's BM25 idf ``ln(1 + (N - n + 0.5) / (n + 0.5))`` of every word (n = documents holding it)."""
    df = Counter(t for d in docs for t in d)
    return {t: math.log(1.0 + (len(docs) - k + 0.5) / (k + 0.5)) for t, k in df.items()}


class _BM25:
    """Okapi BM25 over one field of a fixed set of documents (lists of terms), with a given idf per word."""

    def __init__(self, docs: Sequence[Sequence[str]], idf: dict[str, float], k1: float = BM25_K1,
                 b: float = BM25_B):
        self.k1, self.b, self.idf = k1, b, idf
        self.tf = [dict(Counter(d)) for d in docs]
        self.length = np.array([len(d) for d in docs], dtype=np.float64)
        self.avg = float(self.length.mean()) if len(docs) and self.length.mean() > 0 else 1.0

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        out = np.zeros(len(self.tf), dtype=np.float64)
        norm = self.k1 * (1.0 - self.b + self.b * self.length / self.avg)
        for t in terms:
            idf = self.idf.get(t)
            if idf is None:
                continue
            tf = np.array([d.get(t, 0) for d in self.tf], dtype=np.float64)
            out += idf * tf * (self.k1 + 1.0) / (tf + norm)
        return out


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
