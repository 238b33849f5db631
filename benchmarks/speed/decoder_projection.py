"""Micro-benchmark (issue 15): pair decoder vs control-point decoder, dense projection vs tile splat.

For each cloud size: ms per forward + backward (median of ``--repeats`` after ``--warmup``), FLOPs per batch, and
the splat's agreement with the dense projector on the same batch. Prints a markdown table; ``--json`` writes the
rows. Decoders run as in training (bf16 autocast on CUDA unless ``--no-amp``); projections in float32.

    python benchmarks/speed/decoder_projection.py                       # box 128, B 32, G 8k/30k/60k, CUDA
    python benchmarks/speed/decoder_projection.py --device cpu --gaussians 2000 --box 64   # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable

import torch

from gaussianem.model.control_decoder import (
    ControlPointDecoder,
    build_control_graph,
    control_decoder_flops_per_particle,
    pair_decoder_flops_per_particle,
)
from gaussianem.model.decoder import Decoder
from gaussianem.physics.projection import project_gaussians, projected_centres
from gaussianem.physics.rotation import random_rotations
from gaussianem.physics.splat import (
    bin_gaussians,
    bin_gaussians_static,
    bin_gaussians_triton,
    dense_projection_flops,
    footprint_tiles_per_axis,
    pixel_frame,
    splat_flops,
    splat_gaussians,
    triton_available,
)

log = logging.getLogger("decoder_projection")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def kernel_ms(fn: Callable[[], object], device: torch.device, iters: int = 5,
              top: list | None = None) -> float | None:
    """Summed GPU kernel time per call (ms) from the profiler: the step's cost once launch overhead is hidden
    (CUDA graphs, torch.compile). None off CUDA. ``top``: append the 8 largest kernels as (name, ms per call)."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        sync(device)
    events = prof.key_averages()
    on_gpu = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    events = on_gpu or events  # the kernels themselves, not the CPU ops that launched them
    attr = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    times = sorted(((e.key, getattr(e, attr) / 1e3 / iters) for e in events), key=lambda kv: -kv[1])
    if top is not None:
        top.extend((name[:90], round(ms, 4)) for name, ms in times[:8])
    return sum(ms for _, ms in times)


