# %% [markdown]
# # 05 · Hierarchical separation (paper §4, Algorithms 3-4, Fig. 6)
#
# A universal separator answers *one* query at a time. To split a recording into **everything it contains**
# without asking, the paper lets the tagger decide what to ask for, level by level of the AudioSet ontology.
#
# **Algorithm 3 (hierarchical separation).** Cut the input $x$ into non-overlapping segments
# $x_1, \dots, x_S$ of $\tau = 2$ s and tag each one: $p_s = p_{AT}(x_s) \in [0,1]^K$. For an ontology level
# $l$ and each node $n$ of that level, group the probabilities (Algorithm 4, below) and call the node
# *active* in segment $s$ when $q_{s,n} \ge \theta$ ($\theta = 0.2$ in USS). Then for every node active in at
# least one segment, separate each active segment with the condition
#
# $$c_{s,n} = p_s \odot \mathbb{1}[k \in \mathcal{D}(n)]_{k=1}^{K},$$
#
# the segment's own tagging vector with every class outside the node's descendants $\mathcal{D}(n)$ zeroed,
# and output silence where the node is inactive. One track per active node and level.
#
# **Algorithm 4 (ontology grouping).** The probability of node $n$ in segment $s$ is the maximum over its
# descendants (itself included): $q_{s,n} = \max_{k \in \mathcal{D}(n)} p_{s,k}$. Level 1 holds the top
# categories (*Human sounds*, *Animal*, *Music*, *Sounds of things*, ...), level 2 their children, and so on
# down to level 6. We keep every parent link of the 38 AudioSet classes with two parents, so such a class
# counts under both branches.
#
# **What differs from the reference CLI.** USS concatenates its 2 s outputs without overlap (audible clicks)
# and loads the whole file. Here the file is streamed twice from disk (pass 1 tags, pass 2 separates); each
# separated chunk is a tagging segment plus 0.25 s on both sides, and consecutive chunks are cross-faded over
# those margins — so a track fades in and out over 0.5 s around a segment border instead of clicking, and
# memory does not grow with the input's length. The same machinery is the `ussnb separate` command:
#
# ```
# ussnb separate film.flac --levels 1 2 3 --checkpoint runs/cpu --out separated/
# ussnb separate street.wav --query "Dog" --checkpoint runs/cpu --out separated/ --residual
# ```
#
# **Models with embedding conditions.** An embedding cannot be restricted to a node's classes. For such a model
# the node is asked for by the class-average conditions (eq. 9, stage 03) of its classes, weighted by the
# segment's probabilities: $c_{s,n} = \sum_{k \in \mathcal{D}(n)} p_{s,k}\,\bar c_k / \sum_{k \in \mathcal{D}(n)} p_{s,k}$
# (`separation.node_condition`); detection is the same.
#
# **Calibrated θ.** The paper's θ = 0.2 suits a tagger trained on AudioSet's label frequencies; a tagger
# restricted to a dataset's classes, or our own SED, is calibrated differently. With true event times (the
# composed clips), θ is chosen per level on the *validation* clips to maximise the F1 of (clip, node)
# detections, and the found-rate on the *test* clips is reported before and after. `ussnb separate --levels`
# then uses the run's calibrated θ unless `--threshold` is given.

# %% tags=["parameters"]
# ussnb-parameters: separation  (the typed lines of ussnb.config.SeparationSection: defaults, help)
data_dir: str = "runs/dev/00_data"  # stage 00 output (dataset.json)
sed_dir: str = "runs/dev/01_weak_labels_and_sed"  # stage 01 output (tagger)
queries_dir: str = "runs/dev/03_query_conditions"  # stage 03 output (class-average conditions)
training_dir: str = "runs/dev/04_training"  # stage 04 output (separator.pt)
stage_dir: str = "runs/dev/05_hierarchical_separation"  # this stage's output folder
INTERACTIVE: bool = True  # False under papermill: static figures instead of widgets

# %%
import json
from pathlib import Path

import numpy as np
import torch
from IPython.display import Audio, display

from ussnb.run import Run
from ussnb.runtime import configure_threads
from ussnb import plots_separation
from ussnb.io import write_metrics, write_timing
from ussnb.audio import load_audio
from ussnb.errors import DataError
from ussnb.separation import detection_report, separate_file, separate_hierarchy, slugify
from ussnb.eval.detection import calibrate_thresholds, detection_scores, segment_probabilities
from ussnb.io import atomic_write_text

configure_threads()  # one thread set-up for the kit (ussnb.runtime): the pipeline's --threads, BLAS 1
stage = Path(stage_dir)
(stage / "figures").mkdir(parents=True, exist_ok=True)
run = Run.from_dirs(data_dir=data_dir, sed_dir=sed_dir, queries_dir=queries_dir, training_dir=training_dir,
                    separation_dir=stage_dir)  # ussnb.run.Run owns the layout
bundle = run.bundle()
onto = bundle.ontology
print(f"separator: {bundle.source} ({bundle.kind} conditions, {bundle.classes} classes, {bundle.sample_rate} Hz)")
print(f"ontology: {onto.source}; levels with nodes: "
      + ", ".join(f"{lv}: {len(onto.nodes_at_level(lv))}" for lv in range(1, onto.max_level + 1)))

