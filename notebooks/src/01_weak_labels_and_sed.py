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
# This stage trains the kit's own small SED model (`starter-sed`) on the run's dataset, or loads a pretrained
# AudioSet tagger (`efficientat-mn04` with the real EfficientAT weights; `panns-cnn14` if its checkpoint is
# on disk), and writes the tagger later stages use.

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
from ussnb.sed_training import SED_SIZES, ClipCache, SedTrainConfig, evaluate_tagger, predict, train_sed
from ussnb.taggers.sed import SedCnn

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
t0 = time.time()
model_cfg = {"pooling": sed_pooling, **SED_SIZES[sed_size]}
if tagger == "starter-sed":
    cfg = SedTrainConfig(steps=sed_steps, batch_size=sed_batch_size, lr=sed_lr, mixup=sed_mixup,
                         eval_every=sed_eval_every, checkpoint_every=sed_eval_every, seed=seed, model=model_cfg)
    model, history = train_sed(ds, stage, cfg, progress=True)
    save_stage_tagger(stage, "starter-sed", ds.labels, checkpoint="tagger.pt")
    plots.training_curves(history, ("loss",), eval_keys=("val_map",), title="SED from weak labels: BCE on clip output",
                          path=stage / "figures" / "training.png")
    torch.manual_seed(seed)
    baseline = SedCnn(classes=len(ds.labels), sample_rate=ds.sample_rate, labels=ds.labels, **model_cfg).eval()
else:
    save_stage_tagger(stage, tagger, ds.labels)
    model = build_run_tagger(tagger, ds.labels)
    history = []
    from ussnb.taggers import build_tagger
    from ussnb.taggers.stage import DatasetTagger, audioset_columns

    torch.manual_seed(seed)
    baseline = DatasetTagger(build_tagger(tagger).eval(), audioset_columns(ds.labels), ds.labels)
train_minutes = (time.time() - t0) / 60
print(f"tagger ready in {train_minutes:.1f} min")

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
own = "pretrained" if tagger != "starter-sed" else "trained"
table = {k: {own: scores[k], "random weights": random_scores.get(k, float("nan"))} for k in scores}
compare_scores, compare_minutes = {}, None
if compare_sed and tagger != "starter-sed":
    # the kit's SED trained from this dataset's weak labels, side by side with the pretrained AudioSet tagger
    t1 = time.time()
    cfg = SedTrainConfig(steps=sed_steps, batch_size=sed_batch_size, lr=sed_lr, mixup=sed_mixup,
                         eval_every=sed_eval_every, checkpoint_every=sed_eval_every, seed=seed, model=model_cfg)
    sed_model, _ = train_sed(ds, stage / "starter_sed", cfg, progress=True)
    compare_minutes = (time.time() - t1) / 60
    compare_scores = evaluate_tagger(sed_model, ds, "test", cache=test_cache)
    for k in table:
        table[k]["starter-sed (weak labels)"] = compare_scores.get(k, float("nan"))
for k, v in table.items():
    print(f"{k:32s} " + "   ".join(f"{name} {val:.3f}" for name, val in v.items()))
plots.bars(table, title=f"{tagger} on {ds.name} test", path=stage / "figures" / "tagging_vs_random.png");

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

# %%
metrics = {"tagger": tagger, **{k: round(v, 4) for k, v in scores.items()},
           **{f"random_{k}": round(v, 4) for k, v in random_scores.items()},
           **{f"starter_sed_{k}": round(v, 4) for k, v in compare_scores.items()}}
if history:
    metrics["val_map_curve"] = [[h["step"], h["val_map"]] for h in history if "val_map" in h]
write_metrics(stage, metrics)  # results only: identical on a re-run
write_timing(stage, {"train_minutes": train_minutes, **({"starter_sed_train_minutes": compare_minutes}
                                                        if compare_minutes is not None else {})})  # wall clock
metrics
