# %% [markdown]
# # 02 · Anchor mining (paper §3.3, Algorithm 1)
#
# To learn separation from weakly labelled clips, the method cuts from each clip a short **anchor** segment that
# most likely contains the tagged sound. With the SED model of stage 01, the score of a candidate segment
# centred at $t$ for the sampled class $k$ is the area under its frame probabilities (eq. 3), and the anchor is
# the best one (eq. 4):
#
# $$q_k(t) = \sum_{|t'-t| \le \tau/2} p_{SED}(t', k), \qquad t^\* = \arg\max_t q_k(t)$$
#
# (clamped so the τ-second segment stays inside the clip). Baselines: a random segment of the clip
# (`in-clip-random`: mixed with another random segment of the *same* clip; `out-clip-random`: with a segment of
# *another* clip). Because the starter set's true event times are known, **mining precision** — how often an
# anchor really overlaps its class's event — can be measured here, which AudioSet cannot offer.
#
# Mixtures (Algorithm 1): anchors of distinct classes are mixed, $x = s_i + r\,s_j$ with
# $r = \sqrt{E_i/E_j}$ (0 dB); optional step 3 re-pairs anchors so no two share a class the tagger detects.
# This stage mines once and **caches** the anchors with their condition vectors, so training never runs the
# tagger.

# %% tags=["parameters"]
# ussnb-parameters: anchors  (the typed lines of ussnb.config.AnchorsSection: defaults, help)
data_dir: str = "runs/dev/00_data"  # stage 00 output
sed_dir: str = "runs/dev/01_weak_labels_and_sed"  # stage 01 output (the tagger)
stage_dir: str = "runs/dev/02_anchor_mining"  # this stage's output folder
INTERACTIVE: bool = True  # False under papermill

# %%
from pathlib import Path

import numpy as np
import torch
from IPython.display import Audio, display

from ussnb.run import Run
from ussnb.runtime import configure_threads
from ussnb import anchors as A
from ussnb import plots
from ussnb.io import write_metrics, write_timing
from ussnb.sed_training import ClipCache, predict

configure_threads()  # one thread set-up for the kit (ussnb.runtime): the pipeline's --threads, BLAS 1
stage = Path(stage_dir)
(stage / "figures").mkdir(parents=True, exist_ok=True)
run = Run.from_dirs(data_dir=data_dir, sed_dir=sed_dir, anchors_dir=stage_dir)  # ussnb.run.Run owns the layout
ds = run.dataset()
tagger = run.tagger()
print(ds, "| tagger:", getattr(tagger, "name", type(tagger).__name__))

# %% [markdown]
# ## Mine and cache anchors (one per clip and tag; resumable)

# %%
names_to_mid = {name.lower(): mid for mid, name in ds.label_names.items()}
held_out = [names_to_mid.get(str(c).lower(), str(c)) for c in zero_shot_classes]
unknown = [c for c in held_out if c not in ds.label_index]
if unknown:
    raise ValueError(f"zero_shot_classes not in the dataset: {unknown}; classes: {sorted(ds.label_names.values())}")
anchor_sets, test_frames, stored_frames = {}, {}, {}
tagger_name = getattr(tagger, "name", type(tagger).__name__)
for split in ds.splits:
    stored = stored_frames[split] = A.SedFrames.load(run.sed_frames_path(split), ds, split, tagger_name)  # stage 01's
    if stored is None and anchor_strategy == "sed":
        print(f"{split}: tagging the clips here ({A.SedFrames.why_not})")
    anchor_sets[split] = A.mine_anchor_set(ds, split, run.anchors_dir(split), strategy=anchor_strategy,
                                           duration=anchor_seconds, tagger=tagger, seed=mining_seed,
                                           exclude_classes=held_out if split == "train" else (),
                                           frames_out=test_frames if split == "test" else None,
                                           score_window=score_window or None, frames_in=stored)
    print(split, len(anchor_sets[split]), "anchors")
if held_out:
    print("held out of training (zero-shot):", [ds.label_names[m] for m in held_out])

# %% [markdown]
# ## Fig. 4 for real clips: log-mel, $p_{SED}$ of the tag with the chosen anchor, tagging of the anchor

