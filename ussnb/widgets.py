"""The widgets of the notebooks' interactive cells (``INTERACTIVE=True``; imported only by the notebooks, needs
ipywidgets).

Each panel holds its controls and an output area, and shows itself when it is the last value of a cell
(``_ipython_display_``). Its callbacks are plain methods, so the tests drive them without a browser: set a
control's value (or call the method) and read :attr:`Area.shown`, the record of what the output area was
given. What a student can get wrong — a class the model does not know, a filter that matches nothing, a class
of which nothing is found in the clip — appears as a message in the output area, never as a traceback (an
exception raised in a widget callback would otherwise only reach JupyterLab's log console).

============  ====================  ==========================================================================
notebook      panel                 what it does
============  ====================  ==========================================================================
01            :class:`ClipPicker`   a test clip → its log-mel, true events, frame probabilities, a player
03            :class:`SimilarClasses`  a class → its most similar classes (cosine of class-average conditions)
05            :class:`SeparationPicker`  filter + pick classes → "separate": a wav per class (with progress),
                                    players and the spectrogram figure
06            :class:`ClassFilter`  benchmark + class filter → the per-class SDRi figure and table
============  ====================  ==========================================================================
"""
from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
from IPython.display import HTML, Audio, display

from .errors import UssnbError

SILENT_PEAK = 1e-4  # a separated track whose peak stays below this (full scale 1) holds nothing of the class


