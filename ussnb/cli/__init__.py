"""The ``ussnb`` command. Run ``ussnb --help`` or ``ussnb COMMAND --help``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import ConfigError, DataError, UssnbError

EPILOG = """examples:
  ussnb data prepare starter            build the offline starter set (real recordings, weak labels)
  ussnb data prepare folder DIR --tags tags.csv   your own tagged audio files as a weakly labelled dataset
  ussnb data info starter --json        classes, clips per split, hours
  ussnb labels dog                      find AudioSet labels by name
  ussnb labels --text "a dog barking in the distance"   rank classes for a description
  ussnb pipeline --preset cpu --run-dir runs/cpu        run notebooks 00-06 headless
  ussnb pipeline --preset smoke --run-dir runs/smoke -p n_train=20
  ussnb lab runs/cpu                    JupyterLab on that run: its executed notebooks + interactive copies
  ussnb sweep --list                    the paper's ablation tables the kit can regenerate
  ussnb sweep table7 --preset sweep --out sweeps/table7 --seeds 2   one of them, 2 seeds per arm

environment: USSNB_DATA (where datasets go, default ./data), USSNB_AUDIOSET_META, USSNB_ESC50_DIR,
USSNB_WEIGHTS_DIR — see README.md."""


def _split_pairs(items: list[str] | None, option: str) -> dict[str, str]:
    """``["train=a.csv", "test=b.csv"]`` → ``{"train": "a.csv", "test": "b.csv"}``; anything else is a
    :class:`ConfigError` naming the option."""
    out: dict[str, str] = {}
    for item in items or []:
        split, sep, value = item.partition("=")
        if not sep or not split.strip() or not value.strip():
            raise ConfigError(f"{option} {item!r}: expected SPLIT=PATH, e.g. {option} train=balanced_train.csv")
        if split.strip() in out:
            raise ConfigError(f"{option}: split {split.strip()!r} is given twice")
        out[split.strip()] = value.strip()
    return out


def _cmd_data_prepare(args) -> int:
    from .. import data

    kwargs = {}
    for key in ("n_train", "n_validation", "n_test"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    if args.install:
        if args.name != "starter":
            raise UssnbError("--install installs the starter set's system packages; only for `data prepare starter`")
        from ..data.recipes.starter import install_requirements

        install_requirements()
    if args.name != "folder" and (args.path or args.tags or args.dataset_name):
        raise ConfigError(f"PATH / --tags / --dataset-name are for `data prepare folder PATH --tags tags.csv`, not "
                          f"{args.name}")
    if args.name == "folder":
        if not args.path:
            raise ConfigError("`ussnb data prepare folder PATH --tags tags.csv`: give the folder of your audio files")
        from ..data.recipes.folder import prepare_folder

        path = prepare_folder(args.path, args.tags, name=args.dataset_name, seed=args.seed, force=args.force)
        print(f"prepared {path.name} at {path} — train on it with `ussnb pipeline -p dataset={path}` "
              f"(or combine: -p \"dataset=[starter, {path}]\")")
        return _cmd_data_info(argparse.Namespace(name=str(path), json=False))
    if args.name == "audioset":
        segments = _split_pairs(args.segments, "--segments")
        dirs = _split_pairs(args.audio_dir, "--audio-dir")
        if not segments:
            raise DataError("audioset needs its segments CSVs and clip folders: `ussnb data prepare audioset "
                            "--segments train=CSV --audio-dir train=FOLDER`")
        path = data.prepare("audioset", segments=segments, audio_dirs=dirs, force=args.force)
    elif args.segments or args.audio_dir:
        raise ConfigError(f"--segments / --audio-dir are for `data prepare audioset`, not {args.name}")
    elif kwargs or args.seed:
        path = data.prepare_named(args.name, seed=args.seed, force=args.force, **kwargs)
    else:
        path = data.prepare(args.name, force=args.force)
    print(f"prepared {args.name} at {path}")
    return _cmd_data_info(argparse.Namespace(name=str(path), json=False))


def _cmd_data_info(args) -> int:
    from .. import data

    if args.name == "esc50-source":
        from ..data.recipes.esc50 import esc50_source_info

        print(json.dumps(esc50_source_info(), indent=1))
        return 0
    summary = data.info(args.name)
    if args.json:
        slim = {k: v for k, v in summary.items() if k not in ("classes", "sources")}
        print(json.dumps(slim))
        return 0
    print(f"{summary['name']}  ({summary['path']})")
    print(f"  classes: {summary['n_classes']}   hours: {summary['hours']}   rate: {summary['sample_rate']} Hz")
    print("  clips:   " + "  ".join(f"{s}={n}" for s, n in summary["n_clips"].items()))
    if "n_packages" in summary:
        print(f"  source packages: {summary['n_packages']}   min recordings per class: "
              f"{summary['min_recordings_per_class']}")
    for c in summary.get("classes", []):
        extra = f"{c.get('n_recordings', '')} recordings" if "n_recordings" in c else ""
        print(f"    {c['mid']:12s} {c['name']:40s} {extra}")
    return 0


def _cmd_labels(args) -> int:
    from ..ontology import load_ontology

    if args.rank_text is not None and args.text:
        raise ConfigError(f"give either part of a label name ({args.text!r}) or --text, not both")
    if args.top is not None and args.rank_text is None:
        raise ConfigError("--top goes with --text (the number of best-matching classes to print)")
    if args.rank_text is not None:
        if not args.rank_text.strip():
            raise ConfigError("--text is empty: describe the sound, e.g. --text \"a dog barking in the distance\"")
        top = 10 if args.top is None else args.top
        if top < 1:
            raise ConfigError(f"--top must be at least 1, got {top}")
        onto = load_ontology(args.meta)
        ranked = onto.rank_text(args.rank_text, top=top)
        print(f"{'score':>7s}  {'index':>5s}  {'mid':12s} {'name':40s} path")
        for lab, score in ranked:
            print(f"{score:7.2f}  {lab.audioset_index:5d}  {lab.mid:12s} {lab.name:40s} {' > '.join(onto.path(lab.mid))}")
        print(f"(best {len(ranked)} of {len(onto)} classes for {args.rank_text!r}: BM25, 3 × name + description, "
              f"from {onto.source})")
        return 0
    onto = load_ontology(args.meta)
    hits = onto.search(args.text or "")
    if not hits:
        close = onto.closest(args.text)
        print(f"no label contains {args.text!r}." + (f" Closest: {', '.join(close)}" if close else ""))
        return 1
    for lab in hits:
        print(f"{lab.audioset_index:4d}  {lab.mid:12s} {lab.name:40s} {' > '.join(onto.path(lab.mid))}")
    print(f"({len(hits)} of {len(onto)} labels, from {onto.source})")
    return 0


def _cmd_doctor(args) -> int:
    from ..doctor import run

    return run(verbose=args.verbose or args.all)


def add_device_options(parser, best: bool = False) -> None:
    """``--device`` and ``--precision`` (shared by ``ussnb separate``, ``ussnb pipeline``, ``python -m ussnb.train``)."""
    parser.add_argument("--device", default=None, metavar="auto|cpu|cuda|cuda:N",
                        help="where models run (default: USSNB_DEVICE, else auto = CUDA when available)")
    parser.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"] + (["best"] if best else []),
                        help="compute precision (default fp32; bf16/fp16: ResUNet runs a native low-precision "
                             "copy, other models autocast, trained weights stay fp32; fp16 needs CUDA"
                             + ("; best: the fastest mode measured here within 30 dB of fp32)" if best else ")"))


def _cmd_pipeline(args) -> int:
    from ..paths import check_output_folder, make_output_folder
    from ..pipeline import parse_overrides, run_pipeline

    run_dir = check_output_folder(args.run_dir, "--run-dir")
    created = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # innermost first
    make_output_folder(run_dir, "--run-dir")  # a run directory that cannot be written fails here, not mid-run
    try:
        run_dir = run_pipeline(args.preset, run_dir, overrides=parse_overrides(args.param or []),
                               stages=args.stages, force=args.force, notebooks_dir=args.notebooks,
                               log_output=args.verbose, threads=args.threads, device=args.device,
                               precision=args.precision)
    except UssnbError:
        for folder in created:  # refused before anything ran: leave no empty folders behind
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: a stage ran, and what it wrote is kept
        raise
    print(f"run directory: {run_dir}")
    return 0


def _cmd_compare(args) -> int:
    from ..eval.compare import compare_runs, comparison_table

    print(comparison_table(compare_runs(args.runs)))
    return 0


def _cmd_lab(args) -> int:
    from ..lab import prepare_lab, serve

    setup = prepare_lab(args.run_dir, notebooks_dir=args.notebooks, reset=args.reset)
    return serve(setup, port=args.port, threads=args.threads, open_browser=args.open)


def _cmd_sweep(args) -> int:
    from ..pipeline import parse_overrides
    from ..sweep import list_sweeps, run_sweep

    if args.list:
        print("\n".join(list_sweeps()))
        return 0
    if not args.name or not args.out:
        raise ConfigError("ussnb sweep NAME --preset P --out DIR: give a sweep name (ussnb sweep --list) and --out")
    table = run_sweep(args.name, args.preset, args.out, seeds=args.seeds, overrides=parse_overrides(args.param or []),
                      threads=args.threads, device=args.device, precision=args.precision,
                      notebooks_dir=args.notebooks, notebook=not args.no_notebook, log_output=args.verbose,
                      arms=args.arms)
    print(f"{len(table['rows'])} row(s); table: {Path(args.out) / 'table.md'}")
    return 0


def _cmd_separate(args) -> int:
    from .batch import run_separate

    from ..runtime import configure_threads

    configure_threads(args.threads)
    failures: list = []
    summary, failed = run_separate(
        args.inputs, args.out, args.checkpoint, query=args.query, examples=args.example, levels=args.levels,
        text=args.text, top=args.top, exclude=args.exclude, exclude_method=args.exclude_method,
        threshold=args.threshold, residual=args.residual, resample=args.resample, force=args.force,
        output_rate=args.output_rate, output_format=args.format,
        segment_seconds=args.segment, overlap=args.overlap, batch_size=args.batch_size,
        progress=not args.no_progress, device=args.device, precision=args.precision,
        on_failure=lambda path, exc: failures.append((path, exc)),
    )
    where = Path(args.out) / "summary.json"
    print(f"summary: {where} ({failed} input(s) failed)" if failed else f"summary: {where}")
    if failed:
        more = f" (and {failed - 1} more)" if failed > 1 else ""
        print(f"ussnb: error: {failed} input(s) failed — {failures[0][1]}{more}; the finished outputs are kept "
              f"(see {where})", file=sys.stderr)
    return 1 if failed else 0


SEPARATE_EPILOG = """examples:
  ussnb separate street.wav --query "Dog" --checkpoint runs/cpu --out separated/
  ussnb separate recordings/ --query "/m/0bt9lr" --checkpoint runs/cpu --out separated/ --residual
  ussnb separate film.flac --example bark1.wav bark2.wav --checkpoint runs/cpu --out separated/
  ussnb separate street.wav --text "a dog barking in the distance" --top 3 --checkpoint runs/cpu --out separated/
  ussnb separate film.flac --levels 1 2 3 --threshold 0.2 --checkpoint runs/cpu --out separated/
  ussnb separate street.wav --exclude "Dog" --checkpoint runs/cpu --out separated/
  ussnb separate street.wav --query "Music" --exclude "Male speech, man speaking" bark.wav --checkpoint runs/cpu --out separated/

