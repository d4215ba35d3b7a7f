# %% [markdown]
# # 01 · Weak labels and sound event detection
#
# **Weak vs strong labels.** A *strong* label says *when* a sound happens (onset, offset, class); a *weak*
# label only says *that* it happens somewhere in the clip. AudioSet has weak labels only — yet the separator
# needs short segments that contain the labelled sound (anchors). The bridge is a **sound event detection**
# (SED) model trained from weak labels alone: it outputs frame probabilities $p_{SED}(t,k)$ and pools them
# into a clip probability, and only the clip probability meets the labels in the loss (paper eq. 2):
#
# $$\mathcal{L} = -\sum_{k=1}^{K} y_k \log f(x)_k + (1-y_k)\log(1-f(x)_k), \qquad f(x)_k = \operatorname{pool}_t\, p_{SED}(t,k)$$
#
# With max or attention pooling, the cheapest way to predict "dog somewhere in the clip" is to fire where the
# dog is — so the frames learn to localise without ever being told where. On the starter set we *can check*
# this: its true event times were kept aside.
#
# This stage trains a tagger on the run's dataset from its weak labels — the kit's small CNN (`starter-sed`) or
# the 2021 system's transformer at CPU size (`starter-htsat`, HTS-AT-small) — or loads a pretrained AudioSet
# tagger (`efficientat-mn04` with the real EfficientAT weights; `htsat` or `panns-cnn14` if their checkpoints
# are on disk), and writes the tagger later stages use. `compare_with` trains the others on the same weak
# labels with the same budget, so the 2021 paper's claim — the transformer localises better — is tested here.

# %% tags=["parameters"]
# ussnb-parameters: sed  (the typed lines of ussnb.config.SedSection: defaults, help)
data_dir: str = "runs/dev/00_data"  # stage 00 output (dataset.json)
stage_dir: str = "runs/dev/01_weak_labels_and_sed"  # this stage's output folder
INTERACTIVE: bool = True  # False under papermill: no widgets

# %%
import time
from pathlib import Path

import numpy as np
import torch
from IPython.display import Audio, display

from ussnb.run import Run
from ussnb.runtime import configure_threads
from ussnb import plots
from ussnb.io import write_metrics, write_timing
from ussnb.taggers.stage import build_run_tagger, save_stage_tagger
from ussnb.sed_training import (COMPARISON_COLUMNS, ClipCache, build_sed_model, comparison_markdown, evaluate_tagger, predict,
                                 stage_train_config, train_sed, trained_minutes)

configure_threads()  # one thread set-up for the kit (ussnb.runtime): the pipeline's --threads, BLAS 1
stage = Path(stage_dir)
(stage / "figures").mkdir(parents=True, exist_ok=True)
run = Run.from_dirs(data_dir=data_dir, sed_dir=stage_dir)  # ussnb.run.Run owns the layout
ds = run.dataset()
print(ds)

# %% [markdown]
# ## Train (or load) the tagger
# Balanced batches: each batch holds `sed_batch_size` *distinct* classes, one clip each — the same sampler the
# separator will use. Checkpoints are atomic; re-running resumes.

# %%
from ussnb.config import from_namespace
from ussnb.taggers.stage import TRAINED_NAMES, resolve_run_tagger

section = from_namespace("sed", globals())  # this cell's parameters as ussnb.config.SedSection
requested = tagger
tagger, why = resolve_run_tagger(tagger, tagger_fallback)
if why:
    print(why)
t0 = time.time()
if tagger in TRAINED_NAMES:
    cfg = stage_train_config(tagger, section)
    model, history = train_sed(ds, stage, cfg, progress=True)
    save_stage_tagger(stage, tagger, ds.labels, checkpoint="tagger.pt")
    plots.training_curves(history, ("loss",), eval_keys=("val_map",), title=f"{tagger} from weak labels: BCE on clip output",
                          path=stage / "figures" / "training.png")
    torch.manual_seed(seed)
    baseline = build_sed_model(cfg, ds).eval()
else:
    save_stage_tagger(stage, tagger, ds.labels)
    model = build_run_tagger(tagger, ds.labels)
    history = []
    from ussnb.taggers import build_tagger
    from ussnb.taggers.stage import DatasetTagger, audioset_columns

    torch.manual_seed(seed)
    baseline = DatasetTagger(build_tagger(tagger).eval(), audioset_columns(ds.labels), ds.labels)
train_minutes = (time.time() - t0) / 60
print(f"{tagger} ready in {train_minutes:.1f} min")

# %% [markdown]
# ## Does it tag, and does it localise?
# mAP on the test clips (tags), and — against the hidden true event times — frame AUC (over all test frames,
# and within the clips tagged with the class, i.e. *when* given *what*) and segment-based F1 on 1 s segments.
# The same architecture with random weights is the reference a trained model must clearly beat.

