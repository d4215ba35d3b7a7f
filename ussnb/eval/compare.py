"""Runs side by side: the zero-shot table of two (or more) finished pipeline runs.

The seeds' two systems are each a preset — ``zero-shot`` (the 2023 USS recipe at CPU scale: a pretrained CNN
tagger, the embedding condition, the fast separator) and ``zs2021`` (the 2021 recipe: HTS-AT, latent queries,
the plain U-Net) — run on the same data with the same held-out classes. :func:`compare_runs` reads each run's
stage 06 ``metrics.json`` (the ``zero_shot`` section: per benchmark the seen and the unseen classes queried by
example, per-class median then mean, beside the floor — the mixture itself — and the IRM ceiling), its tagger
and separator, and the runner's wall-clock minutes, one row per run and benchmark; :func:`comparison_table`
renders them as markdown (``ussnb compare RUN_A RUN_B``).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from ..errors import DataError
from ..run import Run

COLUMNS = ("run", "tagger", "separator", "condition", "benchmark", "held out", "seen SDRi", "seen floor",
           "unseen SDRi", "unseen floor", "unseen IRM", "minutes")


def run_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per benchmark of the run's stage-06 zero-shot evaluation."""
    run = Run(path)
    metrics = run.metrics("evaluation")
    model = metrics.get("model", {})
    try:
        tagger = run.metrics("sed").get("tagger", "?")
    except DataError:
        tagger = "?"
    minutes = sum(run.timings().values()) / 60 or None
    rows = []
    for bench, zs in sorted(metrics.get("zero_shot", {}).items()):
        if "seen" not in zs:  # e.g. a one-hot separator: no query by example (zs["note"] says why)
            continue
        seen, unseen = zs["seen"], zs.get("unseen", {})
        rows.append({"run": run.path.name, "tagger": tagger, "separator": model.get("separator", "?"),
                     "condition": model.get("condition", "?"), "benchmark": bench,
                     "held out": bool(zs.get("held_out_in_training")),
                     "seen SDRi": seen.get("by_example"), "seen floor": seen.get("floor"),
                     "unseen SDRi": unseen.get("by_example"), "unseen floor": unseen.get("floor"),
                     "unseen IRM": unseen.get("irm"), "minutes": minutes})
    if not rows:
        raise DataError(f"{path}: stage 06 reports no query-by-example (zero-shot) results to compare")
    return rows


def compare_runs(paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """The rows of every run, in the order given."""
    return [row for p in paths for row in run_rows(p)]


def comparison_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`compare_runs`' rows (SDRi in dB; – where undefined)."""
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


__all__ = ["compare_runs", "comparison_table", "run_rows"]
