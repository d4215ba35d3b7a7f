"""Run a trained separator on the test sets of :mod:`ussnb.data.testsets` (paper §4 protocol).

The model is anything shaped like :class:`ussnb.separation.SeparationBundle` (``model``, ``kind``, ``labels``,
``names``, ``class_conditions`` ``(K, C)``, ``class_counts`` ``(K,)``, ``query_net()``, ``sample_rate``):
:meth:`ussnb.run.Run.bundle` builds one from a pipeline run's stage folders.

Protocol. Benchmark audio is 32 kHz; it is resampled to the model's rate and scored there. The separator
runs on non-overlapping 2 s chunks (the reference evaluation; the last chunk zero-padded and cut). SDR and
SDRi as in :mod:`ussnb.eval.metrics` (whole item). Conditions:

- **average**: the class-average condition of the target class (eq. 9, the run's stage-03 output); classes
  without training anchors (held out for zero-shot) have none, and their items are left out of ``sdri_avg``;
- **oracle**: the condition of the clean target itself — the run's query net (its tagger for ``soft`` /
  ``embedding``, tagger + learned part for the learnable kinds) on the 2 s target, or e_k for ``onehot``;
- **by example** (zero-shot): the mean condition of other test segments of the class (never the mixture's
  own target recording).

Beside each figure: ``irm_sdri`` (ideal ratio mask with the model's STFT, the ceiling of a magnitude mask) and
``trivial_sdri`` (ŝ = x/2, ≈ 3 dB on 0 dB pairs) on the very same mixtures. Aggregate: per-class median,
then mean over classes (:func:`ussnb.eval.metrics.class_aggregate`).
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..audio import resample
from ..data.testsets import SAMPLE_RATE, STEMS, Benchmark, Skipped
from ..errors import DataError
from ..io import dumps_metrics, rounded  # noqa: F401  (dumps_metrics: part of this module's API)
from .metrics import class_aggregate, museval_sdr, oracle_cirm, oracle_irm, pesq_wb, sdr, segmental_snr

PAIR_METRICS = ("sdri_avg", "sdri_oracle", "irm_sdri", "cirm_sdri", "trivial_sdri")


# ============================================================================================ model side
def resolve_classes(classes: Iterable[str], labels: Sequence[str], names: Sequence[str]) -> list[str]:
    """Class display names (case-insensitive) or MIDs → MIDs of ``labels``; unknown ones raise."""
    by_name = {n.lower(): m for m, n in zip(labels, names)}
    out, unknown = [], []
    for c in classes:
        mid = c if c in labels else by_name.get(str(c).lower())
        (out if mid else unknown).append(mid or c)
    if unknown:
        raise DataError(f"unknown classes {unknown}; the model's classes: {sorted(names)}")
    return out


def _chunk(model) -> int:
    return int(round(2.0 * int(model.sample_rate)))


def _stft_params(model) -> tuple[int, int]:
    """(n_fft, hop) of a :class:`~ussnb.separators.base.Separator` (the paper's 2048 / 320 for other modules)."""
    return int(getattr(model, "n_fft", 2048)), int(getattr(model, "hop", 320))


@torch.inference_mode()
def separate_items(model, waves: np.ndarray, conditions: np.ndarray, *, chunk: int | None = None,
                   batch_size: int = 16) -> np.ndarray:
    """``(items, samples)`` mixtures and ``(items, C)`` conditions → ``(items, samples)`` estimates.

    Each item is cut into non-overlapping ``chunk``-sample pieces (default 2 s; last piece zero-padded),
    separated in batches and put back together (the reference evaluation's chunking, no cross-fade) — through
    the kit's one inference path, :func:`ussnb.inference.apply_separator`."""
    from ..inference import apply_separator

    seconds = (chunk or _chunk(model)) / int(model.sample_rate)
    return apply_separator(model, waves, conditions, segment_seconds=seconds, overlap=0.0, batch_size=batch_size)


def class_condition(bundle, mids: Sequence[str]) -> np.ndarray | None:
    """Mean of the class-average conditions of ``mids`` (eq. 9), or None if one of them has none."""
    if bundle.class_conditions is None:
        return None
    rows = []
    for mid in mids:
        if mid not in bundle.labels:
            return None
        k = bundle.labels.index(mid)
        if bundle.class_counts is not None and int(bundle.class_counts[k]) == 0:
            return None
        rows.append(np.asarray(bundle.class_conditions[k], np.float32))
    return np.mean(rows, axis=0).astype(np.float32) if rows else None


@torch.inference_mode()
def waveform_conditions(bundle, waves: np.ndarray, sr: int, batch_size: int = 16) -> np.ndarray:
    """``(items, C)``: the run's query net (tagger-based conditions) applied to ``(items, samples)`` at ``sr``."""
    net = bundle.query_net()
    x = resample(np.asarray(waves, np.float32), sr, int(net.sample_rate)) if sr != net.sample_rate else waves
    x = np.asarray(x, np.float32)
    out = [net(torch.from_numpy(x[i:i + batch_size])).float().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float32)


def oracle_conditions(bundle, targets: np.ndarray, sr: int, mids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(items, C)`` oracle conditions of the clean targets and a mask of the items that have one
    (``onehot``: the target's class must be one of the model's)."""
    C = int(bundle.model.condition_size)
    if bundle.kind == "onehot":
        cond = np.zeros((len(mids), C), np.float32)
        ok = np.zeros(len(mids), bool)
        for i, mid in enumerate(mids):
            if mid in bundle.labels:
                cond[i, bundle.labels.index(mid)] = 1.0
                ok[i] = True
        return cond, ok
    return waveform_conditions(bundle, targets, sr), np.ones(len(mids), bool)


def _to_model_rate(x: np.ndarray, sr_model: int) -> np.ndarray:
    return np.asarray(resample(np.asarray(x, np.float32), SAMPLE_RATE, sr_model) if sr_model != SAMPLE_RATE
                      else x, np.float32)


def pair_audio(bench: Benchmark, sr: int, rematch: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(mixture, target)`` of a pair benchmark at rate ``sr``. Resampling changes the two sources' energies
    differently (a hi-hat loses more above 8 kHz than a voice), so with ``rematch`` the interferer is scaled
    to the target's energy again *at the scoring rate*: the pairs stay 0 dB where they are scored."""
    tgt = _to_model_rate(bench["target"], sr)
    itf = _to_model_rate(bench["interferer"], sr)
    if rematch:
        et = np.sum(tgt.astype(np.float64) ** 2, axis=1)
        ei = np.sum(itf.astype(np.float64) ** 2, axis=1)
        itf = (itf * np.sqrt(et / np.maximum(ei, 1e-12))[:, None]).astype(np.float32)
    return (tgt + itf).astype(np.float32), tgt


def _agg(values: Sequence[float | None], classes: Sequence[str]) -> dict:
    keep = [(v, c) for v, c in zip(values, classes) if v is not None and np.isfinite(v)]
    if not keep:
        return {"per_class": {}, "median_then_mean": None, "mean": None, "ci95": None, "n": 0}
    return class_aggregate([v for v, _ in keep], [c for _, c in keep])


# ============================================================================================ pairs
def evaluate_pairs(bench: Benchmark, bundle, *, oracle: bool = True, batch_size: int = 32,
                   keep_audio: bool = False, rematch: bool = True) -> dict:
    """Per-item SDRi of the average and oracle conditions, IRM/cIRM ceilings and the x/2 floor.

    Returns ``{"name", "rows": [per item], "summary": {metric: class_aggregate}, "audio"?}``; ``rows`` carry
    ``class`` (MID), ``class_name``, ``interferer``, ``sdr_mixture`` and every metric of
    :data:`PAIR_METRICS` (None where the condition does not exist). ``audio`` (with ``keep_audio``): mixture,
    target, est_avg, est_oracle at the model rate."""
    sr = int(bundle.sample_rate)
    model = bundle.model
    mix, tgt = pair_audio(bench, sr, rematch)
    mids = [it["target_mid"] for it in bench.items]
    n_fft, hop = _stft_params(model)
    C = int(model.condition_size)

    avg = np.zeros((len(mids), C), np.float32)
    has_avg = np.zeros(len(mids), bool)
    for i, mid in enumerate(mids):
        c = class_condition(bundle, [mid])
        if c is not None:
            avg[i], has_avg[i] = c, True
    est_avg = np.zeros_like(mix)
    if has_avg.any():
        est_avg[has_avg] = separate_items(model, mix[has_avg], avg[has_avg], batch_size=batch_size)
    est_or = np.zeros_like(mix)
    has_or = np.zeros(len(mids), bool)
    if oracle:
        cond, has_or = oracle_conditions(bundle, bench["target"], SAMPLE_RATE, mids)
        if has_or.any():
            est_or[has_or] = separate_items(model, mix[has_or], cond[has_or], batch_size=batch_size)

    sdr_mix = sdr(tgt, mix)
    sdri_avg = sdr(tgt, est_avg) - sdr_mix
    sdri_or = sdr(tgt, est_or) - sdr_mix
    irm = sdr(tgt, oracle_irm(tgt, mix, n_fft, hop)) - sdr_mix
    cirm = sdr(tgt, oracle_cirm(tgt, mix, n_fft, hop)) - sdr_mix
    trivial = sdr(tgt, mix / 2) - sdr_mix
    rows = []
    for i, it in enumerate(bench.items):
        rows.append({"index": i, "class": it["target_mid"], "class_name": it["target"],
                     "interferer": it["interferer"], "sdr_mixture": float(sdr_mix[i]),
                     "sdri_avg": float(sdri_avg[i]) if has_avg[i] else None,
                     "sdri_oracle": float(sdri_or[i]) if has_or[i] else None,
                     "irm_sdri": float(irm[i]), "cirm_sdri": float(cirm[i]), "trivial_sdri": float(trivial[i])})
    out = {"name": bench.name, "rows": rows, "summary": summarise_pairs(rows)}
    if keep_audio:
        out["audio"] = {"sample_rate": sr, "mixture": mix, "target": tgt, "est_avg": est_avg, "est_oracle": est_or}
    return out


def summarise_pairs(rows: Sequence[Mapping]) -> dict:
    """``{metric: class_aggregate}`` over the rows that have the metric (classes = display names), plus
    ``above_floor`` (per item sdri_avg − trivial_sdri, aggregated the same way)."""
    names = [r["class_name"] for r in rows]
    summary = {m: _agg([r[m] for r in rows], names) for m in PAIR_METRICS}
    summary["above_floor"] = _agg([None if r["sdri_avg"] is None else r["sdri_avg"] - r["trivial_sdri"]
                                   for r in rows], names)
    return summary


def pick_examples(result: Mapping, metric: str = "sdri_avg") -> list[dict]:
    """The worst and the best class by per-class median ``metric`` (``sdri_oracle`` if no item has
    ``metric``) and, for each, its item closest to that median: ``[{"which", "class_name", "index", metric}]``."""
    per = result["summary"][metric]["per_class"]
    if not per:
        metric = "sdri_oracle"
        per = result["summary"][metric]["per_class"]
    if not per:
        return []
    out = []
    for which, cls in (("worst", min(per, key=lambda c: (per[c], c))), ("best", max(per, key=lambda c: (per[c], c)))):
        rows = [r for r in result["rows"] if r["class_name"] == cls and r[metric] is not None]
        row = min(rows, key=lambda r: (abs(r[metric] - per[cls]), r["index"]))
        out.append({"which": which, "class_name": cls, "index": row["index"], "metric": metric,
                    "value": row[metric], "interferer": row["interferer"]})
    return out


def pair_metrics(result: Mapping) -> dict:
    """The compact ``metrics.json`` entry of a pair benchmark."""
    s = result["summary"]
    rows = result["rows"]
    classes = sorted({r["class_name"] for r in rows})
    per_class = {c: {m: s[m]["per_class"].get(c) for m in ("sdri_avg", "sdri_oracle", "irm_sdri", "trivial_sdri")}
                 for c in classes}
    no_avg = sorted({r["class_name"] for r in rows if r["sdri_avg"] is None})
    entry = {m: s[m]["median_then_mean"] for m in PAIR_METRICS}
    entry |= {"sdri_avg_mean": s["sdri_avg"]["mean"], "sdri_avg_ci95": s["sdri_avg"]["ci95"],
              "sdri_avg_above_floor": s["above_floor"]["median_then_mean"],
              "n_items": len(rows), "n_classes": len(classes), "n_items_avg": s["sdri_avg"]["n"],
              "n_items_oracle": s["sdri_oracle"]["n"], "per_class": per_class,
              "aggregate": "per-class median, then mean over classes"}
    if no_avg:
        entry["classes_without_average_condition"] = no_avg
    return entry


# ============================================================================================ music
def evaluate_music(bench: Benchmark, bundle, *, batch_size: int = 32, window_seconds: float = 1.0) -> dict:
    """museval SDR (BSSEval v4, 1 s windows, median over windows) per stem and SDRi per stem and per part.

    Stem queries: the class-average condition of its instrument class (``vocals``: Choir, ``bass``: Double
    bass) or the mean of its classes' conditions (``other``: the alto and tenor instruments; those of them
    that have one — a held-out instrument is left out of the mean). Parts (S/A/T/B)
    are also queried one by one with their own class condition (SDRi by instrument class). The aggregate over
    pieces is the median (the MUSDB convention: median over tracks of the per-track median over windows)."""
    sr = int(bundle.sample_rate)
    model = bundle.model
    n_fft, hop = _stft_params(model)
    P, S, N = bench["stems"].shape
    mix = _to_model_rate(bench["mixture"], sr)
    stems = _to_model_rate(bench["stems"].reshape(P * S, N), sr).reshape(P, S, -1)
    parts = _to_model_rate(bench["parts"].reshape(P * 4, N), sr).reshape(P, 4, -1)
    jobs_x, jobs_c, jobs_key = [], [], []
    for p, it in enumerate(bench.items):
        for s_i, stem in enumerate(STEMS):
            c = _available_mean(bundle, it["stems"][stem])
            if c is not None:
                jobs_x.append(mix[p]), jobs_c.append(c), jobs_key.append(("stem", p, s_i))
        for v_i, part in enumerate(it["parts"]):
            if part["voice"] in "AT":  # S and B are the vocals and bass stems' own queries
                c = class_condition(bundle, [part["mid"]])
                if c is not None:
                    jobs_x.append(mix[p]), jobs_c.append(c), jobs_key.append(("part", p, v_i))
    est = {}
    if jobs_x:
        y = separate_items(model, np.stack(jobs_x), np.stack(jobs_c), batch_size=batch_size)
        est = {k: y[i] for i, k in enumerate(jobs_key)}
    rows, part_rows = [], []
    for p, it in enumerate(bench.items):
        have = [s_i for s_i in range(S) if ("stem", p, s_i) in est]
        mus = np.full(S, np.nan)
        if len(have) == S:
            mus = museval_sdr(stems[p], np.stack([est[("stem", p, s_i)] for s_i in range(S)]), sr, window_seconds)
        for s_i, stem in enumerate(STEMS):
            ref = stems[p, s_i]
            base = float(sdr(ref, mix[p]))
            e = est.get(("stem", p, s_i))
            rows.append({"piece": it["piece"], "stem": stem,
                         "museval_sdr": None if not np.isfinite(mus[s_i]) else float(mus[s_i]),
                         "sdri": None if e is None else float(sdr(ref, e)) - base,
                         "irm_sdri": float(sdr(ref, oracle_irm(ref, mix[p], n_fft, hop))) - base,
                         "trivial_sdri": float(sdr(ref, mix[p] / 2)) - base, "sdr_mixture": base})
        for v_i, part in enumerate(it["parts"]):
            stem_idx = {"S": 0, "B": 1}.get(part["voice"])
            e = est.get(("stem", p, stem_idx)) if stem_idx is not None else est.get(("part", p, v_i))
            ref = parts[p, v_i]
            base = float(sdr(ref, mix[p]))
            part_rows.append({"piece": it["piece"], "voice": part["voice"], "class": part["mid"],
                              "class_name": part["label"], "sdri": None if e is None else float(sdr(ref, e)) - base})

    def med(key, stem):
        v = [r[key] for r in rows if r["stem"] == stem and r[key] is not None]
        return float(np.median(v)) if v else None

    stem_sdri = _agg([r["sdri"] for r in rows], [r["stem"] for r in rows])
    by_inst = _agg([r["sdri"] for r in part_rows], [r["class_name"] for r in part_rows])
    summary = {"museval_sdr": {s: med("museval_sdr", s) for s in STEMS},
               "sdri_per_stem": {s: med("sdri", s) for s in STEMS},
               "irm_sdri_per_stem": {s: med("irm_sdri", s) for s in STEMS},
               "trivial_sdri_per_stem": {s: med("trivial_sdri", s) for s in STEMS},
               "sdr_mixture_per_stem": {s: med("sdr_mixture", s) for s in STEMS},
               "sdri_avg": stem_sdri["median_then_mean"],
               "sdri_by_instrument": by_inst["per_class"], "sdri_by_instrument_mean": by_inst["median_then_mean"],
               "n_pieces": P, "seconds": round(N / SAMPLE_RATE, 4)}
    missing = sorted({r["class_name"] for r in part_rows if r["sdri"] is None})
    if missing:
        summary["classes_without_average_condition"] = missing
    return {"name": bench.name, "rows": rows, "part_rows": part_rows, "summary": summary}


def _available_mean(bundle, mids: Sequence[str]) -> np.ndarray | None:
    """Mean class-average condition over those of ``mids`` that have one (a stem of several instruments is
    still queried when one of them was held out of training); None when none has."""
    rows = [c for c in (class_condition(bundle, [m]) for m in mids) if c is not None]
    return np.mean(rows, axis=0).astype(np.float32) if rows else None


# ============================================================================================ speech
def speech_condition(bundle, mids: Sequence[str]) -> np.ndarray | None:
    """The "speech" query: the mean of the class-average conditions of the speech classes the model has."""
    return _available_mean(bundle, mids)


def evaluate_speech(bench: Benchmark, bundle, *, query: str = "mean", batch_size: int = 16,
                    rematch: bool = True) -> dict:
    """Speech enhancement: PESQ (wide band, 16 kHz) and segmental SNR of the enhanced speech and of the
    noisy input, per SNR and overall (means, as Voicebank-Demand reports them).

    ``query="mean"``: one "speech" query for every item — the mean class-average condition of the starter's
    speech classes (male, female, child) the model has; ``"own"``: the item's own speech class."""
    from ..data.recipes.starter import SPEAKERS, STARTER_CLASSES

    sr = int(bundle.sample_rate)
    model = bundle.model
    speech_mids = [m for m, name in STARTER_CLASSES if name in {s.label for s in SPEAKERS}]
    clean = _to_model_rate(bench["clean"], sr)
    noise = _to_model_rate(bench["noise"], sr)
    lengths = [min(clean.shape[1], int(round(int(n) * sr / SAMPLE_RATE))) for n in bench["length"]]
    for i, n in enumerate(lengths):
        noise[i, n:] = 0.0
        clean[i, n:] = 0.0
        if rematch:  # the item's SNR again at the scoring rate (resampling removes more noise than speech)
            es = float(np.sum(clean[i, :n].astype(np.float64) ** 2))
            en = float(np.sum(noise[i, :n].astype(np.float64) ** 2))
            noise[i] *= np.float32(np.sqrt(es / (max(en, 1e-12) * 10 ** (float(bench.items[i]["snr"]) / 10))))
    noisy = (clean + noise).astype(np.float32)
    conds, ok = [], []
    for it in bench.items:
        c = speech_condition(bundle, speech_mids if query == "mean" else [it["speech_mid"]])
        ok.append(c is not None)
        conds.append(c if c is not None else np.zeros(int(model.condition_size), np.float32))
    if not any(ok):
        return {"name": bench.name, "rows": [], "summary": {
            "skipped": "skipped: the model has no class-average condition for any speech class"}}
    ok = np.asarray(ok)
    est = np.zeros_like(noisy)
    est[ok] = separate_items(model, noisy[ok], np.stack(conds)[ok], batch_size=batch_size)
    rows = []
    for i, it in enumerate(bench.items):
        if not ok[i]:
            continue
        n = lengths[i]
        c, x, e = clean[i, :n], noisy[i, :n], est[i, :n]
        rows.append({"index": i, "snr": float(it["snr"]), "speech": it["speech"], "noise": it["noise"],
                     "pesq": _pesq(c, e, sr), "pesq_noisy": _pesq(c, x, sr),
                     "ssnr": segmental_snr(c, e, sr), "ssnr_noisy": segmental_snr(c, x, sr),
                     "sdri": float(sdr(c, e) - sdr(c, x))})
    keys = ("pesq", "pesq_noisy", "ssnr", "ssnr_noisy", "sdri")

    def mean(rs, k):
        v = [r[k] for r in rs if r[k] is not None and np.isfinite(r[k])]
        return float(np.mean(v)) if v else None

    per_snr = {}
    for snr in sorted({r["snr"] for r in rows}):
        rs = [r for r in rows if r["snr"] == snr]
        per_snr[f"{snr:g}"] = {k: mean(rs, k) for k in keys} | {"n": len(rs)}
    summary = {k: mean(rows, k) for k in keys} | {"per_snr": per_snr, "n_items": len(rows), "query": query,
                                                   "pesq_failures": sum(r["pesq"] is None for r in rows)}
    return {"name": bench.name, "rows": rows, "summary": summary}


def _pesq(clean: np.ndarray, estimate: np.ndarray, sr: int) -> float | None:
    try:
        return pesq_wb(clean, estimate, sr)
    except Exception:  # pesq raises on e.g. no detected utterance; counted as a failure
        return None


# ============================================================================================ zero-shot
def evaluate_zero_shot(bench: Benchmark, bundle, unseen: Sequence[str], *, batch_size: int = 32,
                       held_out_in_training: bool | None = None, rematch: bool = True,
                       pairs: Mapping | None = None) -> dict:
    """Seen vs unseen classes (``unseen``: MIDs held out of training), each queried two ways, beside the x/2
    floor and the IRM ceiling on the very same mixtures.

    * **by example**: the mean query-net condition of the benchmark's example segments of the target class
      whose recording differs from the item's target recording (other test events of the class, never the
      mixture's target) — what ``ussnb separate --example EX1 EX2`` does with a user's clips;
    * **class average** (eq. 9): for seen classes the mean condition of the class's training anchors (stage
      03); an unseen class has no anchors, so its average is that of a few example clips — the same
      conditions as by example.

    ``pairs``: the :func:`evaluate_pairs` result of ``bench`` (its class-average SDRi, floor and IRM per item
    are reused; computed here if not given). Items without an example from another recording are left out
    (``n_skipped``)."""
    if bundle.kind == "onehot":
        return {"note": "the separator was trained with one-hot conditions: it cannot be queried by example, so "
                        "there is no zero-shot evaluation (train with soft/embedding conditions)"}
    ex = bench["examples"]
    ex_rows = bench.manifest.get("examples", [])
    if not len(ex_rows):
        return {"note": f"{bench.name} has no example segments for query by example"}
    ex_cond = waveform_conditions(bundle, ex, SAMPLE_RATE, batch_size)
    by_class: dict[str, list[int]] = defaultdict(list)
    for j, r in enumerate(ex_rows):
        by_class[r["mid"]].append(j)
    conds, keep = [], []
    for i, it in enumerate(bench.items):
        js = [j for j in by_class.get(it["target_mid"], []) if ex_rows[j]["recording"] != it["target_recording"]]
        if js:
            conds.append(ex_cond[js].mean(axis=0))
            keep.append(i)
    unseen = list(unseen)
    out: dict[str, Any] = {"query": "by example: mean condition of the class's other test segments; class "
                                    "average: eq. 9 over training anchors (seen), the examples' mean (unseen)",
                           "unseen_classes": sorted({it["target"] for it in bench.items if it["target_mid"] in unseen}),
                           "n_skipped": len(bench.items) - len(keep)}
    if held_out_in_training is not None:
        out["held_out_in_training"] = bool(held_out_in_training)
    if not keep:
        return out | {"note": "no item has an example of its class from another recording"}
    if pairs is None:
        pairs = evaluate_pairs(bench, bundle, oracle=False, batch_size=batch_size, rematch=rematch)
    prow = {r["index"]: r for r in pairs["rows"]}
    sr = int(bundle.sample_rate)
    mix, tgt = pair_audio(bench, sr, rematch)
    mix, tgt = mix[keep], tgt[keep]
    est = separate_items(bundle.model, mix, np.stack(conds), batch_size=batch_size)
    by_ex = sdr(tgt, est) - sdr(tgt, mix)
    items = [bench.items[i] for i in keep]
    is_unseen = [it["target_mid"] in unseen for it in items]
    names = [it["target"] for it in items]
    rows = []
    for i, v, u, it in zip(keep, by_ex, is_unseen, items):
        avg = v if u else prow[i]["sdri_avg"]  # an unseen class's "average" is its examples' mean
        rows.append({"class_name": it["target"], "unseen": u, "by_example": float(v),
                     "class_average": None if avg is None else float(avg),
                     "floor": prow[i]["trivial_sdri"], "irm": prow[i]["irm_sdri"]})

    def group(flag: bool) -> dict:
        rs = [r for r in rows if r["unseen"] == flag]
        cls = [r["class_name"] for r in rs]
        g = {m: _agg([r[m] for r in rs], cls)["median_then_mean"] for m in ("by_example", "class_average", "floor", "irm")}
        return g | {"n_items": len(rs), "n_classes": len(set(cls))}

    seen_g, uns_g = group(False), group(True)
    per_class = {}
    for c in sorted(set(names)):
        rs = [r for r in rows if r["class_name"] == c]
        per_class[c] = {"unseen": rs[0]["unseen"]} | {m: _agg([r[m] for r in rs], [c] * len(rs))["median_then_mean"]
                                                      for m in ("by_example", "class_average", "floor", "irm")}
    seen_agg = _agg([v for v, u in zip(by_ex, is_unseen) if not u], [n for n, u in zip(names, is_unseen) if not u])
    uns_agg = _agg([v for v, u in zip(by_ex, is_unseen) if u], [n for n, u in zip(names, is_unseen) if u])
    out |= {"seen": seen_g, "unseen": uns_g,
            "seen_sdri": seen_agg["median_then_mean"], "unseen_sdri": uns_agg["median_then_mean"],
            "seen_sdri_mean": seen_agg["mean"], "unseen_sdri_mean": uns_agg["mean"],
            "n_seen_items": seen_agg["n"], "n_unseen_items": uns_agg["n"],
            "per_class": dict(sorted(per_class.items()))}
    if not unseen:
        out["note"] = ("no classes were held out of training (zero_shot_classes is empty): seen_sdri is the "
                       "query-by-example SDRi of all classes, unseen_sdri is undefined")
    elif uns_agg["n"] == 0:
        out["note"] = "none of the held-out classes has a test item with an example from another recording"
    return out


# ============================================================================================ reporting


def skipped_entry(result: Skipped | str) -> dict:
    return result.to_dict() if isinstance(result, Skipped) else {"skipped": str(result)}


def results_table(benchmarks: Mapping[str, Mapping]) -> list[dict]:
    """Flat rows ``{benchmark, metric, value}`` of the headline figures (for the CSV)."""
    rows = []
    for name in sorted(benchmarks):
        entry = benchmarks[name]
        if "skipped" in entry:
            rows.append({"benchmark": name, "metric": "skipped", "value": entry["skipped"]})
            continue
        for key in sorted(entry):
            v = entry[key]
            if isinstance(v, (int, float)) and not isinstance(v, bool) or v is None:
                rows.append({"benchmark": name, "metric": key, "value": v})
            elif isinstance(v, Mapping) and (key.endswith("_per_stem") or key == "museval_sdr"):
                for k in sorted(v):
                    rows.append({"benchmark": name, "metric": f"{key}.{k}", "value": v[k]})
            elif isinstance(v, Mapping) and key == "per_snr":
                for snr in sorted(v, key=float):
                    for k in sorted(v[snr]):
                        rows.append({"benchmark": name, "metric": f"snr{snr}.{k}", "value": v[snr][k]})
    return rounded(rows)


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping]) -> Path:
    import csv

    path = Path(path)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


__all__ = ["PAIR_METRICS", "class_condition", "dumps_metrics", "evaluate_music", "evaluate_pairs",
           "evaluate_speech", "evaluate_zero_shot", "oracle_conditions",
           "pair_audio", "pair_metrics", "pick_examples", "resolve_classes", "results_table", "rounded", "separate_items", "skipped_entry",
           "speech_condition", "summarise_pairs", "waveform_conditions", "write_csv"]