class Area:
    """An output area (``.out``, an ipywidgets ``Output``) and the record of what it was given (``.shown``:
    figures, players, HTML and message strings, in order), kept so callbacks can be checked without a
    browser. In a kernel everything shown goes to the ``Output`` widget; a figure is closed once shown (it
    would otherwise be drawn a second time when the cell ends)."""

    def __init__(self):
        self.out = widgets.Output()
        self.shown: list[Any] = []

    def clear(self) -> None:
        """Forget what was shown; the area empties when the next output arrives (no flicker on a redraw)."""
        self.shown = []
        self.out.clear_output(wait=True)

    def show(self, *objects: Any) -> None:
        import matplotlib.figure

        self.shown.extend(objects)
        with self.out:
            display(*objects)
        for obj in objects:
            if isinstance(obj, matplotlib.figure.Figure):
                from .plots import pyplot

                pyplot().close(obj)

    def message(self, text: str, kind: str = "error") -> None:
        """A short message (``kind`` error | warning | info) instead of a traceback."""
        colour = {"error": "#b00020", "warning": "#8a5a00", "info": "#333"}[kind]
        self.show(HTML(f'<div class="ussnb-message ussnb-{kind}" style="color:{colour}">'
                       f'{"" if kind == "info" else kind + ": "}{html.escape(text)}</div>'))

    @property
    def messages(self) -> list[str]:
        """The text of every message shown since the last :meth:`clear` (with its ``error:`` prefix)."""
        import re

        return [html.unescape(re.sub(r"<[^>]+>", "", obj.data)) for obj in self.shown
                if isinstance(obj, HTML) and "ussnb-message" in obj.data]

    def guarded(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with any exception shown as a message (a kit error as it is, anything else
        with its type) instead of a traceback; None then."""
        try:
            return fn(*args, **kwargs)
        except UssnbError as exc:
            self.message(str(exc))
        except Exception as exc:  # noqa: BLE001 — a widget callback has nowhere else to report to
            self.message(f"{type(exc).__name__}: {exc}")
        return None


class _Panel:
    widget: widgets.Widget  # a box with the CSS class ussnb-<panel> (what the browser test looks for)

    def _ipython_display_(self) -> None:
        display(self.widget)


# ----------------------------------------------------------------------------------------------- 01
class ClipPicker(_Panel):
    """Notebook 01: pick a clip; see its log-mel with its clip-level tags, the true event times (hidden from
    training) and the frame probabilities ``frames[i]`` ``(frames, classes)`` of its tags, and hear it.

    ``audio(i)`` → the clip's waveform; ``events``: clip id → true events (empty when the dataset has none)."""

    def __init__(self, ds, clips: Sequence, frames: Sequence[np.ndarray], audio: Callable[[int], np.ndarray],
                 events: Mapping[str, Sequence[Mapping]] | None = None):
        self.ds, self.clips, self.frames, self.audio = ds, list(clips), frames, audio
        self.events = events or {}
        self.picker = widgets.Dropdown(options=[(c.clip_id, i) for i, c in enumerate(self.clips)],
                                       description="clip", layout=widgets.Layout(width="420px"))
        self.area = Area()
        self.picker.observe(lambda change: self.show(change["new"]), names="value")
        self.widget = widgets.VBox([self.picker, self.area.out]).add_class("ussnb-clip-picker")
        if self.clips:
            self.show(self.picker.value)

    def show(self, i: int) -> None:
        self.area.clear()
        self.area.guarded(self._show, int(i))

    def _show(self, i: int) -> None:
        from . import plots

        clip, ds = self.clips[i], self.ds
        probs = {m: np.asarray(self.frames[i])[:, ds.label_index[m]].astype(np.float32) for m in clip.labels}
        wave = self.audio(i)
        tags = ", ".join(ds.label_names.get(m, m) for m in clip.labels) or "no tags"
        fig = plots.weak_clip(wave, ds.sample_rate, clip.labels, events=self.events.get(clip.clip_id),
                              names=ds.label_names, frame_probs=probs, title=f"{clip.clip_id}: {tags}")
        self.area.show(fig, Audio(wave, rate=ds.sample_rate))


# ----------------------------------------------------------------------------------------------- 03
class SimilarClasses(_Panel):
    """Notebook 03: pick a class; see the classes whose class-average conditions are most similar to its own
    (``similarity`` ``(classes, classes)``, e.g. cosine of the eq.-9 embedding averages, rows in ``names``
    order)."""

    def __init__(self, names: Sequence[str], similarity: np.ndarray, top: int = 8):
        self.names, self.similarity, self.top = list(names), np.asarray(similarity), top
        if self.similarity.shape != (len(self.names),) * 2:
            raise ValueError(f"similarity is {self.similarity.shape}, expected {(len(self.names),) * 2}")
        self.picker = widgets.Dropdown(options=sorted(self.names, key=str.lower), description="class")
        self.area = Area()
        self.rows: list[tuple[str, float]] = []
        self.picker.observe(lambda change: self.show(change["new"]), names="value")
        self.widget = widgets.VBox([self.picker, self.area.out]).add_class("ussnb-similar-classes")
        if self.names:
            self.show(self.picker.value)

    def show(self, name: str) -> None:
        self.area.clear()
        self.area.guarded(self._show, name)

    def _show(self, name: str) -> None:
        if name not in self.names:
            raise UssnbError(f"unknown class {name!r}")
        j = self.names.index(name)
        order = np.argsort(-self.similarity[j], kind="stable")[:self.top]
        self.rows = [(self.names[o], float(self.similarity[j, o])) for o in order]
        body = "".join(f"<tr><td>{html.escape(n)}</td><td style='text-align:right'>{s:.3f}</td></tr>"
                       for n, s in self.rows)
        self.area.show(HTML(f"<table class='ussnb-similar'><caption>classes most similar to "
                            f"<b>{html.escape(name)}</b></caption><tr><th>class</th><th>cosine</th></tr>"
                            f"{body}</table>"))


# ----------------------------------------------------------------------------------------------- 05
class SeparationPicker(_Panel):
    """Notebook 05: filter the model's classes, pick one or more, press "separate".

    Each picked class is separated from ``clip_path`` by the run's separator (``bundle``: a
    :class:`~ussnb.separation.SeparationBundle`; the streamed :func:`~ussnb.separation.separate_file`, the
    same path as ``ussnb separate --query``) into ``out_dir/<class slug>.wav``, with a progress bar in the
    output area; then a player per class and the spectrograms of the mixture and every separated class
    (:func:`~ussnb.plots_separation.query_figure`). With nothing picked, the filter's text is the query (a
    class name, MID or index; an unknown one is answered with the closest names). ``preselect``: classes picked
    at the start (the notebook passes what the tagger detected in the clip).
    """

    def __init__(self, bundle, clip_path: str | os.PathLike, out_dir: str | os.PathLike, mixture: np.ndarray, *,
                 preselect: Sequence[str] = (), segment_seconds: float = 2.0, overlap: float = 0.25,
                 view_seconds: float = 60.0, progress: bool = True):
        self.bundle, self.clip_path, self.out_dir = bundle, Path(clip_path), Path(out_dir)
        self.mixture, self.sample_rate = np.asarray(mixture, np.float32), bundle.sample_rate
        self.segment_seconds, self.overlap, self.view_seconds, self.progress = (segment_seconds, overlap,
                                                                                 view_seconds, progress)
        self.options = sorted(bundle.names, key=str.lower)
        self.filter = widgets.Text(placeholder="filter labels, e.g. 'dog'", description="filter")
        self.picker = widgets.SelectMultiple(options=self.options, rows=10, description="classes",
                                             value=[n for n in preselect if n in self.options])
        self.button = widgets.Button(description="separate", button_style="primary", icon="play")
        self.status = widgets.HTML()
        self.area = Area()
        self.results: dict[str, Path] = {}  # class → wav of the last "separate"
        self.filter.observe(lambda change: self.on_filter(change["new"]), names="value")
        self.button.on_click(lambda _: self.separate())
        self.widget = widgets.VBox([self.filter, self.picker, widgets.HBox([self.button, self.status]),
                                    self.area.out]).add_class("ussnb-separation-picker")
        if preselect and not self.picker.value:
            self._status("none of the detected classes is a class of the model: pick classes yourself")
        elif not preselect:
            self._status("nothing was detected in this clip: pick classes yourself")

    def _status(self, text: str) -> None:
        self.status.value = f"<span class='ussnb-status'>{html.escape(text)}</span>"

    def on_filter(self, text: str) -> None:
        text = text.strip().lower()
        matches = [o for o in self.options if text in o.lower()]
        keep = [v for v in self.picker.value if v in matches]
        self.picker.options = matches
        self.picker.value = keep
        if not matches:
            self._status(f"no class contains {text!r}; \"separate\" asks the model for it by name, MID or index")
        else:
            self._status(f"{len(matches)} of {len(self.options)} classes")

    def queries(self) -> list[str]:
        """What "separate" will separate: the picked classes, else the filter's text."""
        picked = list(self.picker.value)
        return picked or ([self.filter.value.strip()] if self.filter.value.strip() else [])

    def separate(self) -> dict[str, Path]:
        """The button's callback: separate every query (:meth:`queries`), show players and the figure;
        returns class → wav written (an empty dict when nothing could be separated)."""
        self.area.clear()
        self.results = {}
        names = self.queries()
        if not names:
            self.area.message("pick one or more classes (or type a class name into the filter)", "warning")
            return self.results
        self.button.disabled, self.button.description = True, "separating…"
        t0 = time.perf_counter()
        waves: dict[str, np.ndarray] = {}
        try:
            for i, name in enumerate(names, 1):
                self._status(f"separating {name} ({i} of {len(names)})…")
                done = self.area.guarded(self._separate_one, name)
                if done is None:
                    continue
                label, path, wave = done
                self.results[label] = path
                waves[label] = wave
                if float(np.abs(wave).max(initial=0.0)) < SILENT_PEAK:
                    self.area.message(f"nothing of {label!r} detected in this clip: its separated track is "
                                      f"silent ({path.name})", "warning")
                    continue
                self.area.show(HTML(f"<div class='ussnb-track'><b>{html.escape(label)}</b> → "
                                    f"<code>{html.escape(str(path))}</code></div>"),
                               Audio(wave, rate=self.sample_rate))
            if waves:
                from . import plots_separation

                fig = plots_separation.query_figure(self.mixture, self.sample_rate, waves,
                                                    title=f"{self.clip_path.name}: picked classes")
                self.area.show(fig)
        finally:
            self.button.disabled, self.button.description = False, "separate"
        failed = len(names) - len(self.results)
        self._status(f"{len(self.results)} separated" + (f", {failed} failed" if failed else "")
                     + f" in {time.perf_counter() - t0:.1f} s")
        return self.results

    def _separate_one(self, name: str) -> tuple[str, Path, np.ndarray]:
        from .audio import load_audio
        from .separation import resolve_query, separate_file, slugify

        label = resolve_query(name, self.bundle).label  # an unknown class fails here, before any work
        path = self.out_dir / f"{slugify(label)}.wav"
        with self.area.out:  # the progress bar (tqdm) goes to the output area
            separate_file(self.clip_path, path, label, self.bundle, resample=True, progress=self.progress,
                          segment_seconds=self.segment_seconds, overlap=self.overlap)
        return label, path, load_audio(path, self.sample_rate, duration=self.view_seconds)


# ----------------------------------------------------------------------------------------------- 06
class ClassFilter(_Panel):
    """Notebook 06: pick a benchmark and filter its classes by part of their name; see the per-class median
    SDRi figure (Fig. 7) and table of the matching classes. ``per_class[benchmark][class]``: the
    ``pair_metrics`` per-class entries (``sdri_avg``, ``sdri_oracle``, ...)."""

    def __init__(self, per_class: Mapping[str, Mapping[str, Mapping[str, Any]]]):
        self.per_class = {k: v for k, v in per_class.items() if v}
        names = list(self.per_class)
        self.benchmark = widgets.Dropdown(options=names, value=names[0] if names else None,
                                          description="benchmark")
        self.filter = widgets.Text(value="", description="filter", placeholder="part of a class name, e.g. drum")
        self.area = Area()
        self.chosen: list[str] = []
        self.benchmark.observe(lambda _: self.redraw(), names="value")
        self.filter.observe(lambda _: self.redraw(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.benchmark, self.filter]), self.area.out]
                                   ).add_class("ussnb-class-filter")
        self.redraw()

    def redraw(self) -> None:
        self.area.clear()
        self.area.guarded(self._redraw)

    def _redraw(self) -> None:
        if not self.per_class:
            self.area.message("no benchmark with per-class results in this run", "warning")
            return
        import pandas as pd

        from . import plots_evaluation

        name, text = self.benchmark.value, self.filter.value.strip().lower()
        per = self.per_class[name]
        self.chosen = sorted(c for c in per if text in c.lower())
        if not self.chosen:
            self.area.message(f"no class of {name} matches {self.filter.value.strip()!r}", "warning")
            return
        fig = plots_evaluation.per_class_sdri(per, classes=self.chosen,
                                              title=f"{name}: {len(self.chosen)} of {len(per)} classes")
        self.area.show(fig, pd.DataFrame(per).T.loc[self.chosen].round(2))
