"""The offline default dataset, **starter**: real recordings shipped by Debian and PyPI packages, laid into
AudioSet-style weakly labelled 10 s clips at 32 kHz by :func:`ussnb.data.compose.compose_weak_dataset`.

Where the sounds come from (all installed by ``apt-get`` / ``pip``, nothing downloaded at run time):

============================  ==========================================================================
hydrogen-drumkits             recorded acoustic drum kits; each kit's ``drumkit.xml`` names its instruments
sonic-pi-samples              freesound recordings (CC0): kit drums by one drummer, tabla strokes, a tabla loop
lmms-common                   sampled drums and single-instrument recordings (piano, organ, violin, ...)
asterisk-core-sounds-*-g722   studio-recorded telephone prompts, one speaker per package (see SPEAKERS)
klettres-data                 recorded letters and syllables, one or two speakers per language
music21 + fluid-soundfont-gm  Bach chorale parts rendered with fluidsynth and the FluidR3 GM soundfont
                              (recorded instrument samples, *rendered*: one sampled instrument per class)
============================  ==========================================================================

Every event carries its AudioSet MID (:data:`STARTER_CLASSES`), its package and its licence. The unit that
is kept inside one split is the source ``recording``; recordings are grouped (``<group>::<take>``) by the
physical source they come from — a drum kit, a speaker, a soundfont instrument — and when a class has at
least three groups whole groups go to one split, so test sounds come from kits/speakers not heard in
training (see :func:`assign_group_splits`).

Entry points: :func:`check_requirements`, :func:`install_requirements`, :func:`collect_starter_events`,
:func:`prepare_starter`, :func:`starter_info`. The package: ``catalogue`` (classes, licences, constants),
``requirements`` (the packages it needs), ``samples`` / ``speech`` / ``chorales`` (the three kinds of source:
recorded samples, recorded speech, rendered chorale parts), ``events`` (the source events and their split);
this module composes the clips and writes ``SOURCES.md``.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from ....errors import DataError
from ....paths import data_root
from ...compose import SPLITS, SourceEvent, compose_weak_dataset, is_complete
from .catalogue import (MAX_EVENT_SECONDS, PACKAGE_LICENCES, RECIPE_VERSION, RENDER_SOURCE, SAMPLE_RATE,
                        STARTER_CLASSES, select_classes)
from .chorales import RENDER_SPECS, RenderSpec
from .events import assign_group_splits, collect_starter_events, recording_group
from .requirements import (STARTER_APT_PACKAGES, STARTER_PIP_PACKAGES, check_requirements, install_requirements,
                           missing_requirements)
from .speech import SPEAKERS, SpeechSource


def starter_dir(root: str | os.PathLike | None = None) -> Path:
    return data_root(root) / "starter"


def prepare_starter(
    root: str | os.PathLike | None = None,
    *,
    n_train: int = 1500,
    n_validation: int = 200,
    n_test: int = 300,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    classes: Iterable[str] | None = None,
    pieces_per_class: int = 30,
    max_per_speaker: int = 60,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Build ``<data root>/starter/`` (idempotent) and return its path.

    Writes the weakly labelled clips (``train/``, ``validation/``, ``test/`` with ``metadata.jsonl``), the
    hidden ``events.jsonl``, ``info.json``, ``SOURCES.md`` and the ``.complete`` marker. When the marker
    records the same parameters the folder is returned at once (``force=True`` rebuilds).

    Args:
        root: data root (default :func:`ussnb.paths.data_root`, i.e. ``USSNB_DATA`` or ``./data``).
        n_train, n_validation, n_test: clips per split (10 s each).
        seed: the split of recordings and the composition of clips.
        classes, pieces_per_class, max_per_speaker: see :func:`collect_starter_events` (for small test sets).
        cache_dir: renders and decoded speech (default ``$USSNB_DATA/.cache/starter``, shared by every size variant).
    """
    out = starter_dir(root)
    names = select_classes(classes)
    marker = {"recipe": "starter", "version": RECIPE_VERSION, "seed": seed,
              "n_clips": {"train": n_train, "validation": n_validation, "test": n_test},
              "classes": names, "pieces_per_class": pieces_per_class, "max_per_speaker": max_per_speaker}
    if not force and is_complete(out, marker) and (out / "SOURCES.md").is_file():
        return out
    check_requirements()
    cache = Path(cache_dir) if cache_dir is not None else data_root() / ".cache" / "starter"  # shared by all sizes
    events = collect_starter_events(cache, progress, classes=names, pieces_per_class=pieces_per_class,
                                    max_per_speaker=max_per_speaker)
    split_of, modes = assign_group_splits(events, seed=seed)
    groups: dict[str, set[str]] = defaultdict(set)
    for ev in events:
        groups[ev.label].add(recording_group(ev.recording))
    extra = {
        "recipe": "starter", "recipe_version": RECIPE_VERSION,
        "split_mode": modes,
        "groups_per_class": {label: len(g) for label, g in sorted(groups.items())},
        "packages": sorted({ev.source for ev in events}),
    }
    compose_weak_dataset(
        events, out, name="starter",
        n_clips={"train": n_train, "validation": n_validation, "test": n_test},
        seed=seed, sample_rate=SAMPLE_RATE, clip_seconds=10.0, max_event_seconds=MAX_EVENT_SECONDS,
        split_of=split_of, extra_info=extra, marker_params=marker, progress=progress,
    )
    write_sources_md(out, events, split_of, modes)
    return out


