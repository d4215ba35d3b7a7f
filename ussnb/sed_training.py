"""Training a sound event detector from clip-level tags only (paper eq. 2).

    L = − Σ_k [ y_k log f(x)_k + (1 − y_k) log(1 − f(x)_k) ],   f(x)_k = pool_t p_SED(t, k)

The model never sees event times: it gets a 10 s clip and its tags; pooling over frames (max or attention)
turns its frame probabilities into the clip prediction the loss compares with the tags. That the frames
nevertheless localise events is what :func:`evaluate_tagger` measures on the starter set, whose true event
times are kept aside. Batches are balanced (B distinct classes, one clip each); mixup is optional.
Checkpoints are written atomically and training resumes exactly.
The model (``arch``) is the kit's CNN :class:`ussnb.taggers.sed.SedCnn` (``sed``, saved as the run's
``starter-sed``) or the 2021 system's transformer :class:`ussnb.taggers.htsat.HTSAT` at the CPU size
``htsat-small`` (saved as ``starter-htsat``): the same loss, sampler, steps and batches, so the two can be
compared on equal training budget. The separator's training loop is :mod:`ussnb.train`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data.weak import BalancedSampler, WeakDataset
from .errors import ConfigError
from .io import atomic_write_text
from .taggers.base import Tagger
from .taggers.sed import SedCnn, save_sed
from .trainutil import capture_rng, restore_rng, resume_state, save_state, seed_everything


# Size presets of the starter SED model (constructor arguments of SedCnn). Measured on 2 cores, batch 16 × 10 s,
# one training step: "default" ≈ 1-2 s, "cpu" ≈ 0.5-0.9 s (50 frames/s and 32 mel bands inside, frames
# interpolated to 100/s), "tiny" for tests.
SED_SIZES: dict[str, dict] = {
    "default": {},
    "cpu": {"hop": 640, "n_mels": 32, "channels": [16, 32, 64, 128], "time_pools": [2, 2, 1, 1]},
    "tiny": {"hop": 640, "n_mels": 32, "channels": [8, 16], "time_pools": [2, 2], "hidden": 32},
}
# Architectures :func:`train_sed` trains from weak labels, and the run-tagger name each is saved under.
SED_ARCHS: dict[str, str] = {"sed": "starter-sed", "htsat-small": "starter-htsat"}
# Size presets of htsat-small (overrides of ussnb.taggers.htsat.SMALL): "cpu" is SMALL itself (embed 24, 2
# blocks per stage, ~1 s per step of 16 x 10 s on 2 cores), "tiny" for tests.
HTSAT_SIZES: dict[str, dict] = {
    "default": {},
    "cpu": {},
    "tiny": {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]},
}


@dataclass
class SedTrainConfig:
    steps: int = 1500  # optimizer steps
    batch_size: int = 16  # distinct classes per batch
    lr: float = 1e-3
    weight_decay: float = 0.0
    mixup: float = 0.0  # Beta(α, α) mixup of clips and tags; 0 = off
    eval_every: int = 250  # validation mAP every N steps
    checkpoint_every: int = 250
    seed: int = 0
    arch: str = "sed"  # a key of SED_ARCHS: "sed" (SedCnn) or "htsat-small" (HTSAT)
    model: dict = field(default_factory=lambda: {"pooling": "attention"})  # constructor arguments


def build_sed_model(cfg: SedTrainConfig, dataset: WeakDataset) -> Tagger:
    """The untrained model of ``cfg.arch`` for ``dataset``'s classes (``cfg.model`` = constructor overrides)."""
    if cfg.arch == "sed":
        return SedCnn(classes=len(dataset.labels), sample_rate=dataset.sample_rate, labels=dataset.labels,
                      **cfg.model)
    if cfg.arch == "htsat-small":
        from .taggers.htsat import HTSAT, small_config

        sr = dataset.sample_rate
        if sr % 100:
            raise ConfigError(f"HTS-AT needs a sample rate divisible by 100 (10 ms hop); the dataset has {sr} Hz")
        return HTSAT(**small_config(classes=len(dataset.labels), sample_rate=sr, hop=sr // 100,
                                    labels=dataset.labels, **cfg.model))
    raise ConfigError(f"unknown SED architecture {cfg.arch!r}; choose one of {', '.join(SED_ARCHS)}")


