"""Profile training steps at the IgG-1D scale with torch.profiler: where does a step's time go?

    python benchmarks/profile_train_step.py --device cuda --batch-size 32 [--compile]

Prints the top operators by device time and by host time, and the step time with and without the per-step
host synchronisation (the finiteness check).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile


def _load_throughput():
    spec = importlib.util.spec_from_file_location("train_throughput", Path(__file__).with_name("train_throughput.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--gaussians", type=int, default=6000)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--cudagraphs", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    tt = _load_throughput()
    targs = argparse.Namespace(device=args.device, batch_size=args.batch_size, gaussians=args.gaussians,
                               box=args.box, apix=3.0, zdim=10, amp=True, compile=args.compile,
                               cudagraphs=args.cudagraphs, predict_width=False,
                               chunk=None, steps=args.steps, warmup=5, particles=20000, with_loader=False,
                               num_workers=0, peak_bf16_tflops=None, peak_fp32_tflops=None)
    captured = {}
    orig_step = tt.Stepper.step

    def spy(self, batch, knn_active):
        captured["stepper"] = self
        captured["batch"] = batch
        return orig_step(self, batch, knn_active)

    tt.Stepper.step = spy
    res = tt.run(targs)
    print(f"throughput run: {res['step_ms']:.2f} ms/step, {res['particles_per_s']:.0f} particles/s")
    stepper, batch = captured["stepper"], captured["batch"]
    dev = torch.device(args.device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(args.steps):
            orig_step(stepper, batch, True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
    sort = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))
    # device-only time of one step: run the forward/backward without host sync, many times
    obj = stepper.forward
    dev_batch = {k: v.to(dev) for k, v in batch.items()}
    eps = torch.randn(args.batch_size, 10, device=dev)
    bank = stepper.bank[stepper.bank_rows]
    for label, n in (("fwd+bwd, no host sync", args.steps),):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            stepper.optimizer.zero_grad(set_to_none=True)
            total, terms, mu = obj(dev_batch["image"], dev_batch["rotation"], dev_batch["shift"], dev_batch["ctf"],
                                   eps, bank, stepper.generator, 0, args.batch_size)
            total.backward()
            stepper.optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / n
        print(f"{label}: {dt * 1e3:.2f} ms/step, {args.batch_size / dt:.0f} particles/s")


if __name__ == "__main__":
    main()
