# %% [markdown]
# # 03 · Query conditions (paper §3.4)
#
# The separator is told *what* to extract by a condition vector $c$. For an anchor $x$ of class $k$:
#
# | type | $c$ | needs the label? |
# |---|---|---|
# | `onehot` | $e_k \in \{0,1\}^K$ | yes — no zero-shot |
# | `soft` | tagger probabilities $p_{AT}(x) \in [0,1]^K$ | no |
# | `embedding` | tagger penultimate layer $h(x) \in \mathbb{R}^H$ | no |
# | `finetune` / `shortcut` / `adaptor` | learnable on top of the tagger (trained in stage 04) | no |
#
# At inference a class is queried by the **average condition** of many of its examples (eq. 9),
# $\bar c_k = \frac{1}{N}\sum_{n=1}^{N} c(x_n^k)$ — computed here from the training anchors and saved — or by
# the user's own examples (query by example, which also reaches classes never trained on).

# %% tags=["parameters"]
# ussnb-parameters: queries  (the typed lines of ussnb.config.QueriesSection: defaults, help)
data_dir: str = "runs/dev/00_data"  # stage 00 output
sed_dir: str = "runs/dev/01_weak_labels_and_sed"  # stage 01 output (tagger)
anchors_dir: str = "runs/dev/02_anchor_mining"  # stage 02 output (cached anchors)
stage_dir: str = "runs/dev/03_query_conditions"  # this stage's output folder
INTERACTIVE: bool = True  # False under papermill

# %%
from pathlib import Path

import numpy as np
import torch

from ussnb.run import Run
from ussnb.runtime import configure_threads
from ussnb import plots
from ussnb.io import write_metrics
from ussnb.audio import save_audio
from ussnb.queries import QueryNet, class_average_conditions, onehot, query_by_example, save_conditions

configure_threads()  # one thread set-up for the kit (ussnb.runtime): the pipeline's --threads, BLAS 1
stage = Path(stage_dir)
(stage / "figures").mkdir(parents=True, exist_ok=True)
run = Run.from_dirs(data_dir=data_dir, sed_dir=sed_dir, anchors_dir=anchors_dir, queries_dir=stage_dir)  # the layout
ds = run.dataset()
tagger = run.tagger()
train = run.anchors("train")
names = [ds.label_names[m] for m in ds.labels]
K = len(ds.labels)

# %% [markdown]
# ## The condition types side by side, for a few anchors

# %%
import matplotlib.pyplot as plt

idx = [int(v[0]) for v in list(train.by_class().values())[:4]]
kinds = {"onehot": onehot(train.label[idx], K), "soft": train.conditions("soft")[idx],
         "embedding": train.conditions("embedding")[idx]}
fig, axes = plt.subplots(1, 3, figsize=(12, 2.4))
for ax, (kind, m) in zip(axes, kinds.items()):
    ax.imshow(m, aspect="auto", cmap="viridis")
    ax.set_title(f"{kind} ({m.shape[1]} dims)")
    ax.set_yticks(range(len(idx)))
    ax.set_yticklabels([names[k][:18] for k in train.label[idx]], fontsize=7)
fig.tight_layout()
fig.savefig(stage / "figures" / "condition_types.png", dpi=110)

# %% [markdown]
# ## Class-average conditions (eq. 9), saved for separation and evaluation

# %%
saved = {}
for kind in ("soft", "embedding"):
    avg, counts = class_average_conditions(train.conditions(kind), train.label, K)
    saved[kind] = save_conditions(run.conditions_path(kind), avg, kind=kind, labels=ds.labels, counts=counts,
                                  tagger=getattr(tagger, "name", None), names=names)
avg_onehot = np.eye(K, dtype=np.float32)
save_conditions(run.conditions_path("onehot"), avg_onehot, kind="onehot", labels=ds.labels,
                counts=np.bincount(train.label, minlength=K), names=names)
print({k: str(v) for k, v in saved.items()})

# %% [markdown]
# ## Do embeddings group by class? PCA of the anchors' embeddings, and class similarity

# %%
emb = train.conditions("embedding").astype(np.float64)
centred = emb - emb.mean(0)
_, _, vt = np.linalg.svd(centred, full_matrices=False)
points = centred @ vt[:2].T
plots.embedding_map(points, train.label, names, title="PCA of anchor embeddings (colour = class)",
                    path=stage / "figures" / "embedding_pca.png")
avg_emb, counts = class_average_conditions(train.conditions("embedding"), train.label, K)
unit = avg_emb / (np.linalg.norm(avg_emb, axis=1, keepdims=True) + 1e-12)
similarity = unit @ unit.T
plots.similarity_matrix(similarity, names, title="cosine similarity of class-average embeddings",
                        path=stage / "figures" / "class_similarity.png")
# how separable: nearest class-average (cosine) of each anchor's embedding = its own class?
e_unit = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
nearest = np.argmax(e_unit @ unit.T, axis=1)
centroid_accuracy = float(np.mean(nearest == train.label))
print(f"anchors whose nearest class-average embedding is their own class: {centroid_accuracy:.3f} (chance {1 / K:.3f})")

# %% [markdown]
# ## Query by example
# The condition of your own recordings: the average over their non-silent 2 s segments. Without files given,
# two test anchors of one class stand in for "the user's examples".

# %%
files = [Path(f) for f in example_files]
if not files:
    test = run.anchors("test")
    by_class = test.by_class()
    k = max(by_class, key=lambda c: len(by_class[c]))
    for j, i in enumerate(by_class[k][:2]):
        files.append(save_audio(stage / f"example_{j}.wav", test.segment_audio(int(i)), test.sample_rate))
    print("examples of:", names[k])
query = QueryNet(tagger, "soft")
c = query_by_example(files, query)
top = np.argsort(-c)[:5]
print("query-by-example condition, top classes:", [(names[j], round(float(c[j]), 3)) for j in top])
np.save(stage / "query_by_example.npy", c)

# %%
if INTERACTIVE:  # pick a class: the classes whose class-average embeddings are closest to its own
    from ussnb.widgets import SimilarClasses

    display(SimilarClasses(names, similarity))

# %%
metrics = {"condition_dims": {k: int(v.shape[1]) for k, v in kinds.items()},
           "classes_with_anchors": int((counts > 0).sum()),
           "embedding_centroid_accuracy": round(centroid_accuracy, 4)}
write_metrics(stage, metrics)
metrics
