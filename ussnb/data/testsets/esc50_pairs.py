"""``esc50-pairs``: the starter-pairs recipe on ESC-50's test split (or :class:`~ussnb.data.testsets.Skipped`
without the ESC-50 folder)."""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence

from ...errors import DataError
from ...io import short_hash
from .common import RECIPE_VERSION, Benchmark, Skipped, benchmarks_root, finished, make_pairs, write_benchmark


def prepare_esc50_pairs(
    esc50_dir: str | os.PathLike | None = None,
    *,
    n_per_class: int = 10,
    seconds: float = 2.0,
    seed: int = 0,
    split_seed: int = 0,
    n_examples: int = 4,
    root: str | os.PathLike | None = None,
    force: bool = False,
    holdout: Sequence[str] = (),
) -> Benchmark | Skipped:
    """``esc50-pairs``: the same pairs from ESC-50's test split (idempotent), or :class:`Skipped`.

    The split is :func:`ussnb.data.compose.assign_splits` with ``split_seed`` — the split the ``esc50`` weak
    dataset of the same seed uses, so its test recordings were never heard in training. ESC-50 clips are 5 s
    single-class recordings; each is silence-trimmed and its first ``seconds`` taken (tiled if shorter).
    ``holdout``: MIDs of classes held out of the run's training altogether; every recording of theirs was
    never heard, so all of them (not only the test split's) serve as targets and examples."""
    from ..compose import assign_splits
    from ..recipes.esc50 import esc50_events, find_esc50

    try:
        src = find_esc50(esc50_dir)
        events = esc50_events(src)
    except DataError as exc:
        return Skipped("esc50-pairs", f"skipped: {exc}")
    identity = {"source": str(src.resolve()), "n_clips": len(events),
                "files": short_hash(sorted((e.path, e.mid) for e in events))}
    holdout = sorted(set(holdout) & {e.mid for e in events})
    params = {"recipe": "esc50-pairs", "version": RECIPE_VERSION, "esc50": short_hash(identity),
              "n_per_class": int(n_per_class), "seconds": float(seconds), "seed": int(seed),
              "split_seed": int(split_seed), "n_examples": int(n_examples)}
    if holdout:
        params["holdout"] = holdout
    folder = benchmarks_root(root) / (f"esc50-pairs-n{n_per_class}-{seconds:g}s-seed{seed}-{params['esc50']}"
                                      + (f"-holdout-{short_hash(holdout, 6)}" if holdout else ""))
    if not force and finished(folder, params):
        return Benchmark(folder)
    split_of = assign_splits(events, seed=split_seed)
    by_class: dict[str, list] = defaultdict(list)
    names = {}
    for ev in events:
        if split_of[ev.recording] == "test" or ev.mid in holdout:
            by_class[ev.mid].append(ev)
            names[ev.mid] = ev.label
    arrays, items, ex_rows = make_pairs(by_class, names, n_per_class=n_per_class, seconds=seconds, seed=seed,
                                        n_examples=n_examples, tag="esc50-pairs")
    return write_benchmark(folder, "esc50-pairs", params, arrays, items,
                           {"examples": ex_rows, "source": identity | {"split_seed": split_seed}})
