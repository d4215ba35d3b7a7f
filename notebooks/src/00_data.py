# %% [markdown]
# # 00 · Weakly labelled data
#
# Universal source separation learns from **weakly labelled** clips: each 10 s clip carries *clip-level tags*
# (which classes occur somewhere in it), never the times at which they occur. AudioSet has 2 M such clips over a
# 527-class ontology. This notebook prepares the dataset the rest of the pipeline uses — by default the kit's
# offline **starter** set, built from real recordings that Debian and PyPI packages ship — and shows what a
# weak label is. Because the starter clips are *composed*, their true event times are also known; they are kept
# aside (never read by training) so that later stages can *measure* how well anchors are found.
#
# The weak-label learning problem (paper §2): given clips $x$ with tags $y \in \{0,1\}^K$, learn
# $f(x) \in [0,1]^K$ — and, through sound event detection, $f(x)_{t,k}$ over frames $t$ — without ever seeing
# frame-level targets.

# %% tags=["parameters"]
# ussnb-parameters: data  (the typed lines of ussnb.config.DataSection: defaults, help)
stage_dir: str = "runs/dev/00_data"  # this stage's output folder (set by the pipeline)
INTERACTIVE: bool = True  # False under papermill: no widgets, static figures only

# %%
import json
from pathlib import Path

from IPython.display import Audio, display

from ussnb import data, plots
from ussnb.io import write_metrics
from ussnb.run import Run

stage = Path(stage_dir)
run = Run.from_dirs(data_dir=stage_dir)  # ussnb.run.Run owns the run directory's layout
(stage / "figures").mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Prepare (idempotent: a completion marker skips finished work)
# A list of datasets (`[starter, esc50]`) becomes one *combined view*: splits kept per source, labels the union.
# Classes held out for zero-shot evaluation are removed from training and validation here — every clip in which
# they occur (tagged or not) is dropped — so the separator never hears them, neither as target nor as interferer.

# %%
root = data.prepare_for_run(dataset, n_train=n_train, n_validation=n_validation, n_test=n_test, seed=data_seed,
                            holdout=zero_shot_classes)
ds = data.load(root)
summary = data.info(root)
print(ds)
print(json.dumps({k: summary[k] for k in ("n_classes", "n_clips", "hours")}, indent=1))

# %% [markdown]
# ## Classes and clips per split
# Every batch the separator later sees holds *distinct* classes (balanced sampling), so what matters is that
# each class has clips in every split.

# %%
counts = {split: ds.class_counts(split) for split in ds.splits}
fig = plots.class_counts(counts, ds.label_names, path=stage / "figures" / "class_counts.png",
                         title=f"{ds.name}: clips per class and split")
if "sources" in ds.info:
    for src in ds.info["sources"]:
        print(f"{src['source']:40s} {src['n_classes']:3d} classes {src['n_recordings']:5d} recordings "
              f"{src['n_events']:5d} events  licence: {', '.join(src['licences'])}")

# %% [markdown]
# ## A weak label
# The clip-level tags are all the training code ever sees. Below them, in green, the true event times the
# composition recorded (grey: an event whose tag is *missing*, as happens in AudioSet).

# %%
clips = ds.clips("test" if "test" in ds.splits else ds.splits[0])
truth = ds.true_events() if (ds.root / "events.jsonl").is_file() else {}
for i, clip in enumerate(clips[:example_clips]):
    wave = ds.load(clip)
    plots.weak_clip(wave, ds.sample_rate, clip.labels, events=truth.get(clip.clip_id), names=ds.label_names,
                    title=f"{clip.clip_id}: tags = " + ", ".join(ds.label_names[m] for m in clip.labels),
                    path=stage / "figures" / f"weak_label_{i}.png")
    display(Audio(wave, rate=ds.sample_rate))

# %% [markdown]
# ## Outputs for the next stages

# %%
run.write_dataset(root, ds.name)  # dataset.json: where the later stages find the data
metrics = {"dataset": ds.name, "n_classes": summary["n_classes"], "n_clips": summary["n_clips"],
           "hours": summary["hours"]}
for key in ("n_packages", "min_recordings_per_class", "holdout_names", "dropped_clips"):
    if key in summary:
        metrics[key] = summary[key]
write_metrics(stage, metrics)
metrics
