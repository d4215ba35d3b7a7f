# %% [markdown]
# # 06 · Evaluation: per-class SDRi, music stems, speech enhancement, zero-shot (paper §4, Fig. 7)
#
# **Metrics.** On a whole item, with target $s$, estimate $\hat s$ and mixture $x$,
#
# $$\mathrm{SDR}(s, \hat s) = 10 \log_{10} \frac{\lVert s \rVert^2}{\lVert s - \hat s \rVert^2}, \qquad
# \mathrm{SDRi} = \mathrm{SDR}(s, \hat s) - \mathrm{SDR}(s, x).$$
#
# The paper's aggregate is the **median SDRi per class, then the mean over classes** (a few failed items do not
# dominate a class, and every class weighs the same). Each class $k$ is queried two ways:
#
# - **average condition** (eq. 9): $\bar c_k = \frac{1}{N}\sum_n c(x_n^k)$, the mean condition of the class's
#   training anchors (stage 03) — what a user gets by asking for "Violin";
# - **oracle condition**: $c(s)$, the condition of the clean target itself (the run's tagger for `soft` /
#   `embedding`, $e_k$ for `onehot`) — the query the model was trained with.
#
# Two references sit beside every figure, on the very same mixtures: the **floor** $\hat s = x/2$, which on 0 dB
# pairs already scores $10\log_{10} 2 \approx 3.0$ dB SDRi (so results are also stated *above the floor*), and the
# **IRM ceiling** $\hat S = \frac{|S|}{|S| + |N|} X$ with the model's own STFT, the best a magnitude mask can do.
#
# **Benchmarks** (`ussnb/data/testsets/`, each deterministic from a seed, prepared once under
# `<USSNB_DATA>/benchmarks/`):
#
# | benchmark | built like | from |
# |---|---|---|
# | `starter-pairs` | FSDKaggle2018: 2 s target + 2 s interferer of another class, 0 dB | raw starter **test**-split events |
# | `esc50-pairs` | the same | ESC-50 test split (skipped when the folder is absent) |
# | `starter-music` | MUSDB18 / Slakh2100 stems: vocals (Choir, soprano), bass (Double bass), other | music21 chorales *not* used by the starter set, rendered part by part with fluidsynth |
# | `starter-speech` | Voicebank-Demand: speech + noise at 0/5/10/15 dB | starter test speakers + real drum/instrument test events |
#
# The separator runs on non-overlapping 2 s chunks at its own rate; benchmark audio (32 kHz) is resampled to it
# and the pairs / SNRs are re-matched there. Music is scored with museval (BSSEval v4, 1 s windows, median over
# windows, references passed first); speech with wide-band PESQ and segmental SNR.
#
# **Zero-shot.** With `zero_shot_classes` set (the same parameter as stages 00 and 02: no training or validation
# clip contains those classes), every pair benchmark is split into **seen** and **unseen** classes, each queried
# *by example* — the mean condition of other test recordings of the class, never the mixture's own target, as
# `ussnb separate --example` does — and by *class average* (eq. 9 for seen classes; an unseen class has no
# anchors, so its "average" is that of a few example clips), beside the x/2 floor and the IRM ceiling.

# %% tags=["parameters"]
# ussnb-parameters: eval  (the typed lines of ussnb.config.EvalSection: defaults, help)
data_dir: str = "runs/dev/00_data"  # stage 00 output (dataset.json)
sed_dir: str = "runs/dev/01_weak_labels_and_sed"  # stage 01 output (the tagger: oracle conditions)
anchors_dir: str = "runs/dev/02_anchor_mining"  # stage 02 output (which classes training held out)
queries_dir: str = "runs/dev/03_query_conditions"  # stage 03 output (class-average conditions)
training_dir: str = "runs/dev/04_training"  # stage 04 output (separator.pt)
stage_dir: str = "runs/dev/06_evaluation"  # this stage's output folder
INTERACTIVE: bool = True  # False under papermill: no widgets, static figures only

# %%
import json
from pathlib import Path

import numpy as np
import torch
from IPython.display import Audio, display

from ussnb.run import Run
from ussnb.runtime import configure_threads
from ussnb.eval import protocol
from ussnb.io import write_metrics
from ussnb import plots_evaluation as PE
from ussnb.audio import save_audio
from ussnb.data.testsets import Benchmark, prepare_benchmarks

