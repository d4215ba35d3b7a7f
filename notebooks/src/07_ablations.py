# %% [markdown]
# # 07 · Ablations: the paper's tables regenerated at this scale (Kong et al. 2023, Tables 3-9)
#
# `ussnb sweep NAME --preset sweep --out DIR --seeds K` trains one separator per *arm* (a value of one
# parameter: the condition type, the separator, the anchor duration $\tau$, the mining strategy, the number of
# sources $J$, the mixing augmentation) and seed, each a pipeline run sharing the unchanged upstream stages, and
# scores it with stage 06's protocol: SDRi of the class-average query (eq. 9) on the starter pairs, per-class
# median then mean over classes, beside the floor $\hat s = x/2$ (≈ 3 dB on 0 dB pairs) and the IRM ceiling on the
# very same mixtures. This notebook (run by `ussnb sweep` at the end, or by hand on a sweep folder) puts our
# table beside the paper's, draws the arms with the floor and ceiling, and says in one sentence whether the
# paper's ordering holds here, reverses, or is within noise.
#
# **Noise.** With $K$ seeds (training seed and mining seed) an arm is reported as mean ± spread (the sample
# standard deviation over seeds). A difference between two arms smaller than the larger of their spreads is
# *within noise*; with one seed no ordering is claimed. The paper's numbers are AudioSet (or FSDKaggle2018)
# SDRi after 600 k steps on a GPU; ours are minutes on 2 CPU cores on the offline starter set — the question is
# whether the *ordering* survives, not the values.

# %% tags=["parameters"]
# ussnb-parameters: ablations  (the typed lines of ussnb.config.AblationsSection: defaults, help)
sweep_dir: str = "sweeps/table7"  # a finished sweep folder (ussnb sweep ... --out), or a folder of them
INTERACTIVE: bool = True  # False under papermill: no widgets, static figures only

# %%
from pathlib import Path

from IPython.display import Markdown, display

from ussnb import plots
from ussnb import sweep as S

folders = S.finished_sweeps(sweep_dir)
print(f"{len(folders)} finished sweep(s) in {sweep_dir}:", ", ".join(f.name for f in folders))

# %% [markdown]
# ## Each sweep: our table beside the paper's, the arms with floor and ceiling, one sentence

# %%
sentences = {}
for folder in folders:
    sweep, table = S.load_table(folder)
    m = metric or table["metric"]
    summary = table["summary"]
    sentence = S.sweep_sentence(sweep, summary, table["rows"], m)  # from the data: verdict, then warnings
    sentences[sweep.name] = sentence
    display(Markdown(S.table_markdown(sweep, summary, preset=table["preset"], seeds=table["seeds"],
                                      sentence=sentence)))
    col = S.paper_column(sweep)
    entries = [e.get(m) or {} for e in summary]
    floors = [e["floor"] for e in entries if e.get("floor") is not None]
    ceilings = [e["ceiling"] for e in entries if e.get("ceiling") is not None]
    plots.sweep_bars([e["arm"] for e in summary], [e.get("mean") for e in entries], [e.get("spread") for e in entries],
                     floor=sum(floors) / len(floors) if floors else None,
                     ceiling=sum(ceilings) / len(ceilings) if ceilings else None,
                     paper={a.label: a.paper[col] for a in sweep.arms if col and col in a.paper},
                     paper_label=S.PAPER_COLUMNS.get(col, "paper"), ours_label=f"ours: {S.METRICS[m][0]}",
                     title=f"{sweep.name}: {sweep.title} ({sweep.paper_table})",
                     path=folder / "figures" / f"{sweep.name}_{m}.png")
    print(sentence)

# %% [markdown]
# ## The sentences (also in each sweep's table.json / table.md)

# %%
for name, sentence in sentences.items():
    print(f"- {sentence}")
