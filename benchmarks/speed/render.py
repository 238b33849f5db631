"""Forward+backward throughput of the Gaussian projector (images/s) with the step's FLOP floor.

    python benchmarks/speed/render.py --device cuda            # 6,000 Gaussians, box 128, batch 64
    python benchmarks/speed/render.py --device cpu --iters 3

Prints a markdown table. FLOP floor: the three matrix products of the separable form (forward image, and the
two gradients) at 2·B·G·D² each, plus the exponentials (counted as 1 FLOP each, 2·B·G·D forward).
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch

from gaussianem.physics.ctf import ctf_rfft2
from gaussianem.physics.fourier import apply_filter_rfft2
from gaussianem.physics.projection import project_gaussians
from gaussianem.physics.rotation import random_rotations


def make_inputs(n_gauss: int, batch: int, box: int, apix: float, device, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pos = (torch.randn(n_gauss, 3, generator=g) * box * apix / 8).to(device, dtype)
    sig = (1.0 + torch.rand(n_gauss, generator=g)).mul(apix).to(device, dtype)
    amp = torch.rand(n_gauss, generator=g).to(device, dtype)
    rot = random_rotations(batch, g).to(device, dtype)
    shift = torch.randn(batch, 2, generator=g).to(device, dtype)
    target = torch.randn(batch, box, box, generator=g).to(device, dtype)
    ctf = ctf_rfft2(box, apix, {
        "defocus_u_angstrom": torch.full((batch,), 15000.0), "defocus_v_angstrom": torch.full((batch,), 14000.0),
        "defocus_angle_deg": torch.zeros(batch), "voltage_kv": torch.full((batch,), 300.0),
        "cs_mm": torch.full((batch,), 2.7), "amplitude_contrast": torch.full((batch,), 0.1)}).to(device, dtype)
    return pos, sig, amp, rot, shift, target, ctf


def step(inputs, box, apix, per_image: bool, with_ctf: bool, chunk):
    pos, sig, amp, rot, shift, target, ctf = inputs
    pos = pos.detach().requires_grad_(True)
    sig = sig.detach().requires_grad_(True)
    amp = amp.detach().requires_grad_(True)
    b = rot.shape[0]
    if per_image:  # the VAE case: every image has its own deformed cloud
        p, s, a = pos.expand(b, -1, -1), sig.expand(b, -1), amp.expand(b, -1)
    else:
        p, s, a = pos, sig, amp
    img = project_gaussians(p, s, a, rot, shift, box, apix, chunk_size=chunk)
    if with_ctf:
        img = apply_filter_rfft2(img, ctf)
    loss = (img - target).abs().mean()
    loss.backward()
    return loss


def bench(args, device, mode: str, per_image: bool, with_ctf: bool) -> dict:
    dtype = torch.float32
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    inputs = make_inputs(args.gaussians, args.batch, args.box, args.apix, device, dtype)
    chunk = args.chunk or None
    for _ in range(args.warmup):
        step(inputs, args.box, args.apix, per_image, with_ctf, chunk)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step(inputs, args.box, args.apix, per_image, with_ctf, chunk)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    b, g, d = args.batch, args.gaussians, args.box
    flops = 3 * 2 * b * g * d * d + 2 * b * g * d * 3
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"mode": mode, "per_image_cloud": per_image, "ctf": with_ctf, "median_s": med, "images_per_s": b / med,
            "tflops": flops / med / 1e12, "flop_floor_gflop": flops / 1e9, "peak_gib": mem}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--gaussians", type=int, default=6000)
    ap.add_argument("--box", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--apix", type=float, default=1.5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=0, help="Gaussians per chunk (0: automatic)")
    args = ap.parse_args()
    device = torch.device(args.device)
    modes = ["fp32", "tf32"] if device.type == "cuda" else ["fp32"]
    rows = []
    for mode in modes:
        for per_image in (False, True):
            rows.append(bench(args, device, mode, per_image, with_ctf=True))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    from gaussianem.physics.projection import _compile_enabled

    renderer = "torch.compile" if device.type == "cuda" and _compile_enabled() else "eager"
    print(f"\nRender fwd+bwd, {args.gaussians} Gaussians, box {args.box}, batch {args.batch}, device {name}, "
          f"torch {torch.__version__}, renderer {renderer}, {datetime.date.today()}")
    print("| matmul | cloud | CTF | median step (ms) | images/s | achieved TFLOP/s | FLOP floor/step (GFLOP) | "
          "peak GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {'per-image' if r['per_image_cloud'] else 'shared'} | {'yes' if r['ctf'] else 'no'} "
              f"| {r['median_s'] * 1e3:.2f} | {r['images_per_s']:.0f} | {r['tflops']:.2f} | "
              f"{r['flop_floor_gflop']:.1f} | {r['peak_gib']:.2f} |")


if __name__ == "__main__":
    main()
