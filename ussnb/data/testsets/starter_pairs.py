"""``starter-pairs``: 0 dB pairs of two classes from a prepared starter set's test split, plus the example bank
of the zero-shot (query-by-example) evaluation."""
from __future__ import annotations

import os
from collections import defaultdict

from ...io import short_hash
from .common import (RECIPE_VERSION, Benchmark, benchmarks_root, finished, make_pairs, resolve_source,
                     starter_marker, write_benchmark)


def prepare_starter_pairs(
    starter_root: str | os.PathLike,
    *,
    n_per_class: int = 10,
    seconds: float = 2.0,
    seed: int = 0,
    n_examples: int = 4,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    source=None,
    force: bool = False,
) -> Benchmark:
    """``starter-pairs``: ``n_per_class`` 0 dB pairs per target class from the starter test split (idempotent).

    Each target class k (every class with test events): targets cycle through a seeded permutation of k's
    test events; the interferer class is drawn uniformly from the other classes and its event uniformly from
    that class's test events. Both are ``seconds`` long (first seconds, tiled if short); the interferer is
    scaled to the target's energy; the three signals share one gain so the mixture peaks at ≤ 0.9.

    Args:
        starter_root: the prepared starter folder of the run's dataset.
        n_examples: query-by-example segments kept per class (the zero-shot evaluation's examples).
        root: data root of the benchmark folder (default ``USSNB_DATA``).
        cache_dir: the starter recipe cache (see :func:`~ussnb.data.testsets.starter_source`).
        source: an already loaded :func:`~ussnb.data.testsets.starter_source`, or a callable returning one
            (called only when the benchmark has to be built).
    """
    marker = starter_marker(starter_root)
    params = {"recipe": "starter-pairs", "version": RECIPE_VERSION, "starter": short_hash(marker),
              "n_per_class": int(n_per_class), "seconds": float(seconds), "seed": int(seed),
              "n_examples": int(n_examples)}
    folder = benchmarks_root(root) / f"starter-pairs-n{n_per_class}-{seconds:g}s-seed{seed}-{params['starter']}"
    if not force and finished(folder, params):
        return Benchmark(folder)
    src = resolve_source(source, starter_root, cache_dir)
    by_class: dict[str, list] = defaultdict(list)
    names = {}
    for ev in src.test_events():
        by_class[ev.mid].append(ev)
        names[ev.mid] = ev.label
    arrays, items, ex_rows = make_pairs(by_class, names, n_per_class=n_per_class, seconds=seconds, seed=seed,
                                        n_examples=n_examples, tag="starter-pairs")
    return write_benchmark(folder, "starter-pairs", params, arrays, items,
                           {"examples": ex_rows, "source": {"starter": str(src.root), "marker": src.marker,
                                                             "events": "raw test-split SourceEvents"}})
