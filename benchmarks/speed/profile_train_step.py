"""Profile training steps at the IgG-1D scale with torch.profiler: where does a step's time go?

    python benchmarks/speed/profile_train_step.py --device cuda --batch-size 32 [--gaussians 739 --box 64 --apix 2]

Prints the top operators by device time and by host time; per step: wall time, device kernels, the time the
device was busy (far below the wall time: the step is bound by the host), and the captured forward + backward
alone (no optimiser, memory bank or finiteness check).
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
    ap.add_argument("--apix", type=float, default=3.0)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--cudagraphs", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--autotune", action="store_true")
    ap.add_argument("--step-graph", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--decoder", default="pair", choices=["pair", "control"])
    ap.add_argument("--projector", default="dense", choices=["auto", "dense", "splat"])
    ap.add_argument("--n-control-points", type=int, default=1024)
    ap.add_argument("--regularise-on", default="auto", choices=["auto", "gaussians", "control"])
    ap.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a TrainConfig field")
    args = ap.parse_args()
    tt = _load_throughput()
    targs = argparse.Namespace(device=args.device, batch_size=args.batch_size, gaussians=args.gaussians,
                               box=args.box, apix=args.apix, zdim=10, amp=True, compile=args.compile,
                               cudagraphs=args.cudagraphs, predict_width=False, autotune=args.autotune,
                               step_graph=args.step_graph,
                               chunk=None, steps=args.steps, warmup=5, particles=20000, with_loader=False,
                               num_workers=0, peak_bf16_tflops=None, peak_fp32_tflops=None,
                               decoder=args.decoder, projector=args.projector,
                               n_control_points=args.n_control_points, regularise_on=args.regularise_on,
                               set=args.set)
    captured = {}
    orig_step = tt.Stepper.step

    def spy(self, batch, knn_active):
        captured["stepper"] = self
        captured["batch"] = batch
        return orig_step(self, batch, knn_active)

    tt.Stepper.step = spy
    res = tt.run(targs)
    print(f"throughput run: {res['step_ms']:.2f} ms/step (host waited {res['host_wait_ms']:.2f} ms/step for the "
          f"device), {res['particles_per_s']:.0f} particles/s")
    stepper, batch = captured["stepper"], captured["batch"]
    dev = torch.device(args.device)
    on_gpu = dev.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(args.steps):
            orig_step(stepper, batch, True)
        stepper.flush()
        if on_gpu:
            torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / args.steps
    sort = "cuda_time_total" if on_gpu else "cpu_time_total"
    print(prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=90))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))
    if on_gpu:
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.self_device_time_total for e in kernels) / 1e3 / args.steps  # µs -> ms
        n_k = len(kernels) / args.steps
        print(f"per step (under the profiler): wall {wall * 1e3:.2f} ms, device kernels {n_k:.0f},"
              f" device busy {busy:.2f} ms ({100 * busy / (wall * 1e3):.0f} % of the wall time)")
    # the captured forward + backward alone (no optimiser, no bank, no finiteness check), many times
    b = batch["image"].shape[0]
    eps = torch.randn(b, stepper.bank.shape[1], device=dev)
    s = stepper._knn_samples(b, 0, b)
    if on_gpu:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        stepper.optimizer.zero_grad(set_to_none=True)
        if stepper.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        total, _, _ = stepper.forward(batch["image"], batch["rotation"], batch["shift"], batch["ctf"], eps, s.cand,
                                      s.pick, s.uniform, stepper._one, amplitude_on=stepper._amp_one)
        total.backward()
    if on_gpu:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    print(f"forward + backward alone: {dt * 1e3:.2f} ms/step, {b / dt:.0f} particles/s")


if __name__ == "__main__":
    main()