# %% [markdown]
# ## How well are sounds found? Detection per level, before and after calibrating θ
# Only the tagger and θ decide what is found, so this is measured over many test clips from their segment
# probabilities: the **found-rate** (a true sound's node at the level is active while it sounds) and the
# **false nodes per clip** (detected nodes with no sound of the clip under them).

# %%
ds = run.dataset()
req_levels = [int(lv) for lv in levels]
thresholds = {lv: float(threshold) for lv in req_levels}
detection = {}
if (ds.root / "events.jsonl").is_file() and "test" in ds.splits:
    def probs_and_events(split):
        clips = ds.clips(split)[:detection_clips]
        truth = ds.true_events(split)
        return (segment_probabilities(bundle.tagger, [ds.load(c, bundle.tagger.sample_rate) for c in clips]),
                [truth[c.clip_id] for c in clips])

    test_p, test_e = probs_and_events("test")
    before = dict(thresholds)
    detection["before"] = detection_scores(test_p, test_e, onto, req_levels, before)
    if calibrate and "validation" in ds.splits:
        thresholds = calibrate_thresholds(*probs_and_events("validation"), onto, req_levels)
        detection["after"] = detection_scores(test_p, test_e, onto, req_levels, thresholds)
    # a combined dataset: the same figures per source (e.g. the real ESC-50 recordings alone)
    sources = sorted({c.clip_id.split("/")[0] for c in ds.clips("test")[:detection_clips] if "/" in c.clip_id})
    by_source = {}
    for src in sources if len(sources) > 1 else []:
        idx = [i for i, c in enumerate(ds.clips("test")[:detection_clips]) if c.clip_id.startswith(src + "/")]
        sub_p, sub_e = [test_p[i] for i in idx], [test_e[i] for i in idx]
        by_source[src] = {key: detection_scores(sub_p, sub_e, onto, req_levels, th)
                          for key, th in (("before", before), ("after", thresholds)) if key in detection}
    for name, det in [("all", detection)] + list(by_source.items()):
        for key, scores in det.items():
            for lv, d in scores.items():
                print(f"{name:8s} {key:6s} level {lv}: theta {d['threshold']:.3f}  found {d['found_rate']:.3f}  "
                      f"false nodes/clip {d['false_nodes_per_clip']:.2f}  F1 {d['f1']:.3f}  ({d['n_true_sounds']} sounds)")
    if by_source:
        detection["by_source"] = by_source
    plots_separation.detection_figure({k: v for k, v in detection.items() if k != "by_source"},
                                      path=stage / "figures" / "detection_by_level.png")
    atomic_write_text(run.thresholds_path, json.dumps(
        {"thresholds": {str(k): v for k, v in thresholds.items()}, "calibrated": "after" in detection,
         "objective": "F1 of (clip, node) detections on the validation clips"}, indent=1))
else:
    print("no true event times in this dataset: theta stays", threshold)

# %% [markdown]
# ## The clip
# Without `input_file`, a test clip of the run's dataset with several events. Its true event times were kept
# aside when the clips were composed — used here only to check what was detected.

# %%
true_events = []
if input_file:
    clip_path = Path(input_file)
else:
    test = ds.clips("test")
    try:
        events = ds.true_events("test")
    except DataError:
        events = {}
    clip = max(test[:20], key=lambda c: (len(events.get(c.clip_id, [])), len(c.labels)))
    clip_path = clip.path
    true_events = [e for e in events.get(clip.clip_id, []) if e["mid"] in bundle.labels]
    print(f"{clip.clip_id}: tagged {[ds.label_names[m] for m in clip.labels]}")
    for e in true_events:
        print(f"  {e['label']:32s} {e['onset']:5.2f}-{e['offset']:5.2f} s{'' if e['labelled'] else '  (unlabelled)'}")
VIEW = 60.0  # seconds shown and played (a long input is separated whole, on disk, but only its start is shown)
mixture = load_audio(clip_path, bundle.sample_rate, duration=VIEW)
display(Audio(mixture, rate=bundle.sample_rate))

# %% [markdown]
# ## Detect, then separate per level
# Pass 1 tags the 2 s segments; pass 2 separates every active node of each level (Algorithm 3).

# %%
summary = separate_hierarchy(clip_path, bundle, req_levels, thresholds, stage / "tracks",
                             name="clip", segment_seconds=segment_seconds, overlap=overlap, resample=True)
for lv, entry in summary["levels"].items():
    found = ", ".join(f"{n['label']} ({n['max_probability']:.2f})" for n in entry["nodes"]) or "nothing"
    print(f"level {lv}: {found}" + (f"  [{entry['note']}]" if "note" in entry else ""))
print(f"real-time factor {summary['real_time_factor']:.3f} ({summary['wall_seconds']:.1f} s wall)")

# %% [markdown]
# ## The Fig. 6 analogue
# One column per level: the mixture, then the separated tracks with their node labels (most probable first);
# the orange bar marks where the node is active — elsewhere the track is silent by construction.