# %%
test_cache = ClipCache(ds, "test")
pred = predict(model, ds, "test", cache=test_cache, progress=True)
scores = evaluate_tagger(model, ds, "test", predictions=pred)
random_scores = evaluate_tagger(baseline, ds, "test", cache=test_cache)
own = f"{tagger} (pretrained)" if tagger not in TRAINED_NAMES else f"{tagger} (trained)"
table = {k: {own: scores[k], "random weights": random_scores.get(k, float("nan"))} for k in scores}
plots.bars(table, title=f"{tagger} on {ds.name} test", path=stage / "figures" / "tagging_vs_random.png");

# %% [markdown]
# ## CNN or transformer? The same weak labels, the same budget
# Each tagger in `compare_with` is trained here on the same clips and tags, with the same steps, batches,
# learning rate and seed as the run's tagger, and scored on the same test clips against the true event times.
# The 2021 paper chose HTS-AT because its token-semantic head localises events better than a CNN's
# decision-level pooling; the frame AUC and the 1 s segment F1 test that claim at this scale. Training minutes
# are wall-clock on this machine (`timing.json`).

# %%
compare = {tagger: scores}
minutes = {tagger: float("nan")}
for other in [n for n in compare_with if n != tagger]:
    t1 = time.time()
    other_model, _ = train_sed(ds, stage / other.replace("-", "_"), stage_train_config(other, section), progress=True)
    minutes[other] = trained_minutes(stage / other.replace("-", "_"), default=(time.time() - t1) / 60)
    compare[other] = evaluate_tagger(other_model, ds, "test", cache=test_cache)
if tagger in TRAINED_NAMES:
    minutes[tagger] = trained_minutes(stage, default=train_minutes)
if len(compare) > 1:
    print(comparison_markdown(compare, minutes))
    plots.bars({COMPARISON_COLUMNS[k]: {name: m[k] for name, m in compare.items()} for k in COMPARISON_COLUMNS if k in scores},
               title=f"taggers trained on {ds.name}'s weak labels: test clips", path=stage / "figures" / "tagger_comparison.png");

# %% [markdown]
# ## Frame probabilities against the true event times
# The paper's picture of SED from weak labels: the log-mel of a test clip, its tags, the true event times
# (green) and the frame probabilities $p_{SED}(t,k)$ of its tags.

# %%
truth = ds.true_events("test") if (ds.root / "events.jsonl").is_file() else {}
clips = ds.clips("test")
order = np.argsort([-len(c.labels) for c in clips], kind="stable")[:3]
for n, i in enumerate(order):
    clip = clips[i]
    probs = {m: pred["frames"][i][:, ds.label_index[m]].astype(np.float32) for m in clip.labels}
    plots.weak_clip(test_cache(i), ds.sample_rate, clip.labels, events=truth.get(clip.clip_id), names=ds.label_names,
                    frame_probs=probs, title=f"{clip.clip_id}: frame probabilities of its tags",
                    path=stage / "figures" / f"sed_clip_{n}.png")
display(Audio(test_cache(int(order[0])), rate=ds.sample_rate))

# %%
if INTERACTIVE:  # pick a test clip: its log-mel, true events, frame probabilities and a player
    from ussnb.widgets import ClipPicker

    display(ClipPicker(ds, clips, pred["frames"], test_cache, truth))

# %% [markdown]
# ## $p_{SED}$ of every clip, for anchor mining
# Stage 02 scores anchors (eq. 3) on the frame probabilities of each clip's tags. They are computed once here,
# by the run's tagger as stage 02 loads it, and kept for each clip's tagged classes (`sed_frames/<split>.npz`),
# so every anchor mining of this run reads them instead of tagging the clips again — every arm of a sweep
# (`ussnb sweep`), whatever its anchor length or strategy.

# %%
from ussnb.anchors import SedFrames

t_frames = time.time()
run_tagger = run.tagger()
for split in ds.splits:
    SedFrames.write(run.sed_frames_path(split), run_tagger, ds, split)
frames_minutes = (time.time() - t_frames) / 60
print(f"frame probabilities of {sum(len(ds.clips(s)) for s in ds.splits)} clips in {frames_minutes:.1f} min")

# %%
metrics = {"tagger": tagger, "requested_tagger": requested, **{k: round(v, 4) for k, v in scores.items()},
           **{f"random_{k}": round(v, 4) for k, v in random_scores.items()},
           "comparison": {name: {k: round(v, 4) for k, v in m.items()} for name, m in compare.items() if name != tagger}}
if history:
    metrics["val_map_curve"] = [[h["step"], h["val_map"]] for h in history if "val_map" in h]
write_metrics(stage, metrics)  # results only: identical on a re-run
write_timing(stage, {"train_minutes": train_minutes, "sed_frames_minutes": round(frames_minutes, 2),  # wall clock of this session; the training minutes per tagger:
                     "tagger_train_minutes": {k: round(v, 2) for k, v in minutes.items() if v == v}})
metrics
