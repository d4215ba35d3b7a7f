"""What a GPU machine can do with the kit, in one self-contained run (≤ 5 minutes; no datasets, no downloads).

    python perf/gpu_check.py            # on any machine with the repo installed (pip install -e .)
    python perf/gpu_check.py --quick    # fewer repeats

On CUDA it prints, for the paper's ResUNet30 (26.6 M parameters, 32 kHz, random weights):
  * the device(s), torch and CUDA versions;
  * the forward time of 10 s of audio in fp32, bf16 and fp16 (autocast; warm-up, then the median of N);
  * the output SDR of bf16 / fp16 and of the GPU fp32 output against the CPU fp32 output on the same weights;
  * training steps/s at batch 16 of the ``paper`` separator on synthetic 2 s mixtures (L1 loss, AdamW), in fp32
    and bf16, and the peak GPU memory;
  * with ≥ 2 GPUs: a 2-process NCCL all-reduce (the DDP path of ``torchrun -m ussnb.train``).
On a CPU-only machine it says so, times the CPU part (one 2 s fp32 forward and the best mode of
``ussnb.separators.optimize``) and exits 0. The last line is one JSON object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_time(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _allreduce_worker(rank: int, world: int, port: int, queue) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    t = torch.full((1 << 20,), float(rank + 1), device=f"cuda:{rank}")
    dist.all_reduce(t)
    torch.cuda.synchronize()
    queue.put((rank, float(t[0])))
    dist.destroy_process_group()


def main() -> int:
    import torch

    from ussnb.separators import build_separator, optimize
    from ussnb.separators.optimize import output_sdr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--train-steps", type=int, default=20)
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    out: dict = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "cuda": torch.cuda.is_available()}
    print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, CUDA available: {out['cuda']}")
    torch.manual_seed(0)
    model = build_separator("resunet30", "paper", condition_size=527).eval()
    sr = model.sample_rate
    g = torch.Generator().manual_seed(0)
    x2 = 0.1 * torch.randn(1, 1, 2 * sr, generator=g)
    c = torch.rand(1, 527, generator=g)
    with torch.inference_mode():
        cpu_ref = model(x2, c)

    if not out["cuda"]:
        print("no CUDA GPU here: CPU part only")
        with torch.inference_mode():
            out["cpu_fp32_2s_seconds"] = round(_median_time(lambda: model(x2, c), 1), 3)
            best = optimize(model, "best", device="cpu", example_seconds=0.5, repeats=1)
        out["cpu_best_mode"] = best.mode
        out["cpu_candidates_0.5s"] = best.report["candidates"]
        print(f"CPU ResUNet30 2 s fp32: {out['cpu_fp32_2s_seconds']} s; best mode here: {best.mode} "
              f"({json.dumps(best.report['candidates'])})")
        print(json.dumps(out))
        return 0

    dev = torch.device("cuda")
    sync = torch.cuda.synchronize
    out["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    print("devices:", ", ".join(out["devices"]))
    x10 = (0.1 * torch.randn(1, 1, 10 * sr, generator=g)).to(dev)
    cd = c.to(dev)
    forward = {}
    with torch.inference_mode():
        fp32 = optimize(model, "fp32", device=dev)
        ref10 = fp32(x10, cd)
        out["cpu_gpu_fp32_sdr_db"] = round(output_sdr(cpu_ref, fp32(x2.to(dev), cd).cpu()), 1)
        for precision in ("fp32", "bf16", "fp16"):
            fast = optimize(model, precision, device=dev)
            torch.cuda.reset_peak_memory_stats()
            seconds = _median_time(lambda: fast(x10, cd), repeats, sync)
            forward[precision] = {"seconds_per_10s": round(seconds, 4),
                                  "sdr_vs_fp32_db": round(min(output_sdr(ref10.cpu(), fast(x10, cd).cpu()), 999), 1),
                                  "peak_mb": round(torch.cuda.max_memory_allocated() / 2**20)}
            print(f"forward 10 s {precision}: {forward[precision]}")
    out["forward"] = forward

    train = {}
    from ussnb.runtime import autocast

    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        net = build_separator("resunet30", "paper", condition_size=527).to(dev).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        xb = (0.1 * torch.randn(16, 1, 2 * sr)).to(dev)
        sb = (0.5 * xb).contiguous()
        cb = torch.rand(16, 527).to(dev)

        def step():
            with autocast(dev, precision):
                est = net(xb, cb)
            loss = (est.float() - sb).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        torch.cuda.reset_peak_memory_stats()
        seconds = _median_time(step, max(3, args.train_steps // (4 if args.quick else 1)), sync)
        train[precision] = {"steps_per_s": round(1 / seconds, 2), "peak_mb": round(torch.cuda.max_memory_allocated() / 2**20)}
        print(f"training batch 16 x 2 s {precision}: {train[precision]}")
    out["train_paper_batch16"] = train

    if torch.cuda.device_count() >= 2:
        import torch.multiprocessing as mp

        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        port = 29600 + os.getpid() % 1000
        procs = [ctx.Process(target=_allreduce_worker, args=(r, 2, port, queue)) for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        values = sorted(queue.get(timeout=5) for _ in procs)
        out["nccl_allreduce_ok"] = all(abs(v - 3.0) < 1e-6 for _, v in values)
        print("NCCL all-reduce over 2 GPUs:", "ok" if out["nccl_allreduce_ok"] else f"WRONG {values}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
