#!/usr/bin/env python3
"""Write ``ussnb/resources/mini_ontology.json``: the AudioSet ontology restricted to the starter classes.

For every class of ``STARTER_CLASSES`` (``ussnb/data/recipes/starter/catalogue.py``) the file holds its AudioSet
label (index 0..526, MID, display name) and every ancestor node up to the top level (all parent paths, e.g.
Choir lies under both Singing and Musical instrument). Nodes keep AudioSet's ids and names; ``child_ids``
are restricted to nodes in the mini set. The class nodes get a ``description``: the kit's own sentence from
``STARTER_DESCRIPTIONS`` (AudioSet's descriptions are not copied). Same field names as ``ontology.json`` /
``class_labels_indices.csv`` so one loader reads both:

    {"source": ..., "nodes": [{"id", "name", "child_ids"[, "description"]}, ...],
     "labels": [{"index", "mid", "name"}, ...]}

Usage::

    python tools/make_mini_ontology.py --ontology PATH/ontology.json --labels PATH/class_labels_indices.csv
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_starter_classes() -> list[tuple[str, str]]:
    sys.path.insert(0, str(REPO))
    from ussnb.data.recipes.starter import STARTER_CLASSES

    return list(STARTER_CLASSES)


def load_starter_descriptions() -> dict[str, str]:
    sys.path.insert(0, str(REPO))
    from ussnb.data.recipes.starter.catalogue import STARTER_DESCRIPTIONS

    return dict(STARTER_DESCRIPTIONS)


def build(ontology: list[dict], labels: list[dict], classes: list[tuple[str, str]],
          descriptions: dict[str, str] | None = None) -> dict:
    by_id = {node["id"]: node for node in ontology}
    parents: dict[str, list[str]] = {}
    for node in ontology:
        for child in node.get("child_ids", []):
            parents.setdefault(child, []).append(node["id"])
    label_by_mid = {row["mid"]: row for row in labels}

    keep: set[str] = set()
    out_labels = []
    for mid, name in classes:
        if mid not in label_by_mid:
            raise SystemExit(f"{mid} ({name}) is not one of the {len(labels)} AudioSet labels")
        if label_by_mid[mid]["display_name"] != name:
            raise SystemExit(f"{mid}: starter name {name!r} differs from AudioSet's "
                             f"{label_by_mid[mid]['display_name']!r}")
        if mid not in by_id:
            raise SystemExit(f"{mid} ({name}) is not in the ontology")
        out_labels.append({"index": int(label_by_mid[mid]["index"]), "mid": mid, "name": name})
        stack = [mid]
        while stack:
            node = stack.pop()
            if node not in keep:
                keep.add(node)
                stack.extend(parents.get(node, []))
    descriptions = descriptions or {}
    missing = [name for mid, name in classes if not descriptions.get(mid)]
    if descriptions and missing:
        raise SystemExit(f"no description for {len(missing)} starter class(es): {missing[:5]}")
    nodes = [
        {"id": node["id"], "name": node["name"],
         "child_ids": [c for c in node.get("child_ids", []) if c in keep]}
        | ({"description": descriptions[node["id"]]} if node["id"] in descriptions else {})
        for node in ontology if node["id"] in keep  # AudioSet's own order
    ]
    out_labels.sort(key=lambda row: row["index"])
    return {
        "source": "AudioSet ontology (github.com/audioset/ontology, CC BY-SA 4.0) and class_labels_indices.csv "
                  "(CC BY 4.0), restricted to the ussnb starter classes by tools/make_mini_ontology.py; the class "
                  "descriptions are ussnb's own (STARTER_DESCRIPTIONS), not AudioSet's",
        "nodes": nodes,
        "labels": out_labels,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ontology", required=True, type=Path, help="AudioSet ontology.json")
    parser.add_argument("--labels", required=True, type=Path, help="AudioSet class_labels_indices.csv")
    parser.add_argument("--out", type=Path, default=REPO / "ussnb" / "resources" / "mini_ontology.json")
    args = parser.parse_args(argv)
    ontology = json.loads(args.ontology.read_text())
    with open(args.labels, newline="") as f:
        labels = list(csv.DictReader(f))
    mini = build(ontology, labels, load_starter_classes(), load_starter_descriptions())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(mini, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}: {len(mini['labels'])} labels, {len(mini['nodes'])} nodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
