"""Training-step cost of the separators side by side in one run (random weights and inputs: the cost does not
depend on the content).

One step = forward + negative-SDR-like loss + backward + AdamW step on a batch of ``--items`` 2 s mixtures at
the model's rate with a random condition (``--condition-size``, 192 = HTS-AT-small's latent width). Each model
runs ``--steps`` steps after one untimed warm-up; the median is printed with the ratio to the first model.
Used to size the ``zs2021`` preset's U-Net (``separator_preset: cpu``)::

    python perf/separator_train_step.py                 # meltcn default, unet tiny / cpu / small, 1 thread
    python perf/separator_train_step.py --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ussnb.separators import build_separator

MODELS = [("meltcn", "default"), ("unet", "tiny"), ("unet", "cpu"), ("unet", "small"), ("resunet30", "small")]


def step_seconds(name: str, preset: str, items: int, condition_size: int, steps: int) -> tuple[float, int]:
    torch.manual_seed(0)
    model = build_separator(name, preset, condition_size=condition_size).train()
    sr = int(model.config.get("sample_rate", 16000)) if hasattr(model, "config") else 16000
    x = torch.randn(items, 1, 2 * sr) * 0.1
    c = torch.randn(items, condition_size)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        out = model(x, c)
        out = out["waveform"] if isinstance(out, dict) else out
        loss = -(out * x).mean() / (out.pow(2).mean() + 1e-8).sqrt()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # the first step builds oneDNN kernels
            times.append(time.perf_counter() - t)
    return statistics.median(times), sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--items", type=int, default=16, help="mixtures per step (batch_size x 2 with both targets)")
    parser.add_argument("--condition-size", type=int, default=192)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", nargs="*", help="name/preset pairs, e.g. unet/cpu meltcn/default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = [tuple(m.split("/")) for m in args.models] if args.models else MODELS
    print(f"| model | preset | parameters | s per step ({args.items} x 2 s, {args.threads} thread(s)) | ratio |")
    print("|---|---|---|---|---|")
    first = None
    for name, preset in models:
        sec, params = step_seconds(name, preset, args.items, args.condition_size, args.steps)
        first = first or sec
        print(f"| {name} | {preset} | {params:,} | {sec:.2f} | {sec / first:.2f} |", flush=True)


if __name__ == "__main__":
    main()
