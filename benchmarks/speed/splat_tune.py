"""Launch settings of the tile-splat kernels at the training step's sizes (issue 15): a table, fastest first.

For each setting (block_g, num_warps, chunk, tl.dot precision, pipelining stages) it times the splat's forward and
forward + backward (static binning, as the training step calls it; CUDA events, median over ``--repeats``) on the
synthetic cloud of ``train_throughput.py`` (default G = 60,000, box 128, 1.8 Å/px, batch 32, random poses), and
checks the image and the gradients against the dense separable projector (float32) and the default setting.
Any setting can then be tried in a whole training step with ``GAUSSIANEM_SPLAT_KERNEL="block_g=64,..."``.

    python benchmarks/speed/splat_tune.py --json out/splat_tune.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import make_batches, synthetic_cloud  # noqa: E402

from gaussianem.physics.projection import project_gaussians, projected_centres  # noqa: E402
from gaussianem.physics.splat import (  # noqa: E402
    KernelConfig,
    bin_gaussians,
    footprint_tiles_per_axis,
    pixel_frame,
    splat_gaussians,
)


def event_ms(fn, repeats: int, warmup: int = 3) -> float:
    """Median device time (ms) of ``fn`` over ``repeats`` calls, by CUDA events around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def grid(args) -> list[KernelConfig]:
    """The settings to time: the default first, then the product of the lists given."""
    out = [KernelConfig(precision="tf32x3", packed=0)]  # the setting of session 8
    for p, b, w, c, s, k in itertools.product(args.precisions, args.blocks, args.warps, args.chunks, args.stages,
                                              args.packed):
        cfg = KernelConfig(block_g=b, num_warps=w, chunk=c, precision=p, stages=s, packed=k)
        if cfg not in out:
            out.append(cfg)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gaussians", type=int, default=60000)
    p.add_argument("--box", type=int, default=128)
    p.add_argument("--apix", type=float, default=1.8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--precisions", nargs="+", default=["tf32x3", "ieee"])
    p.add_argument("--blocks", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--warps", nargs="+", type=int, default=[2, 4, 8])
    p.add_argument("--chunks", nargs="+", type=int, default=[256])
    p.add_argument("--stages", nargs="+", type=int, default=[0, 2])
    p.add_argument("--packed", nargs="+", type=int, default=[1, 0])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("splat_tune.py needs a CUDA device (the kernels are Triton)")
    dev = torch.device("cuda")
    g, d, apix, bsz = args.gaussians, args.box, args.apix, args.batch_size
    cloud = synthetic_cloud(g, d, apix)
    batch = make_batches(1, bsz, d, apix, 1000, dev, seed=1)[0]
    pos, wid, amp = (t.detach().float().to(dev) for t in cloud.physical())
    rot, shift = batch["rotation"], batch["shift"]
    max_px = cloud.width_max / apix
    weights = torch.randn(bsz, d, d, device=dev, generator=torch.Generator(dev).manual_seed(3))
    with torch.no_grad():
        centres = projected_centres(pos, rot, shift)
        ux, uy, _, _ = pixel_frame(centres, wid, amp, d, apix)
        n_pairs = int(bin_gaussians(ux, uy, (wid / apix).expand_as(ux), d, 16, 5.0)[0].numel())
    per_axis = footprint_tiles_per_axis(max_px, 16, 5.0)

    def grads_of(render):
        c = centres.clone().requires_grad_(True)
        w_ = wid.clone().requires_grad_(True)
        a_ = amp.clone().requires_grad_(True)
        img = render(c, w_, a_)
        gr = torch.autograd.grad((img * weights).sum(), (c, w_, a_))
        return img.detach(), gr

    with torch.no_grad():
        dense = project_gaussians(pos, wid, amp, rot, shift, d, apix, compiled=False)
    _, dense_grads = grads_of(lambda c, w_, a_: _dense_from_centres(c, w_, a_, d, apix))
    rows = []
    ref_img = ref_grads = None
    for cfg in grid(args):
        name = f"{cfg.precision} b{cfg.block_g} w{cfg.num_warps} c{cfg.chunk} s{cfg.stages} p{cfg.packed}"

        def render(c, w_, a_, cfg=cfg):
            return splat_gaussians(c, w_, a_, d, apix, block_g=cfg.block_g, num_warps=cfg.num_warps,
                                   chunk=cfg.chunk, precision=cfg.precision, stages=cfg.stages, packed=cfg.packed,
                                   max_sigma_px=max_px)
        try:
            img, gr = grads_of(render)
            if ref_img is None:
                ref_img, ref_grads = img, gr
            c = centres.clone().requires_grad_(True)
            w_ = wid.clone().requires_grad_(True)
            a_ = amp.clone().requires_grad_(True)

            def fwd(render=render):
                with torch.no_grad():
                    render(centres, wid, amp)

            def step(c=c, w_=w_, a_=a_, render=render):
                (render(c, w_, a_) * weights).sum().backward()

            rel = lambda x, y: float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))  # noqa: E731
            row = {"setting": name, **cfg.__dict__, "fwd_ms": event_ms(fwd, args.repeats),
                   "fwd_bwd_ms": event_ms(step, args.repeats), "err_vs_dense": rel(img, dense),
                   "grad_err_vs_dense": max(rel(x, y) for x, y in zip(gr, dense_grads, strict=True)),
                   "err_vs_default": rel(img, ref_img),
                   "grad_err_vs_default": max(rel(x, y) for x, y in zip(gr, ref_grads, strict=True))}
        except Exception as exc:  # keep the table: a setting the compiler refuses is a row with its error
            row = {"setting": name, **cfg.__dict__, "error": repr(exc)[:200]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = sorted((r for r in rows if "error" not in r), key=lambda r: r["fwd_bwd_ms"])
    print(f"\nG = {g:,}, box {d}, {apix} Å/px, batch {bsz}: {n_pairs:,} (Gaussian, tile) pairs, "
          f"{bsz * g * per_axis**2:,} static slots; {torch.cuda.get_device_name(dev)}")
    print("| setting | fwd ms | fwd+bwd ms | image err vs dense | grad err vs dense | vs default |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in ok:
        print(f"| {r['setting']} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | {r['err_vs_dense']:.1e} | "
              f"{r['grad_err_vs_dense']:.1e} | {max(r['err_vs_default'], r['grad_err_vs_default']):.1e} |")
    for r in rows:
        if "error" in r:
            print(f"| {r['setting']} | failed: {r['error']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"pairs": n_pairs, "rows": rows}, indent=1))


def _dense_from_centres(centres, widths, amplitudes, d, apix):
    """The dense separable projection (float32, eager) of already projected centres (B, G, 2): the cloud at z = 0
    seen through identity rotations, no shift."""
    pos = torch.cat([centres, torch.zeros_like(centres[..., :1])], -1)
    eye = torch.eye(3, device=centres.device).expand(centres.shape[0], 3, 3)
    return project_gaussians(pos, widths, amplitudes, eye, None, d, apix, compiled=False)


if __name__ == "__main__":
    main()