# %%
folder = stage / "tracks" / "clip"
tracks = {int(lv): [(n["label"], load_audio(folder / n["file"], bundle.sample_rate, duration=VIEW), n["active"])
                    for n in entry["nodes"]] for lv, entry in summary["levels"].items()}
plots_separation.hierarchy_figure(mixture, bundle.sample_rate, tracks, kind="spectrogram",
                                  path=stage / "figures" / "hierarchy_spectrograms.png")
plots_separation.hierarchy_figure(mixture, bundle.sample_rate, tracks, kind="waveform",
                                  path=stage / "figures" / "hierarchy_waveforms.png")
plots_separation.activity_figure(summary, true_events=true_events, path=stage / "figures" / "detections.png")

# %% [markdown]
# ## Listen: the tracks of each level

# %%
for lv, items in tracks.items():
    for label, wave, active in items[:3]:
        print(f"level {lv} · {label}  (active {active})")
        display(Audio(wave, rate=bundle.sample_rate, normalize=bool(np.abs(wave).max() > 0)))

# %% [markdown]
# ## One query from the same clip (and its residual)
# Any class of the model by name, MID or index — the class-average condition of eq. 9. With no `query`
# given, the most probable detected class of the deepest level stands in.

# %%
deepest = [t for lv in sorted(tracks, reverse=True) for t in tracks[lv]]
class_names = set(bundle.names) | {lab.name for lab in onto.labels}
fallback = next((t[0] for t in deepest if t[0] in class_names), bundle.names[0])
chosen = query or fallback


def separate_to_disk(name, residual=False):
    """Separate ``name`` from the clip into this stage's folder (streamed); the first VIEW seconds back."""
    out = stage / "queries" / f"{slugify(name)}.wav"
    res = out.with_name(out.stem + "__residual.wav") if residual else None
    separate_file(clip_path, out, name, bundle, residual_path=res, resample=True, progress=False,
                  segment_seconds=segment_seconds, overlap=overlap)
    waves = [load_audio(p, bundle.sample_rate, duration=VIEW) for p in (out, res) if p is not None]
    return waves if residual else waves[0]


target, residual = separate_to_disk(chosen, residual=True)
print(f"query: {chosen}")
display(Audio(target, rate=bundle.sample_rate), Audio(residual, rate=bundle.sample_rate))
plots_separation.query_figure(mixture, bundle.sample_rate, {chosen: target, "residual (everything else)": residual},
                              path=stage / "figures" / "query.png")

# %% [markdown]
# ## Pick classes yourself
# Interactively: filter the labels, select one or more (the classes detected at the deepest level are picked
# to start with) and press "separate": each is separated from the clip with a progress bar, written to
# `queries/<class>.wav` and shown as a player, then the spectrograms of all of them. With nothing selected the
# filter's text is the query — a class name, MID or index (an unknown name is answered with the closest ones).
# Under papermill (`INTERACTIVE=False`) the detected classes of the deepest level are separated instead, as a
# static figure.

# %%
if INTERACTIVE:
    from ussnb.widgets import SeparationPicker

    detected = [t[0] for t in deepest if t[0] in bundle.names][:3]
    display(SeparationPicker(bundle, clip_path, stage / "queries", mixture, preselect=detected,
                             segment_seconds=segment_seconds, overlap=overlap, view_seconds=VIEW))
else:
    picked = [t[0] for t in deepest if t[0] in class_names][:3] or bundle.names[:2]
    results = {name: separate_to_disk(name) for name in picked}
    plots_separation.query_figure(mixture, bundle.sample_rate, results, title="detected classes, each queried",
                                  path=stage / "figures" / "picked_classes.png")

# %% [markdown]
# ## Metrics
# Detected nodes per level; with the dataset's hidden event times, whether the clip's true event classes are
# among the detected nodes (checked at the deepest requested level not below each class's own level; `in_time`
# also asks that the node be active while the event sounds) and how many detected nodes relate to a true
# class. A barely trained tagger gives high probabilities everywhere: then everything is "detected" and the
# precision says how much of that is noise.

# %%
metrics = {
    "input": str(clip_path), "levels": req_levels, "threshold": threshold,
    "thresholds": {str(k): v for k, v in thresholds.items()}, "detection": detection,
    "detected_nodes": {lv: [n["label"] for n in e["nodes"]] for lv, e in summary["levels"].items()},
    "n_detected": {lv: len(e["nodes"]) for lv, e in summary["levels"].items()},
    "query": chosen,
}
if true_events:
    report = detection_report(summary, onto, true_events)
    metrics.update({k: report[k] for k in ("true_classes", "true_classes_detected", "true_classes_detected_in_time",
                                           "true_classes_detected_exact", "detected_nodes_precision")})
    metrics["per_class"] = report["classes"]
write_metrics(stage, metrics)  # results only: identical on a re-run
write_timing(stage, {"real_time_factor": summary["real_time_factor"], "wall_seconds": summary["wall_seconds"]})
{k: v for k, v in metrics.items() if k != "per_class"}