configure_threads()  # one thread set-up for the kit (ussnb.runtime): the pipeline's --threads, BLAS 1
stage = Path(stage_dir)
(stage / "figures").mkdir(parents=True, exist_ok=True)
run = Run.from_dirs(data_dir=data_dir, sed_dir=sed_dir, anchors_dir=anchors_dir, queries_dir=queries_dir,
                    training_dir=training_dir, evaluation_dir=stage_dir)  # ussnb.run.Run owns the layout
dataset_root = run.dataset_root()
bundle = run.bundle()
print(f"separator: {bundle.model.registry_name} ({bundle.kind} conditions, {len(bundle.labels)} classes, "
      f"{bundle.sample_rate} Hz); dataset: {dataset_root}")

# %% [markdown]
# ## Prepare the benchmarks (idempotent: built once, then read)

# %%
trained_without = run.held_out_classes()
unseen = protocol.resolve_classes(zero_shot_classes, bundle.labels, bundle.names) if zero_shot_classes else trained_without
# classes held out of training: every ESC-50 recording of theirs is unheard, so all serve as targets and examples
benches = prepare_benchmarks(dataset_root, pairs_per_class=pairs_per_class, pair_examples=pair_examples,
                             music_pieces=music_pieces, music_seconds=music_seconds,
                             speech_per_snr=speech_per_snr, seed=benchmark_seed, esc50_dir=esc50_dir or None,
                             holdout=[m for m in unseen if m in trained_without])
for name, b in benches.items():
    print(f"{name:15s}", b.reason if not isinstance(b, Benchmark) else f"{len(b)} items  {b.folder.name}")

# %% [markdown]
# ## Pairs: per-class SDRi with the average and the oracle condition (Fig. 7)

# %%
results, metrics_b = {}, {}
for name in ("starter-pairs", "esc50-pairs"):
    b = benches[name]
    if not isinstance(b, Benchmark):
        metrics_b[name] = protocol.skipped_entry(b)
        continue
    results[name] = protocol.evaluate_pairs(b, bundle, keep_audio=True)
    metrics_b[name] = protocol.pair_metrics(results[name]) | {"data_checksum": b.checksum[:16]}
    m = metrics_b[name]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"{name}: SDRi average {fmt(m['sdri_avg'])} dB, oracle {fmt(m['sdri_oracle'])} dB | floor x/2 "
          f"{fmt(m['trivial_sdri'])} dB, IRM ceiling {fmt(m['irm_sdri'])} dB | above the floor "
          f"{fmt(m['sdri_avg_above_floor'])} dB  ({m['n_items']} mixtures, {m['n_classes']} classes)")
    PE.per_class_sdri(m["per_class"], title=f"{name}: per-class median SDRi ({bundle.kind} conditions)",
                      path=stage / "figures" / f"per_class_sdri_{name}.png")

# %% [markdown]
# ## Listen: the worst and the best class (the item nearest to its class median)

# %%
(stage / "examples").mkdir(exist_ok=True)
for name, res in results.items():
    a = res["audio"]
    for ex in protocol.pick_examples(res):
        i = ex["index"]
        est = a["est_avg"] if ex["metric"] == "sdri_avg" else a["est_oracle"]
        print(f"{name} · {ex['which']} class: {ex['class_name']} (vs {ex['interferer']}), "
              f"SDRi {ex['value']:.2f} dB")
        for kind, wave in (("mixture", a["mixture"][i]), ("estimate", est[i]), ("target", a["target"][i])):
            save_audio(stage / "examples" / f"{name}_{ex['which']}_{kind}.wav", wave, a["sample_rate"])
            print(" ", kind)
            display(Audio(wave, rate=a["sample_rate"]))

# %% [markdown]
# ## Music stems (MUSDB18 / Slakh2100-style): museval SDR and SDRi per stem

# %%
music = benches["starter-music"]
if isinstance(music, Benchmark):
    res_music = protocol.evaluate_music(music, bundle)
    metrics_b["starter-music"] = res_music["summary"] | {"data_checksum": music.checksum[:16]}
    print(json.dumps(protocol.rounded(res_music["summary"], 2), indent=1))
    PE.music_stems(res_music["summary"], title="starter-music: museval SDR and SDRi per stem",
                   path=stage / "figures" / "music_stems.png")
