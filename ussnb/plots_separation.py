"""Figures of separation results (notebook 05): the Fig. 6 analogue of the paper — the tracks of hierarchical
separation per ontology level with their labels — and where each node was detected. Every function returns the
Figure (and saves it if ``path``)."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

from .plots import pyplot, log_mel, save

# one track: (label, waveform, active intervals [[start, end], ...] in seconds)
TrackSpec = tuple[str, np.ndarray, Sequence[Sequence[float]]]


def _shade(ax, intervals, duration, color="tab:orange"):
    """A thin bar at the top of ``ax`` over each active interval (axes-fraction y)."""
    for start, end in intervals:
        ax.axvspan(start, min(end, duration), ymin=0.93, ymax=1.0, color=color, alpha=0.9, lw=0)


def _draw(ax, wave, sr, kind, vmin=None, vmax=None):
    duration = len(wave) / sr
    if kind == "waveform":
        t = np.arange(len(wave)) / sr
        ax.plot(t, wave, lw=0.4, color="tab:blue")
        peak = float(np.max(np.abs(wave))) if len(wave) else 1.0
        ax.set_ylim(-1.05 * max(peak, 1e-3), 1.05 * max(peak, 1e-3))
        ax.set_yticks([])
    else:
        spec = log_mel(np.asarray(wave, np.float32), sr)
        ax.imshow(spec, origin="lower", aspect="auto", extent=(0, duration, 0, spec.shape[0]), cmap="magma",
                  vmin=vmin, vmax=vmax)
        ax.set_yticks([])
    ax.set_xlim(0, duration)


def hierarchy_figure(
    mixture: np.ndarray,
    sr: int,
    tracks: Mapping[int, Sequence[TrackSpec]],
    *,
    kind: str = "spectrogram",
    max_tracks: int = 5,
    title: str = "",
    path: str | os.PathLike | None = None,
):
    """The paper's Fig. 6 analogue: one column per ontology level, the mixture on top, then that level's
    separated tracks (most probable first) with their node labels; an orange bar marks where each node is
    active (separated), elsewhere the track is silent.

    Args:
        mixture: ``(samples,)`` the input at ``sr``.
        tracks: ``{level: [(label, wave (samples,), active intervals), ...]}``.
        kind: ``"spectrogram"`` (log-mel, dB, one colour scale for the figure) or ``"waveform"``.
        max_tracks: at most this many tracks per level are drawn (the rest are counted in the title).
    """
    if kind not in ("spectrogram", "waveform"):
        raise ValueError(f"kind must be 'spectrogram' or 'waveform', got {kind!r}")
    plt = pyplot()
    levels = sorted(tracks)
    cols = max(1, len(levels))
    rows = 1 + max([min(len(tracks[lv]), max_tracks) for lv in levels] + [1])
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols + 0.6, 1.25 * rows + 0.8), squeeze=False,
                             sharex=True)
    vmin = vmax = None
    if kind == "spectrogram":
        ref = log_mel(np.asarray(mixture, np.float32), sr)
        vmax = float(ref.max())
        vmin = vmax - 80.0
    duration = len(mixture) / sr
    for c in range(cols):
        level = levels[c] if levels else None
        ax = axes[0, c]
        _draw(ax, mixture, sr, kind, vmin, vmax)
        ax.set_title("mixture" + (f"  ·  level {level}" if level is not None else ""), fontsize=9, loc="left")
        items = list(tracks.get(level, [])) if level is not None else []
        for r in range(1, rows):
            ax = axes[r, c]
            if r - 1 < min(len(items), max_tracks):
                label, wave, active = items[r - 1]
                _draw(ax, wave, sr, kind, vmin, vmax)
                _shade(ax, active, duration)
                ax.set_title(label if len(label) <= 38 else label[:36] + "…", fontsize=8, loc="left")
            else:
                ax.axis("off")
                if r == 1 and not items:
                    ax.text(0.5, 0.5, "no active node", ha="center", va="center", fontsize=8,
                            transform=ax.transAxes)
            if r == rows - 1 and ax.axison:
                ax.set_xlabel("time (s)")
        if len(items) > max_tracks:
            axes[0, c].set_title(f"mixture  ·  level {level}  (top {max_tracks} of {len(items)} nodes)", fontsize=9,
                                 loc="left")
    fig.suptitle(title or "hierarchical separation: tracks per ontology level (orange = node active)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def activity_figure(summary: Mapping, *, true_events: Sequence[Mapping] | None = None, max_nodes: int = 12,
                    title: str = "", path: str | os.PathLike | None = None):
    """Where each node was detected: per level, one row per active node (bar = active intervals, the label
    with its max probability); optional true events (``{"label", "onset", "offset"}``) as a top panel."""
    plt = pyplot()
    levels = sorted(summary["levels"], key=int)
    duration = float(summary["duration_seconds"])
    heights = [max(1, min(len(summary["levels"][lv]["nodes"]), max_nodes)) for lv in levels]
    panels = ([max(1, len(true_events))] if true_events else []) + heights
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 0.28 * sum(panels) + 0.9 * len(panels)), squeeze=False,
                             sharex=True, gridspec_kw={"height_ratios": panels})
    axes = axes[:, 0]
    i = 0
    if true_events:
        ax = axes[0]
        for j, ev in enumerate(true_events):
            ax.barh(j, ev["offset"] - ev["onset"], left=ev["onset"], color="tab:green", height=0.6)
            ax.text(ev["onset"], j, " " + ev.get("label", ev.get("mid", "")), va="center", fontsize=7)
        ax.set_yticks([])
        ax.invert_yaxis()
        ax.set_title("true events (hidden ground truth)", fontsize=9, loc="left")
        i = 1
    for lv, ax in zip(levels, axes[i:]):
        nodes = summary["levels"][lv]["nodes"][:max_nodes]
        for j, node in enumerate(nodes):
            for start, end in node["active"]:
                ax.barh(j, end - start, left=start, color="tab:orange", height=0.6)
        ax.set_yticks(range(len(nodes)))
        ax.set_yticklabels([f"{n['label'][:28]} ({n['max_probability']:.2f})" for n in nodes], fontsize=7)
        ax.set_ylim(max(len(nodes), 1) - 0.5, -0.5)
        ax.set_title(f"level {lv}: {len(summary['levels'][lv]['nodes'])} active node(s)", fontsize=9, loc="left")
    axes[-1].set_xlim(0, duration)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(title or f"detected nodes per level (θ = {summary['threshold']})", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def query_figure(mixture: np.ndarray, sr: int, outputs: Mapping[str, np.ndarray], *, title: str = "",
                 path: str | os.PathLike | None = None):
    """Log-mel spectrograms of the mixture and of each separated output (e.g. target and residual), stacked."""
    plt = pyplot()
    items = [("mixture", mixture)] + list(outputs.items())
    fig, axes = plt.subplots(len(items), 1, figsize=(8, 1.5 * len(items) + 0.6), squeeze=False, sharex=True)
    ref = log_mel(np.asarray(mixture, np.float32), sr)
    vmax = float(ref.max())
    for ax, (label, wave) in zip(axes[:, 0], items):
        _draw(ax, wave, sr, "spectrogram", vmax - 80.0, vmax)
        ax.set_title(label, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title or "query-conditioned separation", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def detection_figure(detection, *, path=None):
    """Found-rate and false nodes per clip per level, before and after calibrating θ (stage 05)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    keys = list(detection)
    levels = sorted({int(lv) for d in detection.values() for lv in d})
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        d = detection[key]
        x = np.arange(len(levels)) + (i - (len(keys) - 1) / 2) * width
        for ax, metric in zip(axes, ("found_rate", "false_nodes_per_clip")):
            vals = [d.get(lv, d.get(str(lv), {})).get(metric) or 0.0 for lv in levels]
            thetas = [d.get(lv, d.get(str(lv), {})).get("threshold") for lv in levels]
            ax.bar(x, vals, width, label=f"{key} (θ " + ", ".join(f"{t:g}" for t in thetas if t is not None) + ")")
    for ax, title in zip(axes, ("found in time (fraction of true sounds)", "false nodes per clip")):
        ax.set_xticks(np.arange(len(levels)))
        ax.set_xticklabels([f"level {lv}" for lv in levels])
        ax.set_title(title, fontsize=9)
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)