def random_cloud(n: int, box: int, apix: float, seed: int, device: torch.device):
    """Gaussians in a ball of radius 0.35·D·apix (inside the box at any pose), widths 0.5–1.0 px (DESIGN)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g)
    pos = d / d.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=g) ** (1 / 3) * 0.35 * box * apix
    widths = (0.5 + 0.5 * torch.rand(n, generator=g)) * apix
    amps = 0.5 + torch.rand(n, generator=g)
    return pos.to(device), widths.to(device), amps.to(device)


def bench_interpolation(dec: ControlPointDecoder, batch: int, device: torch.device, args) -> dict:
    """The interpolation alone, (B, K, 4) control outputs -> (B, G, 4), forward + backward, three ways: the dense
    (G, K) matrix product in bf16 (as the decoder's "dense" mode under autocast, the matrix scattered each call),
    ``embedding_bag`` in float32, and a CSR sparse × dense product (``torch.sparse.mm``, float32)."""
    n_k = dec.n_control
    src = torch.randn(batch, n_k, 4, device=device, requires_grad=True)
    w_csr = dec.dense_weights(torch.float32).to_sparse_csr() if device.type == "cuda" else None
    out: dict = {}

    def step(mode):
        def run():
            if mode == "csr":
                table = src.permute(1, 0, 2).reshape(n_k, -1)
                res = torch.sparse.mm(w_csr, table)
            else:
                dec.interpolation = mode
                x = src.to(torch.bfloat16) if mode == "dense" and device.type == "cuda" else src
                res = dec.interpolate(x)
            res.float().square().mean().backward()
        return run

    for mode in ("dense", "embedding_bag", "gather") + (("csr",) if w_csr is not None else ()):
        try:
            out[f"interp_{mode}_ms"] = time_ms(step(mode), device, args.warmup, args.repeats)
            out[f"interp_{mode}_kernel_ms"] = kernel_ms(step(mode), device)
        except Exception as exc:  # keep the table
            log.exception("interpolation %s failed", mode)
            out[f"interp_{mode}_error"] = repr(exc)
    return out


def bench_size(n: int, args, device: torch.device) -> dict:
    box, batch, apix = args.box, args.batch, args.pixel_size
    use_amp = device.type == "cuda" and not args.no_amp
    row: dict = {"gaussians": n, "box": box, "batch": batch}
    pos, widths, amps = random_cloud(n, box, apix, args.seed, device)
    z = torch.randn(batch, args.zdim, device=device, requires_grad=True)
    emb = torch.randn(n, 32, device=device, requires_grad=True)

    # ---- decoders -----------------------------------------------------------------------------------------------
    old = Decoder(args.zdim).to(device)
    t0 = time.perf_counter()
    graph = build_control_graph(pos, args.control_points, args.neighbours, seed=args.seed)
    sync(device)
    row["control_graph_s"] = time.perf_counter() - t0
    new = ControlPointDecoder(args.zdim, graph, rank=args.rank, interpolation=args.interpolation[0]).to(device)
    with torch.no_grad():  # non-zero heads, so that the backward is the real one
        for dec in (old, new.pair):
            dec.head.weight.normal_(0, 0.01)
        if new.sharp_channels:
            new.readout_net[-1].weight.normal_(0, 0.01)
    top = n == max(args.gaussians)

    def dec_step(dec):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = dec(z, emb)
            out.float().square().mean().backward()
        return run

    if not args.skip_old_decoder:
        row["old_decoder_ms"] = time_ms(dec_step(old), device, args.warmup, args.repeats)
        row["old_decoder_kernel_ms"] = kernel_ms(dec_step(old), device)
    for mode in args.interpolation:
        new.interpolation = mode
        row[f"new_decoder_{mode}_ms"] = time_ms(dec_step(new), device, args.warmup, args.repeats)
        kernels = [] if top else None
        row[f"new_decoder_{mode}_kernel_ms"] = kernel_ms(dec_step(new), device, top=kernels)
        if kernels:
            row[f"new_decoder_{mode}_top_kernels"] = kernels
    row["new_decoder_ms"] = min(row[f"new_decoder_{m}_ms"] for m in args.interpolation)
    kms = [row[f"new_decoder_{m}_kernel_ms"] for m in args.interpolation]
    row["new_decoder_kernel_ms"] = None if None in kms else min(kms)
    row["old_decoder_gflop"] = pair_decoder_flops_per_particle(n, args.zdim, batch=batch) * batch / 1e9
    row["new_decoder_gflop"] = control_decoder_flops_per_particle(
        n, graph.n_control, graph.index.shape[1], args.rank, zdim=args.zdim, batch=batch) * batch / 1e9
    row.update(bench_interpolation(new, batch, device, args))
    del old, new

    # ---- projections --------------------------------------------------------------------------------------------
    rot = random_rotations(batch, torch.Generator().manual_seed(args.seed + 1)).float().to(device)
    shifts = (torch.randn(batch, 2, generator=torch.Generator().manual_seed(args.seed + 2)) * 2 * apix).to(device)
    positions = (pos[None] + 0.1 * torch.randn(batch, n, 3, device=device)).requires_grad_(True)
    amp_b = amps[None].repeat(batch, 1).requires_grad_(True)
    wid = widths.clone().requires_grad_(True)
    target = torch.randn(batch, box, box, device=device)

    def proj_step(render):
        def run():
            img = render()
            ((img - target) ** 2).mean().backward()
        return run

    dense = lambda: project_gaussians(positions, wid, amp_b, rot, shifts, box, apix)  # noqa: E731
    dense_eager = lambda: project_gaussians(positions, wid, amp_b, rot, shifts, box, apix, compiled=False)  # noqa: E731
    if device.type == "cuda" and not args.skip_compiled:
        t0 = time.perf_counter()
        proj_step(dense)()
        sync(device)
        row["dense_compile_s"] = time.perf_counter() - t0
        row["dense_ms"] = time_ms(proj_step(dense), device, args.warmup, args.repeats)
        row["dense_kernel_ms"] = kernel_ms(proj_step(dense), device)
    row["dense_eager_ms"] = time_ms(proj_step(dense_eager), device, args.warmup, args.repeats)
    row["dense_gflop"] = dense_projection_flops(batch, n, box) / 1e9
    if triton_available(device):
        with torch.no_grad():
            centres = projected_centres(positions, rot, shifts)
            ux, uy, _, _ = pixel_frame(centres, wid, amp_b, box, apix)
            sig_px = (wid / apix).expand(batch, -1)
            ids, _, _, longest = bin_gaussians(ux, uy, sig_px, box, args.tile, args.cutoff)
            row["splat_longest_tile_list"] = longest
            row["splat_pairs"] = int(ids.numel())
            row["splat_gflop"] = splat_flops(ids.numel(), args.tile) / 1e9
            binning = lambda: bin_gaussians(ux, uy, sig_px, box, args.tile, args.cutoff)  # noqa: E731
            row["binning_ms"] = time_ms(binning, device, args.warmup, args.repeats)
            row["binning_kernel_ms"] = kernel_ms(binning, device)
            binning = lambda: bin_gaussians_triton(ux, uy, sig_px, box, args.tile, args.cutoff)  # noqa: E731
            try:
                row["binning_triton_ms"] = time_ms(binning, device, args.warmup, args.repeats)
                row["binning_triton_kernel_ms"] = kernel_ms(binning, device)
            except Exception:  # opt-in path; keep the table
                log.exception("triton binning failed")
            per_axis = footprint_tiles_per_axis(float(sig_px.max()), args.tile, args.cutoff)
            binning = lambda: bin_gaussians_static(ux, uy, sig_px, box, args.tile, args.cutoff, per_axis)  # noqa: E731
            row["binning_static_ms"] = time_ms(binning, device, args.warmup, args.repeats)
            row["binning_static_kernel_ms"] = kernel_ms(binning, device)
            ref = project_gaussians(positions, wid, amp_b, rot, shifts, box, apix, compiled=False)
        for tile, block, warps, chunk in args.splat_configs:
            def splat(tile=tile, block=block, warps=warps, chunk=chunk):
                c = projected_centres(positions, rot, shifts)
                return splat_gaussians(c, wid, amp_b, box, apix, args.cutoff, tile, block, args.splat_precision,
                                       num_warps=warps, chunk=chunk, binning=args.binning)
            name = f"splat_t{tile}_b{block}_w{warps}_c{chunk}"
            try:
                with torch.no_grad():
                    err = float((splat() - ref).abs().max() / ref.abs().max())
                row[f"{name}_fwd_ms"] = time_ms(lambda f=splat: f().sum(), device, args.warmup, args.repeats)
                row[f"{name}_ms"] = time_ms(proj_step(splat), device, args.warmup, args.repeats)
                kernels = [] if top else None
                row[f"{name}_kernel_ms"] = kernel_ms(proj_step(splat), device, top=kernels)
                if kernels:
                    row[f"{name}_top_kernels"] = kernels
                row[f"{name}_relerr"] = err
            except Exception as exc:  # keep the other rows of the table
                log.exception("splat %s failed", name)
                row[f"{name}_error"] = repr(exc)
    return row


def markdown(rows: list[dict], args) -> str:
    """Two numbers per cell: wall ms per forward + backward (eager, synchronised) / summed GPU kernel ms."""
    configs = [f"t{t}_b{b}_w{w}_c{c}" for t, b, w, c in args.splat_configs]
    head = ["G", "old dec ms", "new dec ms", "old dec GFLOP", "new dec GFLOP", "FLOP ratio",
            "dense ms (compiled)", "dense ms (eager)", "dense GFLOP"]
    head += [f"splat {c} ms" for c in configs] + ["splat GFLOP", "pairs", "binning ms", "binning (triton) ms",
                                                   "binning (static) ms", "splat rel err"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v, f="{:.2f}": "—" if v is None else f.format(v)  # noqa: E731
    both = lambda r, key: f"{fmt(r.get(key + '_ms'))} / {fmt(r.get(key + '_kernel_ms'))}"  # noqa: E731
    for r in rows:
        ratio = r["old_decoder_gflop"] / r["new_decoder_gflop"]
        cells = [f"{r['gaussians']:,}", both(r, "old_decoder"), both(r, "new_decoder"),
                 fmt(r["old_decoder_gflop"], "{:.1f}"), fmt(r["new_decoder_gflop"], "{:.2f}"), f"{ratio:.0f}×",
                 both(r, "dense"), fmt(r.get("dense_eager_ms")), fmt(r["dense_gflop"], "{:.1f}")]
        cells += [both(r, f"splat_{c}") for c in configs]
        errs = [r[f"splat_{c}_relerr"] for c in configs if f"splat_{c}_relerr" in r]
        cells += [fmt(r.get("splat_gflop"), "{:.2f}"), fmt(r.get("splat_pairs"), "{:,}"), both(r, "binning"),
                  both(r, "binning_triton"), both(r, "binning_static"), fmt(max(errs) if errs else None, "{:.1e}")]
        lines.append("| " + " | ".join(cells) + " |")
    modes = ("dense", "embedding_bag", "gather", "csr")
    lines += ["", "Interpolation alone (B, K, 4) -> (B, G, 4), forward + backward, wall / kernel ms:", "",
              "| G | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for r in rows:
        lines.append(f"| {r['gaussians']:,} | " + " | ".join(both(r, f"interp_{m}") for m in modes) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--gaussians", type=int, nargs="+", default=[8000, 30000, 60000])
    p.add_argument("--box", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--pixel-size", type=float, default=2.0, help="Å per pixel")
    p.add_argument("--zdim", type=int, default=10)
    p.add_argument("--control-points", type=int, default=1024)
    p.add_argument("--neighbours", type=int, default=8)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--cutoff", type=float, default=5.0, help="footprint half-width in σ")
    p.add_argument("--tile", type=int, default=16, help="tile of the pair count / binning timing")
    p.add_argument("--splat-configs", default="16x32x4x100000,16x32x4x256,16x16x4x128,16x32x2x256,32x32x4x256",
                   help="tile x block_g x num_warps x chunk to time (a chunk >= the longest list: one program a tile)")
    p.add_argument("--binning", default="static", choices=["static", "torch", "triton"], help="splat binning path")
    p.add_argument("--interpolation", default="dense,embedding_bag,gather",
                   help="control decoder interpolation modes")
    p.add_argument("--splat-precision", default=None, help="tl.dot input precision: ieee or tf32x3 (default: auto)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-amp", action="store_true", help="decoders in float32 on CUDA (default: bf16 autocast)")
    p.add_argument("--skip-compiled", action="store_true", help="skip the torch.compile'd dense projector")
    p.add_argument("--skip-old-decoder", action="store_true")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)
    args.splat_configs = [tuple(int(v) for v in c.split("x")) for c in args.splat_configs.split(",") if c]
    args.interpolation = [m for m in args.interpolation.split(",") if m]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = torch.device(args.device)
    rows = []
    for n in args.gaussians:
        log.info("G = %d", n)
        rows.append(bench_size(n, args, device))
        log.info("%s", json.dumps(rows[-1]))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\nbox {args.box}, batch {args.batch}, {name}, torch {torch.__version__}; ms per forward + backward "
          "(wall, eager and synchronised / summed GPU kernel time from the profiler); "
          f"decoders {'bf16 autocast' if device.type == 'cuda' and not args.no_amp else 'float32'}; "
          f"K = {args.control_points}, k = {args.neighbours}, rank = {args.rank}; cutoff {args.cutoff} σ, "
          f"splat dot precision {args.splat_precision or 'auto'}\n")
    print(markdown(rows, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items()}, "device": name, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