else:
    metrics_b["starter-music"] = protocol.skipped_entry(music)
    print(music.reason)

# %% [markdown]
# ## Speech enhancement (Voicebank-Demand-style): PESQ and segmental SNR per input SNR

# %%
speech = benches["starter-speech"]
if isinstance(speech, Benchmark):
    res_speech = protocol.evaluate_speech(speech, bundle, query=speech_query)
    metrics_b["starter-speech"] = res_speech["summary"] | {"data_checksum": speech.checksum[:16]}
    print(json.dumps(protocol.rounded(res_speech["summary"], 2), indent=1))
    if res_speech["rows"]:
        PE.speech_by_snr(res_speech["summary"], title="starter-speech: enhanced vs noisy",
                         path=stage / "figures" / "speech_by_snr.png")
else:
    metrics_b["starter-speech"] = protocol.skipped_entry(speech)
    print(speech.reason)

# %% [markdown]
# ## Zero-shot: held-out classes queried by example, beside the seen classes

# %%
zero_shot = {}
for name, res in results.items():
    zs = protocol.evaluate_zero_shot(benches[name], bundle, unseen, pairs=res,
                               held_out_in_training=bool(unseen) and set(unseen) <= set(trained_without))
    if unseen and not set(unseen) <= set(trained_without):
        zs["warning"] = ("zero_shot_classes were not all left out of this run's training anchors "
                         f"(stage 02 excluded: {trained_without}); 'unseen' classes were seen in training")
    zero_shot[name] = zs
    if zs.get("per_class"):
        PE.zero_shot_bars(zs["per_class"], zs.get("unseen_classes", []),
                          title=f"{name}: seen vs unseen classes", path=stage / "figures" / f"zero_shot_{name}.png")
if not zero_shot:
    zero_shot = {"note": "no pair benchmark available for the zero-shot evaluation"}
fmt = lambda v: "  n/a" if v is None else f"{v:5.2f}"  # noqa: E731
print(f"{'benchmark':14s} {'classes':8s} {'n':>4s}  by example  class avg  floor x/2  IRM")
for name, zs in zero_shot.items():
    for part in ("seen", "unseen"):
        g = zs.get(part) if isinstance(zs, dict) else None
        if g and g["n_items"]:
            print(f"{name:14s} {part:8s} {g['n_items']:4d}  {fmt(g['by_example']):>10s}  {fmt(g['class_average']):>9s}"
                  f"  {fmt(g['floor']):>9s}  {fmt(g['irm'])}")
    if isinstance(zs, dict) and "note" in zs:
        print(f"{name}: {zs['note']}")

# %% [markdown]
# ## Results table and metrics
# `metrics.json` holds no timings and every float is rounded to 4 decimals with sorted keys, so two runs with
# the same seed write it byte for byte identically.

# %%
import pandas as pd

metrics = {
    "benchmarks": metrics_b,
    "zero_shot": zero_shot,
    "model": {"separator": bundle.model.registry_name, "condition": bundle.kind, "sample_rate": bundle.sample_rate,
              "n_classes": len(bundle.labels)},
    "params": {"pairs_per_class": pairs_per_class, "pair_examples": pair_examples, "music_pieces": music_pieces,
               "music_seconds": music_seconds, "speech_per_snr": speech_per_snr, "speech_query": speech_query,
               "benchmark_seed": benchmark_seed, "zero_shot_classes": list(unseen)},
}
write_metrics(stage, metrics)
table = protocol.results_table(metrics_b)
protocol.write_csv(stage / "results.csv", table)
per_class_rows = [{"benchmark": n, "class": c} | v for n, m in metrics_b.items() for c, v in m.get("per_class", {}).items()]
if per_class_rows:
    protocol.write_csv(stage / "per_class.csv", protocol.rounded(per_class_rows))
pd.DataFrame(table)

# %% [markdown]
# ## Explore: filter the per-class figure (interactive only)

# %%
if INTERACTIVE and results:  # pick a benchmark, filter its classes: the per-class figure and table
    from ussnb.widgets import ClassFilter

    display(ClassFilter({name: metrics_b[name]["per_class"] for name in results}))
