"""Matplotlib figures used by the notebooks. Every function returns the Figure (and saves it if ``path``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def pyplot():
    """``matplotlib.pyplot``, on the Agg backend outside a notebook unless ``MPLBACKEND`` says otherwise."""
    import matplotlib

    if os.environ.get("MPLBACKEND") is None and not _in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def save(fig, path: str | os.PathLike | None):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def log_mel(wave: np.ndarray, sr: int, n_mels: int = 64, hop: int | None = None) -> np.ndarray:
    """``(mels, frames)`` log-mel (dB) for display."""
    import librosa

    hop = hop or sr // 100
    mel = librosa.feature.melspectrogram(y=wave, sr=sr, n_fft=1024, hop_length=hop, n_mels=n_mels, fmin=50,
                                         fmax=min(14000, sr // 2))
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)


def class_counts(counts: Mapping[str, Mapping[str, int]], names: Mapping[str, str], path=None, title=""):
    """Horizontal stacked bars: clips tagged with each class, per split. ``counts[split][mid]``."""
    plt = pyplot()
    mids = sorted(names, key=lambda m: names[m].lower())
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(mids) + 1.2))
    left = np.zeros(len(mids))
    for split, per in counts.items():
        vals = np.array([per.get(m, 0) for m in mids], dtype=float)
        ax.barh([names[m] for m in mids], vals, left=left, label=split)
        left += vals
    ax.invert_yaxis()
    ax.set_xlabel("clips tagged with the class")
    ax.set_title(title or "clip-level tags per class")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save(fig, path)


def weak_clip(
    wave: np.ndarray,
    sr: int,
    tags: Sequence[str],
    *,
    events: Sequence[Mapping] | None = None,
    names: Mapping[str, str] | None = None,
    frame_probs: Mapping[str, np.ndarray] | None = None,
    title: str = "",
    path=None,
):
    """The weak-label picture (paper Fig. 2): a clip's log-mel with its clip-level tags only; optionally the
    true event times (hidden from training) and frame probabilities of its tags (100 frames/s)."""
    plt = pyplot()
    names = names or {}
    rows = 2 + (frame_probs is not None)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.0 * rows + 0.6), sharex=True,
                             gridspec_kw={"height_ratios": [3] + [1.2] * (rows - 1)})
    seconds = wave.shape[0] / sr
    axes[0].imshow(log_mel(wave, sr), origin="lower", aspect="auto", extent=[0, seconds, 0, 64], cmap="magma")
    axes[0].set_ylabel("mel bin")
    axes[0].set_title(title or "weak label: " + ", ".join(names.get(t, t) for t in tags))
    ax = axes[1]
    ordered = list(dict.fromkeys(list(tags) + [e["mid"] for e in (events or [])]))
    for row, mid in enumerate(ordered):
        ax.axhline(row, color="0.9", lw=8, zorder=0)
        for ev in events or []:
            if ev["mid"] == mid:
                ax.plot([ev["onset"], ev["offset"]], [row, row], lw=6,
                        color="tab:green" if ev.get("labelled", True) else "tab:gray", solid_capstyle="butt")
    ax.set_yticks(range(len(ordered)))
    ax.set_yticklabels([names.get(m, m) + ("" if m in tags else " (untagged)") for m in ordered], fontsize=8)
    ax.set_ylim(len(ordered) - 0.5, -0.5)
    ax.set_title("true event times (kept aside, never seen by training)" if events else "tags", fontsize=9)
    if frame_probs is not None:
        ax = axes[2]
        for mid, p in frame_probs.items():
            ax.plot(np.arange(len(p)) / 100.0, p, label=names.get(mid, mid))
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("p_SED")
        ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return save(fig, path)


def training_curves(history: Sequence[Mapping], keys: Sequence[str] = ("loss",), *, eval_keys: Sequence[str] = (),
                    references: Mapping[str, float] | None = None, title: str = "", path=None):
    """Loss per step (smoothed) on the left axis, evaluation figures (e.g. validation mAP / SDRi) on the right,
    with optional horizontal reference lines (e.g. the x/2 floor and the IRM ceiling)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    steps = np.array([h["step"] for h in history])
    for key in keys:
        vals = np.array([h.get(key, np.nan) for h in history], dtype=float)
        ax.plot(steps, vals, color="0.75", lw=0.6)
        w = max(1, len(vals) // 50)
        if len(vals) >= w:
            smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1:], smooth, label=f"{key} (smoothed)")
    ax.set_xlabel("step")
    ax.set_ylabel(", ".join(keys))
    if eval_keys:
        ax2 = ax.twinx()
        for i, key in enumerate(eval_keys):
            pts = [(h["step"], h[key]) for h in history if key in h]
            if pts:
                ax2.plot(*zip(*pts), "o-", color=f"C{i + 1}", label=key)
        for j, (name, value) in enumerate((references or {}).items()):
            ax2.axhline(value, ls="--", color=f"C{j + 4}", lw=1, label=name)
        ax2.set_ylabel(", ".join(eval_keys))
        ax2.legend(loc="center right", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def bars(values: Mapping[str, Mapping[str, float]], *, ylabel: str = "", title: str = "", path=None):
    """Grouped bars: ``values[group][series]``."""
    plt = pyplot()
    groups = list(values)
    series = list(dict.fromkeys(s for g in groups for s in values[g]))
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups) * max(1, len(series)) / 2, 3.2))
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        ax.bar(np.arange(len(groups)) + i * width, [values[g].get(s, np.nan) for g in groups], width, label=s)
    ax.set_xticks(np.arange(len(groups)) + width * (len(series) - 1) / 2)
    import textwrap

    ax.set_xticklabels(["\n".join(textwrap.wrap(g.replace("_", " "), 16)) for g in groups], fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def anchor_figure(wave: np.ndarray, sr: int, probs: np.ndarray, start: int, duration: float, *,
                  label: str, anchor_tags: Mapping[str, float] | None = None, events: Sequence[Mapping] | None = None,
                  path=None):
    """The paper's Fig. 4 for one clip: log-mel, the frame probability of the sampled tag with the chosen
    anchor block (and the true events of that class, if known), and the tagging of the anchor segment."""
    plt = pyplot()
    rows = 2 + (anchor_tags is not None)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.1 * rows + 0.5),
                             gridspec_kw={"height_ratios": [3, 1.6] + [1.8] * (rows - 2)})
    seconds = wave.shape[0] / sr
    axes[0].imshow(log_mel(wave, sr), origin="lower", aspect="auto", extent=[0, seconds, 0, 64], cmap="magma")
    axes[0].axvspan(start / sr, start / sr + duration, color="cyan", alpha=0.25)
    axes[0].set_ylabel("mel bin")
    axes[0].set_title(f"anchor for '{label}' ({duration:g} s, cyan)")
    t = np.arange(len(probs)) / 100.0
    axes[1].plot(t, probs, color="tab:blue", label=f"p_SED(t, {label})")
    axes[1].axvspan(start / sr, start / sr + duration, color="cyan", alpha=0.3, label="anchor")
    for i, ev in enumerate(events or []):
        axes[1].plot([ev["onset"], ev["offset"]], [-0.06, -0.06], lw=5, color="tab:green",
                     label="true event" if i == 0 else None, solid_capstyle="butt")
    axes[1].set_xlim(0, seconds)
    axes[1].set_ylim(-0.12, 1.02)
    axes[1].set_xlabel("time (s)")
    axes[1].legend(fontsize=7, loc="upper right")
    if anchor_tags is not None:
        names = list(anchor_tags)[:8]
        axes[2].barh(names[::-1], [anchor_tags[n] for n in names][::-1], color="tab:orange")
        axes[2].set_xlim(0, 1)
        axes[2].set_title("tagging of the anchor segment", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def precision_plot(precision: Mapping[str, Mapping[str, float]], path=None):
    """Mining precision per strategy against anchor duration τ."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for strategy, per in precision.items():
        durations = sorted(per, key=float)
        ax.plot([float(d) for d in durations], [per[d] for d in durations], "o-", label=strategy)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("anchor duration τ (s)")
    ax.set_ylabel("precision (overlap ≥ 50 %)")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("anchor mining precision against the true event times")
    fig.tight_layout()
    return save(fig, path)


def embedding_map(points: np.ndarray, labels: Sequence[int], names: Sequence[str], title: str = "", path=None):
    """2-D scatter (e.g. PCA of anchor conditions) coloured by class."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 5.5))
    labels = np.asarray(labels)
    cmap = plt.get_cmap("tab20")
    for i, k in enumerate(np.unique(labels)):
        sel = labels == k
        ax.scatter(points[sel, 0], points[sel, 1], s=10, color=cmap(i % 20), label=names[k] if i < 20 else None)
        c = points[sel].mean(axis=0)
        ax.annotate(names[k][:18], c, fontsize=6)
    ax.set_title(title)
    ax.legend(fontsize=5, ncol=2, loc="best", markerscale=1.5)
    fig.tight_layout()
    return save(fig, path)


def similarity_matrix(matrix: np.ndarray, names: Sequence[str], title: str = "", path=None):
    plt = pyplot()
    n = len(names)
    fig, ax = plt.subplots(figsize=(0.22 * n + 2.5, 0.22 * n + 2))
    im = ax.imshow(matrix, cmap="viridis", vmin=min(0.0, float(np.nanmin(matrix))), vmax=1.0)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels([s[:16] for s in names], rotation=90, fontsize=6)
    ax.set_yticklabels([s[:16] for s in names], fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


def sweep_bars(arms: Sequence[str], mean: Sequence[float | None], spread: Sequence[float | None], *,
               floor: float | None = None, ceiling: float | None = None, paper: Mapping[str, float] | None = None,
               paper_label: str = "paper", ours_label: str = "ours", ylabel: str = "SDRi (dB)", title: str = "",
               path=None):
    """An ablation sweep: our mean per arm with ± spread bars and the x/2 floor / IRM ceiling lines (left), the
    paper's numbers of the same arms (right, when given; their own dataset, so their own axis)."""
    plt = pyplot()
    n = len(arms)
    has_paper = bool(paper) and any(a in paper for a in arms)
    fig, axes = plt.subplots(1, 2 if has_paper else 1, figsize=(2.0 + 0.9 * n * (2 if has_paper else 1), 3.4),
                             squeeze=False)
    ax = axes[0, 0]
    x = np.arange(n)
    vals = np.array([np.nan if v is None else v for v in mean], dtype=float)
    err = np.array([0.0 if s is None else s for s in spread], dtype=float)
    ax.bar(x, vals, 0.6, yerr=err, capsize=4, color="tab:blue", label="ours (mean ± spread)")
    if floor is not None:
        ax.axhline(floor, color="0.4", ls="--", lw=1, label=f"floor x/2 {floor:.2f}")
    if ceiling is not None:
        ax.axhline(ceiling, color="tab:green", ls=":", lw=1.2, label=f"IRM ceiling {ceiling:.2f}")
    ax.set_xticks(x)
    ax.set_xticklabels(arms, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(ours_label, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    if has_paper:
        pax = axes[0, 1]
        pv = [paper.get(a, np.nan) for a in arms]
        pax.bar(x, pv, 0.6, color="tab:orange")
        pax.set_xticks(x)
        pax.set_xticklabels(arms, rotation=20, ha="right", fontsize=8)
        pax.set_title(paper_label, fontsize=9)
        pax.set_ylabel(ylabel)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)