def stage_train_config(name: str, section: Any) -> SedTrainConfig:
    """The training configuration of the run tagger ``name`` (``starter-sed`` / ``starter-htsat``) from stage
    01's parameters (a :class:`ussnb.config.SedSection`): every trained tagger gets the same steps, batches,
    learning rate and seed — the same budget — and its own size preset ``sed_size``."""
    archs = {run_name: arch for arch, run_name in SED_ARCHS.items()}
    if name not in archs:
        raise ConfigError(f"{name!r} is not a tagger trained from weak labels; choose one of {', '.join(archs)}")
    arch = archs[name]
    sizes = SED_SIZES if arch == "sed" else HTSAT_SIZES
    if section.sed_size not in sizes:
        raise ConfigError(f"sed_size {section.sed_size!r} unknown for {name}; choose one of {', '.join(sizes)}")
    model = {"pooling": section.sed_pooling, **SED_SIZES[section.sed_size]} if arch == "sed" \
        else dict(HTSAT_SIZES[section.sed_size])
    return SedTrainConfig(steps=section.sed_steps, batch_size=section.sed_batch_size, lr=section.sed_lr,
                          mixup=section.sed_mixup, eval_every=section.sed_eval_every,
                          checkpoint_every=section.sed_eval_every, seed=section.seed, arch=arch, model=model)


def save_sed_model(model: Tagger, path: str | os.PathLike, **extra: Any):
    """Save a model built by :func:`build_sed_model` with its configuration (loadable by the run's tagger)."""
    from .taggers.htsat import HTSAT, save_htsat

    return save_htsat(model, path, **extra) if isinstance(model, HTSAT) else save_sed(model, path, **extra)


class ClipCache:
    """Clips of a split kept in memory as int16 after their first read (a 10 s clip is 640 kB)."""

    def __init__(self, dataset: WeakDataset, split: str):
        self.dataset, self.clips = dataset, dataset.clips(split)
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, i: int) -> np.ndarray:
        if i not in self._cache:
            x = self.dataset.load(self.clips[i])
            self._cache[i] = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        return self._cache[i].astype(np.float32) / 32767


def _stack(waves: list[np.ndarray]) -> torch.Tensor:
    n = max(w.shape[0] for w in waves)
    out = np.zeros((len(waves), n), np.float32)
    for i, w in enumerate(waves):
        out[i, :w.shape[0]] = w
    return torch.from_numpy(out)


def predict(tagger, dataset: WeakDataset, split: str, *, batch_size: int = 8, progress: bool = False,
            cache: ClipCache | None = None) -> dict[str, np.ndarray]:
    """Clip ``(clips, classes)`` and frame ``(clips, frames, classes)`` probabilities over a split."""
    from tqdm.auto import tqdm

    cache = cache or ClipCache(dataset, split)
    n = len(dataset.clips(split))
    clips, frames = [], []
    was_training = tagger.training
    tagger.eval()
    with torch.inference_mode():
        for lo in tqdm(range(0, n, batch_size), desc=f"tagging {split}", disable=not progress):
            out = tagger.tag(_stack([cache(i) for i in range(lo, min(n, lo + batch_size))]))
            clips.append(out.clip.cpu().numpy())
            frames.append(out.frames.cpu().numpy().astype(np.float16))
    tagger.train(was_training)
    return {"clip": np.concatenate(clips), "frames": np.concatenate(frames)}


def evaluate_tagger(tagger, dataset: WeakDataset, split: str, *, progress: bool = False,
                    cache: ClipCache | None = None, predictions: dict | None = None) -> dict[str, float]:
    """mAP over the split's clip tags, and — when true event times exist — frame-level SED quality:
    ``sed_frame_auc`` (ROC AUC of frame probabilities vs true activity, averaged over classes) and
    ``sed_f1_1s`` (segment-based F1 on 1 s segments at threshold 0.5)."""
    from .eval.metrics import frame_auc, frame_targets, mean_average_precision, roc_auc, segment_f1

    pred = predictions or predict(tagger, dataset, split, progress=progress, cache=cache)
    y = dataset.targets(split)
    out = {"map": float(mean_average_precision(y, pred["clip"]))}
    if (dataset.root / "events.jsonl").is_file():
        truth = dataset.true_events(split)
        events = [[(e["onset"], e["offset"], dataset.label_index[e["mid"]]) for e in truth[c.clip_id]
                   if e["mid"] in dataset.label_index] for c in dataset.clips(split)]
        frames = pred["frames"].astype(np.float32)
        ref = frame_targets(events, frames.shape[1], 100, frames.shape[2])
        out["sed_frame_auc"] = float(frame_auc(ref, frames))
        # localisation alone: per class, AUC over the frames of the clips tagged with it (the tag is given,
        # the question is only *when*), averaged over classes
        aucs = []
        for k in range(frames.shape[2]):
            tagged = y[:, k]
            if tagged.any():
                a = roc_auc(ref[tagged, :, k].ravel(), frames[tagged, :, k].ravel())
                if np.isfinite(a):
                    aucs.append(a)
        out["sed_frame_auc_in_tagged_clips"] = float(np.mean(aucs)) if aucs else float("nan")
        out["sed_f1_1s"] = float(segment_f1(frames, events, frame_rate=100, segment_seconds=1.0, threshold=0.5))
    return out


COMPARISON_COLUMNS = {"map": "mAP", "sed_frame_auc": "frame AUC", "sed_frame_auc_in_tagged_clips":
                      "frame AUC (tagged clips)", "sed_f1_1s": "segment F1 @1 s"}