# %%
test_cache = ClipCache(ds, "test")
clips = ds.clips("test")
if all(c.clip_id in test_frames for c in clips):  # mining tagged every test clip already: not again
    pred = {"frames": [test_frames[c.clip_id] for c in clips]}
elif stored_frames.get("test") is not None:  # stage 01's (each clip's tagged classes: all that is shown here)
    pred = {"frames": [stored_frames["test"][c.clip_id] for c in clips]}
else:
    pred = predict(tagger, ds, "test", cache=test_cache, progress=True)
truth = ds.true_events("test") if (ds.root / "events.jsonl").is_file() else {}
sr = ds.sample_rate
seg = int(round(anchor_seconds * sr))
for n, i in enumerate(range(min(3, len(clips)))):
    clip, wave = clips[i], test_cache(i)
    mid = clip.labels[0]
    k = ds.label_index[mid]
    start, score = A.sed_anchor(pred["frames"][i][:, k].astype(np.float32), anchor_seconds, wave.shape[0], sr,
                                score_window=score_window or None)
    with torch.inference_mode():
        probs = tagger.tag(wave[start:start + seg]).clip[0].numpy()
    top = {ds.label_names[ds.labels[j]]: float(probs[j]) for j in np.argsort(-probs)[:6]}
    plots.anchor_figure(wave, sr, pred["frames"][i][:, k].astype(np.float32), start, anchor_seconds,
                        label=ds.label_names[mid], anchor_tags=top,
                        events=[e for e in truth.get(clip.clip_id, []) if e["mid"] == mid],
                        path=stage / "figures" / f"anchor_{n}.png")
    display(Audio(wave[start:start + seg], rate=sr))

# %% [markdown]
# ## Mining precision against the true event times
# An anchor counts as correct if it overlaps a true event of its class by at least half of the shorter of
# (anchor, event). Random anchors are averaged over several draws.

# %%
precision = A.mining_precision(ds, "test", {c.clip_id: pred["frames"][i].astype(np.float32) for i, c in enumerate(clips)},
                               durations=[float(d) for d in precision_durations], seed=mining_seed) if truth else {}
for strategy, per in precision.items():
    print(f"{strategy:16s} " + "  ".join(f"tau={d}s: {v:.3f}" for d, v in per.items()))
if precision:
    plots.precision_plot(precision, path=stage / "figures" / "mining_precision.png")

# %% [markdown]
# ## Mixtures: J = 2 energy-matched, and step 3 (no shared detected class)

# %%
rng = np.random.default_rng(mining_seed)
train_set = anchor_sets["train"]
by_class = train_set.by_class()
ks = rng.choice(sorted(by_class), size=min(8, len(by_class)), replace=False)
picks = [int(by_class[k][rng.integers(len(by_class[k]))]) for k in ks]
from ussnb.errors import DataError

try:
    batch = A.batch_from_cache(train_set, picks, n_sources=2, rng=rng, step3_threshold=step3_threshold)
    print(f"step 3 (theta={step3_threshold}) kept {len(batch.mixture)} of {len(picks)} mixtures")
except DataError:
    print(f"step 3 (theta={step3_threshold}) found no anchor pair without a shared detected class "
          "(an untrained tagger detects everything); showing the plain energy-matched pairing")
    batch = A.batch_from_cache(train_set, picks, n_sources=2, rng=rng)
display(Audio(batch.mixture[0], rate=sr), Audio(batch.target[0], rate=sr))
print("target class:", ds.label_names[ds.labels[batch.label[0]]])

# %% [markdown]
# ## Why cache? Assembling a batch on the fly vs from the cache (measured now, side by side)

# %%
speed = A.measure_cache_speedup(ds, "train", train_set, tagger, batches=speed_batches, duration=anchor_seconds,
                                seed=mining_seed)
print(f"on the fly {speed['on_the_fly_seconds']:.3f} s/batch, cached {speed['cached_seconds']:.4f} s/batch "
      f"-> {speed['speedup']:.1f}x faster")

# %%
metrics = {"strategy": anchor_strategy, "anchor_seconds": anchor_seconds, "zero_shot_classes": held_out,
           "n_anchors": {s: len(a) for s, a in anchor_sets.items()},
           "mining_precision": precision}
write_metrics(stage, metrics)  # results only: identical on a re-run
write_timing(stage, speed)  # wall clock (seconds per batch, cache speed-up): differs run to run
metrics