def write_sources_md(out_dir: str | os.PathLike, events: Sequence[SourceEvent], split_of: dict[str, str],
                     modes: dict[str, str]) -> Path:
    """Write ``SOURCES.md``: packages, licences, counts per package and per class."""
    out_dir = Path(out_dir)
    per_source: dict[str, dict] = {}
    per_licence: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    per_class: dict[str, dict] = {}
    for ev in events:
        s = per_source.setdefault(ev.source, {"events": 0, "recordings": set(), "classes": set()})
        s["events"] += 1
        s["recordings"].add(ev.recording)
        s["classes"].add(ev.label)
        per_licence[ev.source][ev.licence].add(ev.recording)
        c = per_class.setdefault(ev.label, {"mid": ev.mid, "recordings": set(), "groups": set(),
                                            "sources": defaultdict(set), "events": 0,
                                            "splits": defaultdict(set)})
        c["events"] += 1
        c["recordings"].add(ev.recording)
        c["groups"].add(recording_group(ev.recording))
        c["sources"][ev.source].add(ev.recording)
        c["splits"][split_of[ev.recording]].add(ev.recording)
    lines = [
        "# starter dataset — sources",
        "",
        "Made by `ussnb data prepare starter` (`ussnb/data/recipes/starter/`) from recordings that Debian",
        "and PyPI packages ship. Each *event* is one excerpt (≤ 4 s) of a *recording*; all excerpts of a",
        "recording stay in one split. A *group* is the physical source of recordings (a drum kit, a",
        "freesound uploader, a speaker, one soundfont instrument).",
        "",
        "Instrument classes marked *rendered* are Bach chorale parts from the music21 corpus rendered with",
        "fluidsynth and FluidR3_GM.sf2: the soundfont holds recordings of real instruments, but every piece",
        "of one class is played by the same sampled instrument, so a 'recording' there means a distinct",
        "piece excerpt, not a distinct performer or instrument.",
        "",
        "## Packages",
        "",
        "| package | licence | classes | recordings | events |",
        "|---|---|---:|---:|---:|",
    ]
    for source in sorted(per_source):
        s = per_source[source]
        lines.append(f"| {source} | {PACKAGE_LICENCES.get(source, '')} | {len(s['classes'])} | "
                     f"{len(s['recordings'])} | {s['events']} |")
    lines += ["", "### Licences of the recordings used", "", "| package | licence | recordings |", "|---|---|---:|"]
    for source in sorted(per_licence):
        for licence in sorted(per_licence[source]):
            lines.append(f"| {source} | {licence} | {len(per_licence[source][licence])} |")
    lines += ["", "## Classes", "",
              "| AudioSet MID | class | sources (recordings) | recordings | groups | events | "
              "train / val / test recordings | split |",
              "|---|---|---|---:|---:|---:|---|---|"]
    order = {name: i for i, (_, name) in enumerate(STARTER_CLASSES)}
    for label in sorted(per_class, key=lambda n: order.get(n, 999)):
        c = per_class[label]
        sources = ", ".join(f"{s} ({len(r)})" for s, r in sorted(c["sources"].items()))
        splits = " / ".join(str(len(c["splits"].get(s, ()))) for s in SPLITS)
        rendered = " *rendered*" if RENDER_SOURCE in c["sources"] else ""
        lines.append(f"| `{c['mid']}` | {label}{rendered} | {sources} | {len(c['recordings'])} | "
                     f"{len(c['groups'])} | {c['events']} | {splits} | {modes.get(label, '')} |")
    lines += ["", "## Groups per class", ""]
    for label in sorted(per_class, key=lambda n: order.get(n, 999)):
        groups = sorted(per_class[label]["groups"])
        lines.append(f"- **{label}**: " + "; ".join(groups))
    lines += ["", "## Known limitations", "",
              "- Speakers: female speech comes from 4 speakers (Allison Smith recorded both the en and es",
              "  prompts), male speech from 8 folders (9 speakers), child speech from a single child (pt_BR",
              "  KLettres, files with median F0 < 235 Hz dropped because the father recorded some).",
              "- Speech sexes follow the packages' own metadata (asterisk folder names, KLettres credits) and",
              "  were checked only by median F0 per file, not by listening.",
              "- Tambourine has 2 physical tambourines, Tabla 2 (one player's strokes + one loop); their",
              "  splits are by recording, so test excerpts come from instruments also heard in training.",
              "- Hi-hat is an AudioSet child of Cymbal; here a crash/ride/china/splash is labelled Cymbal and",
              "  a hi-hat only Hi-hat (leaf labels, as AudioSet annotators mostly did).",
              "- *Choir* is FluidR3's 'Choir Aahs' patch (sampled voices singing 'aah'), not a recorded choir.",
              ""]
    path = out_dir / "SOURCES.md"
    path.write_text("\n".join(lines))
    return path