outputs:
  --query / --example / --text: OUT/<input name>__<query slug>.wav (--text: slug text-<words of the text>),
      exactly one per input, with the input's sample rate and channels (--output-rate model: the model's rate,
      mono); with --residual also OUT/<input name>__<query slug>__residual.wav (the mixture minus the target).
      --format: wav = float32 (default), wav16 / wav24 = PCM, flac = 24-bit FLAC (files end in .flac).
  --exclude: the query's slug + -minus-<excluded slugs> (alone: all-minus-<excluded slugs>), e.g.
      OUT/street__all-minus-dog.wav; --residual then holds what was removed.
  --levels: OUT/<input name>/level=<L>/<ontology node>.wav for every node of level L active in at least one
      2 s segment (silent where inactive; float32 at the model's rate), OUT/<input name>/summary.json.
  OUT/summary.json lists every input with its outputs and status (done, skipped, failed).
  Input names are the file stems; inputs with the same stem (a/x.wav, b/x.wav) get a folder + hash suffix.

Long inputs are streamed from disk in blocks and separated in overlapping chunks that are cross-faded (no
clicks at chunk borders), so memory does not grow with the input's length. Separation runs once on the
channels' mean at the model's rate (inputs at another rate are resampled to it; --no-resample: an error
instead); by default the estimate is then resampled back and applied to each channel by a time-frequency mask
(perf/stereo_output.py: better than separating each channel on its own)."""


EXPORT_EPILOG = """examples:
  ussnb export runs/cpu --format torchscript --out exported/ts
  ussnb export runs/cpu/04_training/separator.pt --format onnx --out exported/onnx

what cannot be exported, and why:
  - shapes are fixed at export (--batch, --seconds): the trace bakes in the STFT frame count, the U-Net's time
    padding and the output length; pad a short last batch with zeros.
  - ONNX has no complex tensors and no inverse STFT, and the exporter refuses torch.stft with complex output:
    the ONNX graph computes STFT and iSTFT as convolutions with fixed DFT kernels (the same transform).
  - the query net is not exported to ONNX (the taggers' log-mel front ends call torch.stft with complex output
    too); --format torchscript exports it as query_net.pt.
  - fp32 only; ResUNet's oneDNN fused convolution (a CPU-only op) is traced as plain convolutions."""


def _cmd_export(args) -> int:
    from ..export import export

    m = export(args.source, args.out, args.format, seconds=args.seconds, batch=args.batch,
               query_net=not args.no_query_net)
    for key, err in m["parity_max_abs"].items():
        print(f"{key}: {m['files'][key]} — max |Δ| vs eager {err:.3g} (tolerance {m['parity_tolerance']:g})")
    for note in m["notes"]:
        print(f"note: {note}")
    print(f"wrote {args.out} (README.md: the input/output contract)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ussnb",
        description="Universal sound source separation trained on weakly labelled data — a notebook kit.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (debug notes, notebook output)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_data = sub.add_parser("data", help="prepare or describe a dataset")
    p_data.set_defaults(missing_action=(p_data, "prepare, info"))
    dsub = p_data.add_subparsers(dest="data_command", metavar="ACTION")
    p_prep = dsub.add_parser("prepare", help="build a dataset (idempotent)",
                             description="Build a dataset under USSNB_DATA (default ./data). Already prepared "
                                         "datasets are left alone unless --force.")
    p_prep.add_argument("name", choices=["starter", "esc50", "audioset", "folder"], help="dataset to prepare")
    p_prep.add_argument("path", nargs="?", help="folder: your folder of audio files (with --tags CSV)")
    p_prep.add_argument("--tags", help="folder: CSV with columns file, labels (AudioSet names or MIDs, comma-"
                                       "separated)[, split] (default PATH/tags.csv)")
    p_prep.add_argument("--dataset-name", help="folder: name of the prepared dataset (default: the folder's name)")
    p_prep.add_argument("--n-train", type=int, help="composed training clips")
    p_prep.add_argument("--n-validation", type=int, help="composed validation clips")
    p_prep.add_argument("--n-test", type=int, help="composed test clips")
    p_prep.add_argument("--seed", type=int, default=0, help="composition seed")
    p_prep.add_argument("--force", action="store_true", help="rebuild even if prepared")
    p_prep.add_argument("--install", action="store_true",
                        help="starter: first install its missing Debian/PyPI packages (apt-get as root; otherwise "
                             "prints the exact command to run)")
    p_prep.add_argument("--segments", nargs="*", metavar="SPLIT=CSV", help="audioset: segments CSV per split")
    p_prep.add_argument("--audio-dir", nargs="*", metavar="SPLIT=DIR", help="audioset: clip folder per split")
    p_prep.set_defaults(func=_cmd_data_prepare)
    p_info = dsub.add_parser("info", help="classes, clips per split and hours of a prepared dataset")
    p_info.add_argument("name", help="dataset name (starter, esc50, audioset) or folder; 'esc50-source' "
                                     "describes the raw ESC-50 folder")
    p_info.add_argument("--json", action="store_true", help="one JSON object (n_classes, n_clips, hours, ...)")
    p_info.set_defaults(func=_cmd_data_info)

    p_labels = sub.add_parser("labels", help="find AudioSet labels by name (index, MID, ontology path)")
    p_labels.add_argument("text", nargs="?", default="", help="part of a label name; empty lists all")
    p_labels.add_argument("--text", dest="rank_text", metavar="TEXT",
                          help="rank the classes for a free description instead (e.g. \"a dog barking in the "
                               "distance\"): BM25 over class names (× 3) and ontology descriptions, with scores")
    p_labels.add_argument("--top", type=int, default=None, metavar="K",
                          help="--text: how many classes to print (default 10)")
    p_labels.add_argument("--meta", help="folder with ontology.json + class_labels_indices.csv "
                                         "(default USSNB_AUDIOSET_META, else the starter mini-ontology)")
    p_labels.set_defaults(func=_cmd_labels)

    p_pipe = sub.add_parser("pipeline", help="run the notebooks in order with papermill",
                            description="Execute notebooks/NN_*.ipynb headless into RUN_DIR/NN_stage/, "
                                        "skipping stages already done with the same parameters.")
    p_pipe.add_argument("--preset", default="cpu", help="smoke | cpu | paper | a YAML file (default: cpu)")
    p_pipe.add_argument("--run-dir", default="runs/cpu", help="output folder of the run (default runs/cpu)")
    p_pipe.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                        help="override a notebook parameter (repeatable)")
    p_pipe.add_argument("--stages", nargs="*", help="run only these stages (e.g. 00 01 or data sed)")
    p_pipe.add_argument("--force", action="store_true", help="re-run stages even if done")
    p_pipe.add_argument("--notebooks", help="folder of the stage notebooks (default: the repository's)")
    add_device_options(p_pipe)
    p_pipe.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads per notebook kernel (default: the preset's `threads`, else the cores "
                             "available; BLAS always 1)")
    p_pipe.set_defaults(func=_cmd_pipeline)

    p_cmp = sub.add_parser("compare", help="finished runs side by side: seen vs unseen SDRi beside the floor",
                           description="One markdown table of the zero-shot evaluation (stage 06) of finished runs, "
                                       "e.g. the zero-shot and zs2021 presets: tagger, separator, condition, and per "
                                       "benchmark the seen and unseen classes queried by example (per-class median, "
                                       "then mean, dB) beside the floor and the IRM, with the run's minutes.")
    p_cmp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (ussnb pipeline --run-dir)")
    p_cmp.set_defaults(func=_cmd_compare)

    p_lab = sub.add_parser(
        "lab", help="JupyterLab on the notebooks, with a finished run's outputs wired in",
        description="Start JupyterLab on 127.0.0.1 with a token and print its URL. For a run directory: its "
                    "executed notebooks (NN_stage/NN_stage.ipynb, outputs kept) and fresh copies in RUN_DIR/lab/ "
                    "parameterised for the run (INTERACTIVE=True: the widgets work; they read the run's stage "
                    "folders and write into RUN_DIR/lab/NN_stage/, never over the run's results). Without "
                    "RUN_DIR: the repository's notebooks. Stop with Ctrl-C.")
    p_lab.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a run made by `ussnb pipeline` (e.g. runs/cpu)")
    p_lab.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    p_lab.add_argument("--open", action="store_true", help="also open the URL in a web browser")
    p_lab.add_argument("--reset", action="store_true", help="make the fresh copies in RUN_DIR/lab/ anew (default: "
                                                            "a copy you edited is kept)")
    p_lab.add_argument("--notebooks", help="folder of the stage notebooks (default: the repository's)")
    p_lab.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch threads per kernel (default: the run's, else the cores available)")
    p_lab.set_defaults(func=_cmd_lab)

    p_sweep = sub.add_parser(
        "sweep", help="regenerate one of the paper's ablation tables (a pipeline run per arm and seed)",
        description="Run a sweep (ussnb/sweeps/NAME.yaml or a YAML path): one pipeline run per arm and seed into "
                    "OUT/arms/, sharing the unchanged upstream stages (stages 00-01 run once; an arm re-runs from "
                    "the first stage its parameter touches; stage 05 is not run). Resumable: run the same command "
                    "again after an interruption; the same command started in a second terminal (--threads 1 each) "
                    "shares the arms. Writes OUT/table.json, OUT/table.md and runs "
                    "notebooks/07_ablations.ipynb into OUT (figures in OUT/figures).")
    p_sweep.add_argument("name", nargs="?", help="table3 ... table9 (see --list) or a sweep YAML file")
    p_sweep.add_argument("--list", action="store_true", help="list the sweeps with their paper tables")
    p_sweep.add_argument("--preset", default="sweep", help="preset of every arm (default: sweep, ~5 min training "
                                                         "per arm on 2 cores)")
    p_sweep.add_argument("--out", help="output folder of the sweep")
    p_sweep.add_argument("--arms", nargs="+", metavar="VALUE",
                         help="run only these arms (values or labels, e.g. --arms 0.5 1 2); the others stay in the "
                              "table as the paper's rows, not run")
    p_sweep.add_argument("--seeds", type=int, default=1, metavar="K",
                         help="repeat every arm with seeds 0..K-1 (train and mining seed): mean ± spread, "
                              "differences below the spread marked within noise (default 1)")
    p_sweep.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                         help="override a parameter of every arm (repeatable)")
    p_sweep.add_argument("--no-notebook", action="store_true", help="do not run notebooks/07_ablations.ipynb")
    p_sweep.add_argument("--notebooks", help="folder of the stage notebooks (default: the repository's)")
    add_device_options(p_sweep)
    p_sweep.add_argument("--threads", type=int, default=None, metavar="N", help="torch threads per kernel")
    p_sweep.set_defaults(func=_cmd_sweep)

    p_exp = sub.add_parser(
        "export", help="export a trained separator (and its query net) to TorchScript or ONNX",
        description="Write the separator of a run directory or separator.pt as a TorchScript (separator.pt, and "
                    "query_net.pt for query by example) or ONNX (separator.onnx) file into DIR, with README.md "
                    "(the input/output contract), classes.tsv, class_conditions.npy and export.json, and check it "
                    "against the eager model on random input (max |Δ| on the waveform ≤ 1e-4, else exit 1).",
        epilog=EXPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_exp.add_argument("source", metavar="RUN_DIR_OR_CKPT", help="a pipeline run directory or a separator.pt")
    p_exp.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript",
                       help="torchscript (default; also exports the query net) or onnx (separator only)")
    p_exp.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p_exp.add_argument("--seconds", type=float, default=2.0,
                       help="chunk length the exported graph takes, seconds at the model's rate (default 2.0, "
                            "what ussnb separate uses); shapes are fixed at export")
    p_exp.add_argument("--batch", type=int, default=8, help="chunks per call, fixed at export (default 8)")
    p_exp.add_argument("--no-query-net", action="store_true", help="export the separator only")
    p_exp.set_defaults(func=_cmd_export)

    p_doc = sub.add_parser("doctor", help="check that this machine can run the kit; print the commands that fix it",
                           description="Checks the Debian packages, Python dependencies, the torch build and thread "
                                       "settings, the Jupyter kernel, the starter data and optional weights/datasets. "
                                       "Exit 1 when something required is missing.")
    p_doc.add_argument("--all", action="store_true", help="list every Python package, not only the missing ones")
    p_doc.set_defaults(func=_cmd_doctor)

    p_sep = sub.add_parser(
        "separate", help="separate a class, an example's sound or a whole ontology level from audio files",
        description="Query-conditioned separation of audio files with a trained separator: one class (by name, "
                    "MID or index → its class-average condition), the sound of your example files (query by "
                    "example), or hierarchical separation by AudioSet ontology levels (Algorithm 3 of Kong et "
                    "al. 2023).",
        epilog=SEPARATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p_sep.add_argument("inputs", nargs="+", metavar="IN", help="audio files and/or folders (every audio file in a "
                                                               "folder is processed)")
    what = p_sep.add_mutually_exclusive_group()  # one of them, or --exclude alone (checked by run_separate)
    what.add_argument("--query", metavar="TEXT", help="class to extract: display name (e.g. \"Dog\"), AudioSet MID "
                                                      "or class index; also a saved condition .npy/.npz")
    what.add_argument("--text", metavar="DESCRIPTION",
                      help="a free description of the sound (e.g. \"a dog barking in the distance\"): the model's "
                           "classes are ranked by BM25 over their names and ontology descriptions (no network) and "
                           "the best --top are mixed, their class-average conditions weighted by score")
    what.add_argument("--example", nargs="+", metavar="AUDIO", help="example recordings of the sound to extract "
                                                                    "(query by example; needs a tagger-based model)")
    what.add_argument("--levels", nargs="+", type=int, metavar="L", help="hierarchical separation: ontology levels "
                                                                         "(1 = the 7 top categories, up to 6)")
    p_sep.add_argument("--exclude", nargs="+", metavar="CLASS_OR_EXAMPLE",
                       help="sounds to remove — class names / MIDs / indices or example audio files: alone, the "
                            "mixture minus them; with --query / --text / --example, the target minus them")
    p_sep.add_argument("--exclude-method", choices=["residual", "condition"], default=None,
                       help="residual (default, measured better in perf/negative_queries.py): separate each excluded "
                            "sound from the current estimate (or the mixture) and subtract it, one more pass per "
                            "excluded sound; condition: one pass with the condition c_target − Σ c_excluded, "
                            "clipped at 0 (alone: each chunk's own tagged condition minus the excluded)")
    p_sep.add_argument("--top", type=int, default=None, metavar="K",
                       help="--text: how many best-matching classes to mix (default 3)")
    p_sep.add_argument("--threshold", type=float, default=None,
                       help="--levels: a node is active in a 2 s segment when its max probability ≥ this, in [0, 1] "
                            "(default: the per-level thresholds stage 05 calibrated for the run, else 0.2)")
    p_sep.add_argument("--checkpoint", required=True, metavar="CKPT_OR_RUN_DIR",
                       help="a trained separator.pt, or a pipeline run directory (then its tagger and class-average "
                            "conditions are used too)")
    p_sep.add_argument("--out", required=True, metavar="DIR", help="output folder (not inside an input folder)")
    p_sep.add_argument("--residual", action="store_true", help="also write the residual (everything else) track")
    p_sep.add_argument("--resample", action=argparse.BooleanOptionalAction, default=True,
                       help="convert inputs at another sample rate to the model's for separation (default); "
                            "--no-resample makes a rate mismatch an error")
    p_sep.add_argument("--output-rate", choices=["input", "model"], default=None,
                       help="input (default): the output has the input's sample rate and channels (the estimate of "
                            "the channels' mean, resampled back and applied to every channel by a time-frequency "
                            "mask); model: the model's rate, mono")
    p_sep.add_argument("--format", choices=["wav", "flac", "wav16", "wav24"], default=None,
                       help="output files: wav = float32 WAV (default), wav16 / wav24 = 16 / 24-bit PCM WAV "
                            "(clipped to ±1), flac = 24-bit FLAC")
    p_sep.add_argument("--force", action="store_true", help="redo inputs whose outputs already exist")
    p_sep.add_argument("--segment", type=float, default=2.0, metavar="SECONDS",
                       help="chunk length, > 0 and ≤ 600 (default 2.0)")
    p_sep.add_argument("--overlap", type=float, default=0.25, metavar="FRACTION",
                       help="fraction of a chunk cross-faded with the next, in [0, 1) (default 0.25)")
    p_sep.add_argument("--batch-size", type=int, default=8, help="chunks per forward pass, 1..1024 (default 8)")
    p_sep.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch CPU threads (default: the cores available; BLAS always 1)")
    p_sep.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_device_options(p_sep, best=True)
    p_sep.set_defaults(func=_cmd_separate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        if getattr(args, "missing_action", None):
            sub_parser, actions = args.missing_action
            sub_parser.error(f"choose an action: {actions}")  # exits 2
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UssnbError as exc:
        print(f"ussnb: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ussnb: interrupted (finished work is kept; re-run to continue)", file=sys.stderr)
        return 130

