"""Figures of the evaluation stage (notebook 06): per-class SDRi (the paper's Fig. 7), music stems, speech.

Every function returns the Figure (and saves it if ``path``)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .plots import pyplot, save


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def per_class_sdri(per_class: Mapping[str, Mapping[str, float | None]], *, title: str = "",
                   classes: Sequence[str] | None = None, path=None):
    """Fig. 7: per-class median SDRi, classes sorted by the average-condition SDRi (oracle when a class has no
    average condition), average vs oracle condition as bars, the IRM ceiling and the x/2 floor as markers.

    ``per_class[name]`` holds ``sdri_avg``, ``sdri_oracle``, ``irm_sdri``, ``trivial_sdri`` (None = absent);
    ``classes`` restricts the plot (the interactive class filter)."""
    plt = pyplot()
    names = [c for c in (classes if classes is not None else per_class) if c in per_class]

    def key(c):
        v = per_class[c]
        a = v.get("sdri_avg")
        return (0 if a is not None else 1, -_num(a if a is not None else v.get("sdri_oracle")), c)

    names = sorted(names, key=key)
    x = np.arange(len(names))
    get = lambda k: np.array([_num(per_class[c].get(k)) for c in names])  # noqa: E731
    fig, ax = plt.subplots(figsize=(max(5.0, 0.42 * len(names) + 1.5), 4.2))
    w = 0.4
    ax.bar(x - w / 2, get("sdri_avg"), w, label="average condition (eq. 9)", color="tab:blue")
    ax.bar(x + w / 2, get("sdri_oracle"), w, label="oracle condition (clean target)", color="tab:orange")
    ax.plot(x, get("irm_sdri"), "k_", markersize=14, mew=2, label="IRM ceiling")
    ax.plot(x, get("trivial_sdri"), "_", color="tab:red", markersize=14, mew=2, label="floor ŝ = x/2")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([n[:24] for n in names], rotation=70, ha="right", fontsize=8)
    ax.set_ylabel("SDRi (dB), per-class median")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="best")  # "best": never over the IRM marker of a lone filtered class
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save(fig, path)


def music_stems(summary: Mapping, *, title: str = "", path=None):
    """museval SDR and SDRi per stem beside the IRM ceiling and the x/2 floor (SDRi)."""
    plt = pyplot()
    stems = list(summary["museval_sdr"])
    x = np.arange(len(stems))
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    w = 0.27
    ax.bar(x - w, [_num(summary["museval_sdr"][s]) for s in stems], w, label="museval SDR")
    ax.bar(x, [_num(summary["sdri_per_stem"][s]) for s in stems], w, label="SDRi (class-average query)")
    ax.bar(x + w, [_num(summary["irm_sdri_per_stem"][s]) for s in stems], w, label="IRM SDRi", color="0.6")
    ax.plot(x, [_num(summary.get("trivial_sdri_per_stem", {}).get(s)) for s in stems], "_", color="tab:red",
            markersize=18, mew=2, label="SDRi floor ŝ = x/2")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(stems)
    ax.set_ylabel("dB (median over pieces)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def speech_by_snr(summary: Mapping, *, title: str = "", path=None):
    """PESQ and segmental SNR of the enhanced speech vs the noisy input, per input SNR."""
    plt = pyplot()
    per = summary["per_snr"]
    snrs = sorted(per, key=float)
    x = [float(s) for s in snrs]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, label in ((axes[0], "pesq", "PESQ (wb)"), (axes[1], "ssnr", "segmental SNR (dB)")):
        ax.plot(x, [_num(per[s][key]) for s in snrs], "o-", label="enhanced")
        ax.plot(x, [_num(per[s][f"{key}_noisy"]) for s in snrs], "s--", color="0.5", label="noisy input")
        ax.set_xlabel("input SNR (dB)")
        ax.set_ylabel(label)
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def zero_shot_bars(per_class: Mapping[str, Any], unseen: Sequence[str], *, title: str = "", path=None):
    """SDRi per class by example (bars) and by class average (dots), the x/2 floor and IRM ceiling as ticks;
    held-out (unseen) classes in green. ``per_class`` maps a class to a number (by example) or to a dict with
    ``by_example`` / ``class_average`` / ``floor`` / ``irm``."""
    plt = pyplot()
    get = lambda c, k: _num(per_class[c].get(k) if isinstance(per_class[c], Mapping) else  # noqa: E731
                            (per_class[c] if k == "by_example" else None))
    names = sorted(per_class, key=lambda c: (c not in unseen, -get(c, "by_example"), c))
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.42 * len(names) + 1.5), 3.8))
    colors = ["tab:green" if n in unseen else "tab:blue" for n in names]
    ax.bar(x, [get(n, "by_example") for n in names], color=colors, label="by example")
    if any(isinstance(v, Mapping) for v in per_class.values()):
        ax.plot(x, [get(n, "class_average") for n in names], "o", color="k", ms=3.5, label="class average")
        ax.plot(x, [get(n, "floor") for n in names], "_", color="tab:red", ms=12, mew=2, label="floor x/2")
        ax.plot(x, [get(n, "irm") for n in names], "_", color="tab:purple", ms=12, mew=2, label="IRM ceiling")
        ax.legend(fontsize=7, ncol=4, loc="upper right")
    ax.set_xticks(x)
    ax.set_xticklabels([n[:24] for n in names], rotation=70, ha="right", fontsize=8)
    ax.set_ylabel("SDRi (dB)")
    ax.set_title(title + "  (green: held out of training)")
    ax.axhline(0, color="0.6", lw=0.8)
    fig.tight_layout()
    return save(fig, path)
