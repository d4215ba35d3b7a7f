"""How well hierarchical separation *finds* sounds: detection per ontology level against true event times.

Hierarchical separation (Algorithm 3) separates an ontology node in a 2 s segment when the node's grouped
probability (the max over its classes) reaches a threshold θ. Whether the right nodes are found does not depend
on the separator at all — only on the tagger, the grouping and θ — so it is measured here from the tagger's
segment probabilities on clips whose true events are known (the composed test clips):

* **found-rate** at level L: of the (clip, true class) pairs whose class lies at level ≥ L, the fraction whose
  ancestor-or-self node at level L is active in a segment overlapping one of the class's events (found *in
  time*);
* **false nodes per clip** at level L: detected nodes of the level under which no sound of the clip lies.

:func:`calibrate_thresholds` picks θ per level on another split (validation) to maximise the F1 of
(clip, node) detections, which trades the two off; the stage-05 notebook reports both figures before (θ = 0.2,
the paper's) and after calibration.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

DEFAULT_GRID = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def segment_probabilities(tagger, waves: Sequence[np.ndarray], seconds: float = 2.0, batch_size: int = 32) -> list[np.ndarray]:
    """Per clip ``(segments, classes)``: the tagger's clip probabilities of consecutive ``seconds`` segments
    (the last zero-padded), as :func:`ussnb.separation.tag_segments` computes them for a file."""
    seg = int(round(seconds * tagger.sample_rate))
    pieces, owner = [], []
    for i, w in enumerate(waves):
        n = max(1, int(np.ceil(len(w) / seg)))
        x = np.pad(np.asarray(w, np.float32), (0, n * seg - len(w))).reshape(n, seg)
        pieces.extend(x)
        owner.extend([i] * n)
    out = []
    for b in range(0, len(pieces), batch_size):
        out.append(tagger.tag(np.stack(pieces[b:b + batch_size]), frames=False).clip.float().cpu().numpy())
    probs = np.concatenate(out) if out else np.zeros((0, tagger.classes), np.float32)
    owner_a = np.asarray(owner)
    return [probs[owner_a == i] for i in range(len(waves))]


def _level_truth(ontology, level: int, events: Sequence[Mapping], seconds: float, n_seg: int):
    """``{node: (segments,) bool}`` where a true sound under ``node`` (a level-``level`` node) sounds."""
    nodes = ontology.nodes_at_level(level)
    out: dict[str, np.ndarray] = {}
    for ev in events:
        mid = ev.get("mid")
        if mid not in ontology.nodes or ontology.level(mid) < level:
            continue
        for node in nodes:
            if mid in ontology.descendants(node):
                mask = out.setdefault(node, np.zeros(n_seg, bool))
                lo = int(np.floor(float(ev["onset"]) / seconds))
                hi = int(np.ceil(float(ev["offset"]) / seconds))
                mask[max(0, lo):max(lo + 1, hi)] = True
    return out


def detection_scores(probs: Sequence[np.ndarray], events: Sequence[Sequence[Mapping]], ontology,
                     levels: Sequence[int], thresholds: float | Mapping[int, float] = 0.2,
                     seconds: float = 2.0) -> dict[int, dict]:
    """Per level: ``found_rate`` (in time), ``found_rate_any_time``, ``false_nodes_per_clip``, ``precision``,
    ``f1`` (of (clip, node) detections), the threshold used and the counts behind them."""
    out = {}
    for level in levels:
        level = int(level)
        theta = thresholds[level] if isinstance(thresholds, Mapping) else float(thresholds)
        if level > ontology.max_level:
            continue
        nodes = ontology.nodes_at_level(level)
        found = found_any = total = false = tp_nodes = det_nodes = true_nodes = 0
        for p, evs in zip(probs, events):
            grouped, names = ontology.group(p, level)
            active = {n: grouped[:, j] >= theta for j, n in enumerate(names)}
            truth = _level_truth(ontology, level, evs, seconds, p.shape[0])
            for ev in evs:
                mid = ev.get("mid")
                if mid not in ontology.nodes or ontology.level(mid) < level:
                    continue
                node = next(n for n in nodes if mid in ontology.descendants(n))
                lo = int(np.floor(float(ev["onset"]) / seconds))
                hi = max(lo + 1, int(np.ceil(float(ev["offset"]) / seconds)))
                total += 1
                found += bool(active[node][lo:hi].any())
                found_any += bool(active[node].any())
            detected = [n for n, a in active.items() if a.any()]
            det_nodes += len(detected)
            true_nodes += len(truth)
            tp = [n for n in detected if n in truth]
            tp_nodes += len(tp)
            false += len(detected) - len(tp)
        prec = tp_nodes / det_nodes if det_nodes else None
        rec = tp_nodes / true_nodes if true_nodes else None
        f1 = 2 * prec * rec / (prec + rec) if prec and rec else 0.0
        out[level] = {"threshold": theta, "found_rate": found / total if total else None,
                      "found_rate_any_time": found_any / total if total else None,
                      "false_nodes_per_clip": false / max(len(probs), 1), "precision": prec, "f1": f1,
                      "n_true_sounds": total, "n_clips": len(probs)}
    return out


def calibrate_thresholds(probs: Sequence[np.ndarray], events: Sequence[Sequence[Mapping]], ontology,
                         levels: Sequence[int], grid: Sequence[float] = DEFAULT_GRID, seconds: float = 2.0) -> dict[int, float]:
    """θ per level maximising the F1 of (clip, node) detections on these clips (ties: the larger θ)."""
    best: dict[int, float] = {}
    for level in levels:
        if int(level) > ontology.max_level:
            continue
        scores = [(detection_scores(probs, events, ontology, [level], t, seconds)[int(level)]["f1"], t) for t in grid]
        best[int(level)] = float(max(scores)[1])
    return best


__all__ = ["DEFAULT_GRID", "calibrate_thresholds", "detection_scores", "segment_probabilities"]