def starter_info(root: str | os.PathLike | None = None) -> dict:
    """Summary of a prepared starter set (for ``ussnb data info starter --json``).

    Keys: ``path``, ``complete``, ``n_classes``, ``n_clips`` {train, validation, test}, ``hours``,
    ``n_packages``, ``packages``, ``min_recordings_per_class``, ``classes`` (mid, name, n_recordings,
    sources, recordings_per_split), ``sources``, ``split_mode``.
    """
    out = starter_dir(root)
    info_path = out / "info.json"
    if not info_path.is_file():
        raise DataError(f"the starter dataset is not prepared in {out}: run `ussnb data prepare starter`")
    info = json.loads(info_path.read_text())
    return {
        "name": "starter",
        "path": str(out),
        "complete": is_complete(out),
        "n_classes": info["n_classes"],
        "n_clips": info["n_clips"],
        "hours": info["hours"],
        "n_packages": info["n_packages"],
        "packages": info.get("packages", [s["source"] for s in info.get("sources", [])]),
        "min_recordings_per_class": info["min_recordings_per_class"],
        "classes": info.get("classes", []),
        "sources": info.get("sources", []),
        "split_mode": info.get("split_mode", {}),
        "sample_rate": info.get("sample_rate", SAMPLE_RATE),
        "clip_seconds": info.get("clip_seconds", 10.0),
    }


__all__ = [
    "STARTER_CLASSES", "STARTER_APT_PACKAGES", "STARTER_PIP_PACKAGES", "PACKAGE_LICENCES", "SPEAKERS",
    "RENDER_SPECS", "RENDER_SOURCE", "RECIPE_VERSION", "SAMPLE_RATE", "MAX_EVENT_SECONDS", "RenderSpec",
    "SpeechSource", "check_requirements", "install_requirements", "missing_requirements",
    "collect_starter_events", "recording_group", "assign_group_splits", "prepare_starter",
    "write_sources_md", "starter_info", "starter_dir",
]
