"""The ``ussnb separate`` command's batch driver: which files are inputs, a distinct output name per input,
skip-if-done, one ``summary.json`` per output folder. The separation itself is :mod:`ussnb.separation`'s
(:func:`~ussnb.separation.separate_file`, :func:`~ussnb.separation.separate_hierarchy`)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import AudioError, ConfigError, UssnbError
from ..io import atomic_write_text, short_hash
from ..paths import check_output_folder, make_output_folder
from ..ontology import text_terms
from ..separation import (AUDIO_SUFFIXES, DEFAULT_EXCLUDE_METHOD, DEFAULT_TEXT_TOP, EXCLUDE_METHODS, OUTPUT_FORMATS,
                          SeparationBundle, check_levels_exist, check_settings, hierarchy_done, level_thresholds,
                          negative_query, resolve_query, separate_file, separate_hierarchy, slugify, text_query,
                          threshold_record)

log = logging.getLogger(__name__)

def collect_inputs(paths: Sequence[str | os.PathLike], exclude: str | os.PathLike | None = None) -> list[Path]:
    """Files as given; folders → their audio files (by suffix, sorted, not recursive, hidden files skipped;
    in the ``exclude`` folder — the output folder — files named like outputs, ``<name>__<query>…``, too).

    A missing path raises :class:`AudioError`; a file reached twice (given twice, or given and also inside a
    given folder) raises :class:`ConfigError` naming both ways it was given."""
    out: list[tuple[Path, str]] = []  # (file, how it was given)
    skip = Path(exclude).resolve() if exclude is not None else None
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                           and f.suffix.lower() in AUDIO_SUFFIXES
                           # outputs of an earlier run into this same folder are not inputs
                           and not (skip is not None and f.resolve().parent == skip and "__" in f.stem))
            if not found:
                log.warning("%s: no audio files in this folder", p)
            out.extend((f, f"through the folder {p}") for f in found)
        elif p.exists():
            out.append((p, f"as {p}"))
        else:
            raise AudioError(f"{p}: no such audio file or folder")
    seen: dict[Path, str] = {}
    unique = []
    for f, how in out:
        key = f.resolve()
        if key in seen:
            raise ConfigError(f"{f} is given twice ({seen[key]} and {how}); give every input once")
        seen[key] = how
        unique.append(f)
    return unique


def output_names(files: Sequence[Path]) -> list[str]:
    """A distinct name per input: its stem, or ``stem-<folder>-<hash>`` where stems collide (two inputs
    ``a/x.wav`` and ``b/x.wav``, or ``x.wav`` and ``x.flac``)."""
    stems: dict[str, int] = {}
    for f in files:
        stems[f.stem.lower()] = stems.get(f.stem.lower(), 0) + 1
    names = []
    for f in files:
        if stems[f.stem.lower()] == 1:
            names.append(f.stem)
        else:
            names.append(f"{f.stem}-{slugify(f.resolve().parent.name, 16)}-{short_hash([str(f.resolve())], 6)}")
    return names


def run_separate(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    checkpoint: str | os.PathLike,
    *,
    query: str | None = None,
    examples: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    text: str | None = None,
    top: int | None = None,
    exclude: Sequence[str] | None = None,
    exclude_method: str | None = None,
    threshold: float | None = None,
    residual: bool = False,
    resample: bool = False,
    output_rate: str | None = None,
    output_format: str | None = None,
    force: bool = False,
    segment_seconds: float = 2.0,
    overlap: float = 0.25,
    batch_size: int = 8,
    progress: bool = True,
    device: Any = None,
    precision: str | None = None,
    echo: Callable[[str], None] = print,
    on_failure: Callable[[Path, UssnbError], None] | None = None,
) -> tuple[dict, int]:
    """What ``ussnb separate`` does: one query (``query`` class, ``examples`` files, or a free description
    ``text`` → its ``top`` best-matching classes, :func:`~ussnb.separation.text_query`) → exactly one
    ``<name>__<query slug>.wav`` per input (+ ``…__residual.wav``; ``.flac`` for ``output_format="flac"``), at the
    input's rate with its channels (``output_rate="input"``, the default) or the model's rate, mono (``"model"``);
    or ``levels`` → hierarchical separation into ``<name>/`` (float32 WAV at the model's rate); inputs already done are skipped unless ``force``; ``out_dir/summary.json`` lists every
    item (merged with earlier runs). Returns the summary and the number of failed inputs.

    Settings, inputs and the output folder are checked before the model is loaded or anything is written
    (:class:`~ussnb.errors.ConfigError`, :class:`~ussnb.errors.AudioError`: out-of-range settings, missing
    inputs, a file reached twice, an output folder that is a file, not writable, or inside an input folder).
    An input that fails on its own (unreadable, wrong rate, ...) is marked failed, reported to
    ``on_failure(path, error)`` and the other inputs go on; finished outputs are never removed. ``device`` /
    ``precision``: where and how the separator runs (:meth:`SeparationBundle.load`; checked before loading)."""
    from ..runtime import check_precision, resolve_device

    from tqdm.auto import tqdm

    device = resolve_device(device)
    if precision != "best":
        precision = check_precision(precision, device)
    modes = sum(x is not None and x != [] for x in (query, examples, levels, text))
    exclude = list(exclude) if exclude else None
    if modes > 1 or modes == 0 and not exclude:
        raise ConfigError("give exactly one of a query (--query), a description (--text), example files (--example) "
                          "or levels (--levels) — or --exclude alone (the mixture without the excluded sounds)")
    if exclude and levels is not None:
        raise ConfigError("--exclude goes with --query, --text or --example (or alone), not with --levels")
    if exclude_method is not None and not exclude:
        raise ConfigError("--exclude-method goes with --exclude")
    exclude_method = exclude_method or DEFAULT_EXCLUDE_METHOD
    if exclude_method not in EXCLUDE_METHODS:
        raise ConfigError(f"--exclude-method must be one of {', '.join(EXCLUDE_METHODS)}, got {exclude_method!r}")
    for e in exclude or []:
        if not str(e).strip():
            raise ConfigError("--exclude got an empty name: give a class name (e.g. \"Dog\"), an AudioSet MID, a class "
                              "index or an example audio file")
        if Path(e).suffix.lower() in AUDIO_SUFFIXES and not Path(e).is_file():
            raise AudioError(f"{e}: no such example audio file (--exclude)")
    if top is not None and text is None:
        raise ConfigError("--top goes with --text (how many best-matching classes to mix)")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("--text is empty: describe the sound to extract, e.g. --text \"a dog barking\"")
        if not text_terms(text):
            raise ConfigError(f"--text {text!r} has no words to match (only punctuation or stop words): describe "
                              "the sound, e.g. --text \"a dog barking\"")
        top = DEFAULT_TEXT_TOP if top is None else top
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ConfigError(f"--top must be a whole number of classes ≥ 1, got {top!r}")
    # settings, query text and example files first: cheap, and before any model is loaded or output written
    levels = check_settings(segment_seconds=segment_seconds, overlap=overlap, batch_size=batch_size,
                            threshold=threshold, levels=levels, output_rate=output_rate, output_format=output_format)
    if levels is not None and (output_rate is not None or output_format is not None):
        raise ConfigError("--output-rate / --format are for --query, --text and --example; --levels writes float32 "
                          "WAV tracks at the model's rate")
    output_rate = output_rate or "input"
    output_format = output_format or "wav"
    suffix = OUTPUT_FORMATS[output_format][2]
    if isinstance(query, str) and not query.strip():
        raise ConfigError("--query is empty: give a class name (e.g. \"Dog\"), an AudioSet MID or a class index")
    for e in examples or []:
        if not Path(e).exists():
            raise AudioError(f"{e}: no such example audio file")
        if Path(e).is_dir():
            raise AudioError(f"{e}: is a folder, not an example audio file")
    out = check_output_folder(out_dir)
    files = collect_inputs(inputs, exclude=out)
    if not files:
        raise AudioError("no audio files to separate")
    out_abs = out.resolve()
    for p in inputs:
        folder = Path(p).resolve()
        if Path(p).is_dir() and (out_abs == folder or folder in out_abs.parents):
            raise ConfigError(f"the output folder {out} is inside the input folder {p}: its outputs would be taken "
                              "for inputs — choose an output folder outside it")
    names = output_names(files)
    bundle = SeparationBundle.load(checkpoint, device=device, precision=precision)
    q = None
    if text is not None:
        q = text_query(text, bundle, top)
        echo(f"text: {text!r} → the {len(q.detail['classes'])} best-matching of the model's {bundle.classes} classes:")
        for c in q.detail["classes"]:
            echo(f"  {c['score']:7.2f}  weight {c['weight']:.3f}  {c['name']}")
        echo(f"query: {q.detail['condition']} → *__{q.slug}.wav")
    elif levels is None and (query is not None or examples):
        q = resolve_query(query if query is not None else list(examples), bundle)
        if not exclude:
            echo(f"query: {q.label} ({q.detail.get('condition', q.source)}) → *__{q.slug}.wav")
    if exclude:
        q = negative_query(q, [resolve_query(e, bundle) for e in exclude], bundle, exclude_method)
        echo(f"query: {q.label} (--exclude-method {exclude_method}) → *__{q.slug}{suffix}")
    elif levels is not None:  # what every input would fail on: say it once
        check_levels_exist(levels, bundle.ontology)
        bundle.tagger  # noqa: B018 — loads it, or says that this checkpoint has none
    make_output_folder(out)
    items, failed = [], 0
    bar = tqdm(list(zip(files, names)), desc="inputs", unit="file", disable=not progress or len(files) < 2)
    for f, name in bar:
        item: dict[str, Any] = {"input": str(f), "name": name}
        try:
            if q is not None:
                target = out / f"{name}__{q.slug}{suffix}"
                res = out / f"{name}__{q.slug}__residual{suffix}" if residual else None
                item.update(output=str(target), residual=str(res) if res else None)
                if not force and target.is_file() and (res is None or res.is_file()):
                    item["status"] = "skipped"
                    echo(f"skipped (done; --force to redo): {target}")
                else:
                    info = separate_file(f, target, q, bundle, residual_path=res, segment_seconds=segment_seconds,
                                         overlap=overlap, batch_size=batch_size, resample=resample, progress=progress,
                                         output_rate=output_rate, output_format=output_format)
                    item.update(status="done", seconds=info["seconds"], real_time_factor=info["real_time_factor"],
                                sample_rate=info["sample_rate"], channels=info["channels"])
                    if info.get("clipped_samples"):
                        item["clipped_samples"] = info["clipped_samples"]
                    echo(f"wrote {target}" + (f" and {res.name}" if res else ""))
            else:
                folder = out / name
                item.update(output=str(folder), summary=str(folder / "summary.json"))
                if not force and hierarchy_done(folder, levels, threshold, bundle):
                    item["status"] = "skipped"
                    echo(f"skipped (done; --force to redo): {folder}")
                else:
                    earlier = set(folder.glob("level=*/*.wav")) if folder.is_dir() else set()
                    summ = separate_hierarchy(f, bundle, levels, threshold, out, name=name,
                                              segment_seconds=segment_seconds, overlap=overlap,
                                              batch_size=batch_size, resample=resample, progress=progress)
                    # tracks of an earlier run that this one did not write again: removed only now that the
                    # new tracks are complete (a failed redo keeps the earlier outputs)
                    written = {folder / n["file"] for v in summ["levels"].values() for n in v["nodes"]}
                    for old in earlier - written:
                        old.unlink()
                    found = {lv: [n["label"] for n in v["nodes"]] for lv, v in summ["levels"].items()}
                    item.update(status="done", seconds=summ["duration_seconds"],
                                real_time_factor=summ["real_time_factor"], detected=found)
                    echo(f"wrote {folder}: " + "; ".join(f"level {lv}: {len(v)} node(s)" for lv, v in found.items()))
        except UssnbError as exc:
            failed += 1
            item.update(status="failed", error=str(exc))
            echo(f"FAILED {f}: {exc}")
            if on_failure is not None:
                on_failure(f, exc)
        items.append(item)
    summary = _merge_summary(out / "summary.json", items, {
        "checkpoint": str(checkpoint), "condition": bundle.kind, "sample_rate": bundle.sample_rate,
        "mode": "hierarchy" if levels is not None else "query",
        **({"levels": list(levels), "threshold": threshold_record(level_thresholds(threshold, levels, bundle))}
           if levels is not None else
           {"query": q.label, "query_slug": q.slug, "query_source": q.source,
            "output_rate": output_rate, "format": output_format,
            **({"text": q.detail["text"], "text_top": q.detail["top"], "text_classes": q.detail["classes"],
                "text_condition": q.detail["condition"]} if q.source == "text" else {}),
            **({"exclude": [e["label"] for e in q.detail["exclude"]], "exclude_method": q.detail["exclude_method"]}
               if q.source == "negative" else {})}),
        "segment_seconds": segment_seconds, "overlap": overlap,
    })
    return summary, failed


def _merge_summary(path: Path, items: list[dict], meta: dict) -> dict:
    """Write ``summary.json``: this run's settings and items, keeping items of earlier runs for other outputs."""
    old_items: list[dict] = []
    if path.is_file():
        try:
            old_items = json.loads(path.read_text()).get("items", [])
        except (OSError, ValueError):
            old_items = []
    mine = {it["output"] for it in items if "output" in it}
    merged = [it for it in old_items if it.get("output") not in mine] + items
    summary = {**meta, "items": merged}
    atomic_write_text(path, json.dumps(summary, indent=1))
    return summary

