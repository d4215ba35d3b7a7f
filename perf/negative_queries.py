"""Negative queries (``ussnb separate --exclude``): which method removes a sound better, measured.

    python perf/negative_queries.py --checkpoint RUN_DIR [--pairs BENCHMARK_DIR] [--per-class 4] [--json out.json]

Mixtures: three real starter test recordings at 0 dB each — a starter-pairs item's target ``A`` and interferer
``B`` (the benchmark's 0 dB pairs, ``<USSNB_DATA>/benchmarks/starter-pairs-*``; built from the run's dataset
if missing) plus a third source ``C``: the target of another item whose class is neither ``A``'s nor ``B``'s
(seeded choice), scaled to ``A``'s energy at the model's rate. ``B`` is always the excluded sound. Three uses:

- **alone** ``--exclude B``: reference ``A + C`` (the mixture without ``B``);
- **union − B** ``--query "A or B" --exclude B``: the query is the mean of ``A``'s and ``B``'s class-average
  conditions (a query that asks for both, like a parent node or a two-class ``--text``); reference ``A``;
- **A − B** ``--query A --exclude B``: reference ``A`` (does an exclusion of a sound the query does not ask for
  cost anything, or remove leakage?).

Methods, each through the kit's own path (:func:`ussnb.separation.separate`, 2 s chunks, 0.25 overlap, as
``ussnb separate``): ``residual`` (separate ``B`` from the current estimate — the mixture when alone — and
subtract it) and ``condition`` (one pass with ``c_target − c_B`` clipped at 0; alone, each chunk's own tagged
condition minus ``c_B``). For comparison, rows that are not exclusions: the query alone without ``--exclude``
(``no exclusion``), and ``residual from the mixture``: ``f(x, c_target) − f(x, c_B)`` (the excluded estimate
taken from the mixture instead of from the target estimate; for *alone* it is the same as ``residual``).
Score: SDRi = SDR(reference, estimate) − SDR(reference, mixture), mean over mixtures and the paper's per-class
median then mean over the target classes ``A``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def find_pairs(folder: str | None, bundle, data_root: str | None = None) -> Path:
    """``--pairs``, else the first starter-pairs benchmark under the data root, else built there from the run's
    starter set (the member of a combined dataset that is a starter set)."""
    from ussnb.data.testsets import prepare_starter_pairs
    from ussnb.data.testsets.common import benchmarks_root, dataset_recipe

    if folder:
        return Path(folder)
    found = sorted(benchmarks_root(data_root).glob("starter-pairs-*"))
    if found:
        return found[0]
    if bundle.run is None:
        raise SystemExit("no starter-pairs benchmark found: pass --pairs, or a run directory as --checkpoint")
    root = Path(bundle.run.dataset_root())
    info = root / "info.json"
    members = [Path(m["path"]) for m in json.loads(info.read_text()).get("members", [])] if info.is_file() else []
    starter = next((m for m in members if dataset_recipe(m).get("recipe") == "starter"), root)
    print(f"building the starter-pairs benchmark from {starter} under {benchmarks_root(data_root)}", file=sys.stderr)
    return prepare_starter_pairs(starter, root=data_root).folder


def main(argv: list[str] | None = None) -> int:
    from ussnb.audio import resample
    from ussnb.data.testsets.common import Benchmark
    from ussnb.eval.metrics import class_aggregate, sdr
    from ussnb.inference import apply_separator
    from ussnb.runtime import configure_threads
    from ussnb.separation import EXCLUDE_METHODS, SeparationBundle, resolve_query, separate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a pipeline run directory (its tagger is needed)")
    ap.add_argument("--pairs", help="a starter-pairs benchmark folder (default: the first under USSNB_DATA)")
    ap.add_argument("--data-root", help="where to look for / build the benchmark (default USSNB_DATA)")
    ap.add_argument("--per-class", type=int, default=4, help="mixtures per target class (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="choice of the third source")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the per-mixture figures here")
    args = ap.parse_args(argv)
    configure_threads(args.threads)

    bundle = SeparationBundle.load(args.checkpoint)
    bench = Benchmark(find_pairs(args.pairs, bundle, args.data_root))
    sr = bundle.sample_rate
    items = bench.items
    tgt = resample(bench["target"], bench.sample_rate, sr)
    itf = resample(bench["interferer"], bench.sample_rate, sr)
    energy = lambda x: float(np.sum(np.asarray(x, np.float64) ** 2))  # noqa: E731
    rng = np.random.default_rng(args.seed)
    counts = bundle.class_counts if bundle.class_counts is not None else np.ones(bundle.classes)
    queryable = {m for m, n in zip(bundle.labels, counts) if n > 0}  # classes with a class-average condition
    known = set(bundle.labels)
    seen: dict[str, int] = {}
    chosen = []  # (item, third item)
    for i, it in enumerate(items):
        a, b = it["target_mid"], it.get("interferer_mid")
        if a not in queryable or b not in queryable or seen.get(a, 0) >= args.per_class:
            continue
        others = [j for j, o in enumerate(items) if o["target_mid"] not in (a, b) and o["target_mid"] in known]
        if not others:
            continue
        chosen.append((i, int(rng.choice(others))))
        seen[a] = seen.get(a, 0) + 1
    if not chosen:
        raise SystemExit(f"no usable mixtures in {bench.folder} for this model's classes (items need target_mid and "
                         "interferer_mid among the model's labels)")
    print(f"{len(chosen)} three-source mixtures ({len(seen)} target classes with class-average conditions; "
          f"held-out classes have none) from {bench.folder.name}; separator "
          f"{bundle.source} ({bundle.model.registry_name}, {bundle.kind}, {sr} Hz)", flush=True)

    settings = dict(segment_seconds=2.0, overlap=0.25, batch_size=8, progress=False)
    uses = ("alone", "union − B", "A − B")
    rows_names = ("no exclusion", *EXCLUDE_METHODS, "residual from the mixture")
    scores: dict[str, dict[str, list[float]]] = {u: {r: [] for r in rows_names} for u in uses}
    classes: list[str] = []
    per_item = []
    t0 = time.perf_counter()
    for n, (i, j) in enumerate(chosen):
        it = items[i]
        a_w, b_w = tgt[i], itf[i] * np.sqrt(energy(tgt[i]) / max(energy(itf[i]), 1e-12))
        c_w = tgt[j] * np.sqrt(energy(tgt[i]) / max(energy(tgt[j]), 1e-12))
        mix = (a_w + b_w + c_w).astype(np.float32)
        a_mid, b_mid = it["target_mid"], it["interferer_mid"]
        c_a, c_b = resolve_query(a_mid, bundle).vector, resolve_query(b_mid, bundle).vector
        union = (0.5 * (c_a + c_b)).astype(np.float32)

        def f(x, c):
            return apply_separator(bundle.model, x, c, segment_seconds=2.0, overlap=0.25, batch_size=8)

        est_b = f(mix, c_b)
        record = {"target": it["target"], "excluded": it["interferer"], "third": items[j]["target"]}
        for use, query, ref in (("alone", None, a_w + c_w), ("union − B", union, a_w), ("A − B", c_a, a_w)):
            base = float(sdr(ref, mix))
            est = {"no exclusion": mix if query is None else separate(mix, query, bundle, **settings)}
            for m in EXCLUDE_METHODS:
                est[m] = separate(mix, query, bundle, exclude=[b_mid], exclude_method=m, **settings)
            est["residual from the mixture"] = (mix if query is None else est["no exclusion"]) - est_b
            for r in rows_names:
                value = float(sdr(ref, est[r])) - base
                scores[use][r].append(value)
                record[f"{use} | {r}"] = round(value, 3)
        classes.append(it["target"])
        per_item.append(record)
        if (n + 1) % 20 == 0:
            print(f"  {n + 1}/{len(chosen)} mixtures ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0

    print(f"\nSDRi (dB) against the reference, {len(chosen)} mixtures of 3 sources at 0 dB; excluded = B; "
          f"mean ± 95 % CI (per-class median, then mean over classes) ({wall:.0f} s)\n")
    print("| method | " + " | ".join(f"{u} (ref {'A + C' if u == 'alone' else 'A'})" for u in uses) + " |")
    print("|---|" + "---|" * len(uses))
    summary = {}
    for r in rows_names:
        cells = []
        for u in uses:
            agg = class_aggregate(scores[u][r], classes)
            summary.setdefault(u, {})[r] = {"mean": agg["mean"], "ci95": agg["ci95"],
                                            "median_then_mean": agg["median_then_mean"]}
            cells.append(f"{agg['mean']:6.2f} ± {agg['ci95']:.2f} ({agg['median_then_mean']:.2f})")
        print(f"| {r} | " + " | ".join(cells) + " |")
    print("\n(alone: 'no exclusion' is the mixture itself, SDRi 0 by definition; 'residual from the mixture' = "
          "'residual' there)")
    if args.json:
        Path(args.json).write_text(json.dumps({"mixtures": len(chosen), "summary": summary, "items": per_item},
                                              indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
