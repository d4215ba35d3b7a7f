# %% [markdown]
# # 04 · Training the query-conditioned separator (paper §3.5, eq. 5-8)
#
# The separator $f$ takes a mixture $x$ and a condition $c$ and predicts a mask on the mixture's spectrogram.
# The paper's ResUNet30 predicts a complex ratio mask $M = |M| e^{j\angle M}$ and
# $\hat S = M \odot X$ (eq. 5-6): magnitude $|M| = \sigma(\cdot)$, phase rotation from a $\tanh$ pair; every
# residual block is conditioned by FiLM with an additive term only, $h \leftarrow h + \beta(c)$. The loss is L1 on
# the waveform (eq. 8), $\mathcal{L} = \lVert f(x, c) - s \rVert_1$, with $c$ the condition of the clean target
# anchor (the oracle condition).
#
# **On 2 CPU cores** the full ResUNet30 (26.6 M parameters, 32 kHz, n_fft 2048) sees far too few examples to
# leave the *trivial floor*: on 0 dB pairs, outputting half the mixture already scores ≈ 3 dB SDRi. The `cpu`
# preset therefore trains `meltcn`: a mask on 64 mel bands at 16 kHz from a dilated 1-D TCN with FiLM
# scale+bias, a negative-SDR loss and a warm-up + cosine schedule — the recipe measured
# by the kit's developers to learn in minutes on 2 cores. ResUNet30 stays available (`separator=resunet30`, the
# `paper` preset) and loads the official checkpoint. Every validation figure below sits beside the floor
# (ŝ = x/2) and the ideal-ratio-mask ceiling on the very same mixtures.
#
# **Queried like a user queries.** The paper conditions each training mixture on the target anchor's *own*
# condition $c(s)$. A user querying by example gives *other* recordings of the sound. With `query_other` = p,
# a fraction p of the training items is conditioned instead on the mean condition of `query_examples` other
# anchors of the same class (from other clips) — the model cannot lean on the exact recording in the mixture.

# %% tags=["parameters"]
# ussnb-parameters: train  (the typed lines of ussnb.config.TrainSection: defaults, help)
sed_dir: str = "runs/dev/01_weak_labels_and_sed"  # stage 01 output (tagger, for learnable conditions)
anchors_dir: str = "runs/dev/02_anchor_mining"  # stage 02 output (cached anchors)
stage_dir: str = "runs/dev/04_training"  # this stage's output folder
INTERACTIVE: bool = True  # False under papermill

# %%
import json
import time
from pathlib import Path

import numpy as np
import torch
from IPython.display import Audio, display

from ussnb.config import from_namespace
from ussnb.run import Run
from ussnb.runtime import configure_threads
from ussnb import plots
from ussnb.io import write_metrics, write_timing
from ussnb.separators import build_separator
from ussnb.train import AnchorAudio, TrainConfig, condition_vectors, separate_batch, train_separator, validation_set

configure_threads()  # one thread set-up for the kit (ussnb.runtime): the pipeline's --threads, BLAS 1
stage = Path(stage_dir)
(stage / "figures").mkdir(parents=True, exist_ok=True)
run = Run.from_dirs(sed_dir=sed_dir, anchors_dir=anchors_dir, training_dir=stage_dir)  # ussnb.run.Run owns the layout
train_dir, val_dir = run.anchors_dir("train"), run.anchors_dir("validation")

# %% [markdown]
# ## The architecture

# %%
cfg = TrainConfig.from_params(vars(from_namespace("train", globals())))  # the parameters above, typed
print(cfg)
query_net = None
if condition in ("finetune", "shortcut", "adaptor"):
    from ussnb.queries import QueryNet

    query_net = QueryNet(run.tagger(), condition, output="embedding")
train_anchors = run.anchors("train")
from ussnb.train import condition_size

demo = build_separator(separator, separator_preset, condition_size=condition_size(train_anchors, condition, query_net))
total = sum(p.numel() for p in demo.parameters())
print(f"{separator} ({separator_preset}): {total / 1e6:.2f} M trainable parameters, {demo.sample_rate} Hz")
for name, module in demo.named_children():
    n = sum(p.numel() for p in module.parameters())
    if n:
        print(f"  {name:24s} {n:>10,d}")

# %% [markdown]
# ## Train (checkpoints are atomic; re-running resumes exactly where it stopped)

# %%
t0 = time.time()
model, history = train_separator(train_dir, val_dir, stage, cfg, query_net=query_net, progress=True)
train_minutes = (time.time() - t0) / 60
ref = json.loads(run.validation_path.read_text())
print(f"trained in {train_minutes:.1f} min; floor {ref['floor_sdri']:.2f} dB, IRM ceiling {ref['irm_sdri']:.2f} dB")
plots.training_curves(history, ("loss",), eval_keys=("val_sdri",),
                      references={"floor x/2": ref["floor_sdri"], "IRM ceiling": ref["irm_sdri"]},
                      title=f"{separator}, {condition} condition: loss and validation SDRi (dB)",
                      path=stage / "figures" / "training.png")

# %% [markdown]
# ## Listen: a validation mixture, the estimate, the target

# %%
val_anchors = run.anchors("validation")
val_audio = AnchorAudio(val_anchors, model.sample_rate, progress=False)
val = validation_set(val_anchors, val_audio, 8, seed, int(model.config.get("n_fft", 2048)),
                     int(model.config.get("hop", 320)), cfg.min_rms_db)
if query_net is None:
    cond = condition_vectors(val_anchors, val["anchor"], condition)
else:
    with torch.inference_mode():
        cond = query_net(torch.from_numpy(val_audio[val["anchor"]])).numpy()
est = separate_batch(model, val["mixture"], cond)
labels = val_anchors.meta["labels"]
print("target class:", labels[val["label"][0]])
for name, wave in (("mixture", val["mixture"][0]), ("estimate", est[0]), ("target", val["target"][0])):
    print(name)
    display(Audio(wave, rate=model.sample_rate))

# %%
final = [h for h in history if "val_sdri" in h][-1]
metrics = {"separator": separator, "condition": condition, "steps": steps, "val_sdri": final["val_sdri"],
           "val_sdri_mean": final["val_sdri_mean"], "floor_sdri": round(ref["floor_sdri"], 4),
           "irm_sdri": round(ref["irm_sdri"], 4), "above_floor_db": round(final["val_sdri"] - ref["floor_sdri"], 4),
           "val_sdri_curve": [[h["step"], h["val_sdri"]] for h in history if "val_sdri" in h]}
write_metrics(stage, metrics)  # results only: identical on a re-run
write_timing(stage, {"train_minutes": train_minutes, "steps_per_second": steps / max(train_minutes * 60, 1e-9)})
metrics