def trained_minutes(out_dir: str | os.PathLike, default: float = float("nan")) -> float:
    """Minutes :func:`train_sed` spent training in ``out_dir`` over all its sessions (from ``history.json``)."""
    path = Path(out_dir) / "history.json"
    try:
        return float(json.loads(path.read_text())["train_seconds"]) / 60
    except (OSError, KeyError, ValueError):
        return default


def comparison_markdown(scores: dict[str, dict[str, float]], minutes: dict[str, float] | None = None) -> str:
    """A markdown table, one row per tagger: the :func:`evaluate_tagger` scores and the training minutes."""
    minutes = minutes or {}
    cols = [k for k in COMPARISON_COLUMNS if any(k in s for s in scores.values())]
    head = "| tagger | " + " | ".join(COMPARISON_COLUMNS[k] for k in cols) + " | training minutes |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for name, s in scores.items():
        m = minutes.get(name, float("nan"))
        cells = [f"{s[k]:.3f}" if k in s else "–" for k in cols] + [f"{m:.1f}" if m == m else "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train_sed(
    dataset: WeakDataset,
    out_dir: str | os.PathLike,
    config: SedTrainConfig | dict | None = None,
    *,
    progress: bool = True,
) -> tuple[Tagger, list[dict]]:
    """Train ``config.arch`` (:class:`SedCnn` or HTS-AT-small) on ``dataset``'s train split; resumes from
    ``out_dir/state.pt`` if present (a state of another configuration is refused loudly).

    Writes ``out_dir/tagger.pt`` (the model + config, loadable as the run tagger ``SED_ARCHS[arch]``) and
    ``out_dir/history.json`` (loss per step, validation mAP every ``eval_every``, seconds of training)."""
    from .progress import progress_bar

    cfg = config if isinstance(config, SedTrainConfig) else SedTrainConfig(**(config or {}))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    model = build_sed_model(cfg, dataset)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    targets = dataset.targets("train")
    batch = min(cfg.batch_size, int((targets.sum(0) > 0).sum()))
    sampler = BalancedSampler(targets, batch, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    history: list[dict] = []
    step = 0
    state_path = out / "state.pt"
    state = resume_state(state_path, asdict(cfg), defaults=asdict(SedTrainConfig()))
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        restore_rng(state["rng"], {"mix": rng})
        history, step = state["history"], state["step"]
    seconds = float(state.get("train_seconds", 0.0)) if state is not None else 0.0  # over all sessions
    train_cache = ClipCache(dataset, "train")
    val_cache = ClipCache(dataset, "validation") if "validation" in dataset.splits else None
    y_all = torch.from_numpy(targets.astype(np.float32))
    bar = progress_bar(total=cfg.steps, initial=step, desc="training SED (weak labels)", unit="step", disable=not progress)
    model.train()
    t0 = time.time()
    while step < cfg.steps:
        picks = sampler.next_batch()
        idx = [c for _, c in picks]
        x = _stack([train_cache(i) for i in idx])
        y = y_all[idx]
        if cfg.mixup > 0:
            lam = torch.from_numpy(rng.beta(cfg.mixup, cfg.mixup, size=(len(idx), 1)).astype(np.float32))
            perm = torch.from_numpy(rng.permutation(len(idx)))
            x = lam * x + (1 - lam) * x[perm]
            y = lam * y + (1 - lam) * y[perm]
        clip = model(x)["clipwise_output"].clamp(1e-7, 1 - 1e-7)
        loss = F.binary_cross_entropy(clip, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        record: dict[str, Any] = {"step": step, "loss": round(loss.item(), 6)}
        if val_cache is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
            record["val_map"] = round(evaluate_tagger(model, dataset, "validation", cache=val_cache)["map"], 6)
            model.train()
        history.append(record)
        bar.set_postfix(loss=f"{loss.item():.4f}", **({"val_mAP": f"{record['val_map']:.3f}"} if "val_map" in record else {}))
        bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save_state(state_path, config=asdict(cfg), model=model.state_dict(), optimizer=opt.state_dict(),
                       sampler=sampler.state_dict(), rng=capture_rng({"mix": rng}), history=history, step=step,
                       train_seconds=seconds + time.time() - t0)
    bar.close()
    seconds += time.time() - t0
    model.eval()
    save_sed_model(model, out / "tagger.pt", train_config=asdict(cfg), steps=step)
    atomic_write_text(out / "history.json", json.dumps({"history": history, "train_seconds": round(seconds, 1),
                                                        "seconds_this_session": round(time.time() - t0, 1)}))
    return model, history


__all__ = ["COMPARISON_COLUMNS", "HTSAT_SIZES", "SED_ARCHS", "SED_SIZES", "ClipCache", "SedTrainConfig", "build_sed_model", "evaluate_tagger",
           "predict", "save_sed_model", "stage_train_config", "train_sed",
           "comparison_markdown", "trained_minutes"]
