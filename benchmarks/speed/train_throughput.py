"""Throughput of full heterogeneity training steps (forward + backward + AdamW + memory bank) at the IgG-1D scale.

    python benchmarks/speed/train_throughput.py --device cuda                      # 6,000 Gaussians, box 128, batch 32
    python benchmarks/speed/train_throughput.py --device cuda --batch-size 64 --compile
    python benchmarks/speed/train_throughput.py --device cpu --steps 3 --warmup 1 --gaussians 1000 --box 64

Data parallel (DDP): launched by ``torchrun`` (WORLD_SIZE > 1) every process joins the process group
through ``training.distributed.init_process_group`` (NCCL on CUDA, gloo on the CPU), converts BatchNorm as
``gaussianem train`` does and wraps the objective in DistributedDataParallel; ``--batch-size`` is per process. The
steps are timed between barriers and rank 0 prints the table, whose ``world`` column is the number of processes and
whose particles/s is the global rate (world × batch / step time). The two-GPU figure and its one-GPU reference:

    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc_per_node=2 benchmarks/speed/train_throughput.py \\
        --device cuda --batch-size 32
    python benchmarks/speed/train_throughput.py --device cuda --batch-size 32

and on the CPU (gloo, two processes; a smoke test):

    torchrun --standalone --nproc_per_node=2 benchmarks/speed/train_throughput.py \\
        --device cpu --steps 2 --warmup 1 --gaussians 300 --box 32

Under DDP CUDA graphs stay off (as in ``gaussianem train``); each step's global batch layout comes from the batch
(``offset`` / ``global_size``), as the training sampler provides it, so no step waits on the host for it.

It runs the training code itself (``training.objective.TrainingObjective`` + ``Stepper``, kNN loss on, all
geometric regularisers on, one host sync per step for the finiteness check, as in ``gaussianem train``) on synthetic
particles already on the device (``--with-loader`` reads them from a memory-mapped stack through the training
DataLoader instead). Prints a markdown table.

FLOP floor of one step (fwd + bwd = 3× the forward matrix FLOPs; 2× for a layer whose input needs no gradient):
- decoder (``--decoder pair``) MLP over B·G pairs: 2·B·G·(H·H·(L−1) + H·F + F·n_out) forward (the split first
  layer costs only the per-particle W_z z and per-Gaussian W_e e products, counted too); (``--decoder control``)
  the same MLP over B·K control-point pairs, the interpolation (as executed: the (G, K) matrix products of the
  "dense" mode on CUDA), the read-out and the pooling (``control_decoder_flops_per_particle``);
- projection (``--projector dense``): 2·B·G·D² forward per batch (the separable matrix product), 3× for fwd + bwd;
  (``splat``): the tile kernels' arithmetic for the (Gaussian, tile) pairs of the first batch at the base cloud
  (``splat_flops``), counted at the fp32 peak;
- encoders (image: 2·B·(D²·H_i + H_i²·(L_i−1) + H_i·2z); Gaussian: 2·G·(5·H_g + H_g²·(L_g−1) + H_g·E)).
"Time floor" = bf16 FLOPs / bf16 peak + fp32 FLOPs / fp32 peak (decoder and encoders in bf16 with --amp; the
projection always fp32); "fraction" = time floor / measured step time. Peaks default to the detected GPU (H100
SXM: 989 bf16 dense, 67 fp32 TFLOP/s; H100 PCIe: 756 / 51; H200 as H100 SXM) and can be given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gaussianem.gaussians import GaussianCloud
from gaussianem.model.control_decoder import flops_per_particle
from gaussianem.model.losses import knn_counts
from gaussianem.model.spec import ModelOptions
from gaussianem.model.vae import GaussianVAE
from gaussianem.physics.projection import projected_centres
from gaussianem.physics.rotation import random_rotations
from gaussianem.physics.splat import bin_gaussians, pixel_frame, splat_flops, splat_kernel_usable
from gaussianem.training.config import TrainConfig
from gaussianem.training.distributed import convert_batchnorm, init_process_group
from gaussianem.training.objective import LossWeights, TrainingObjective, build_graphs, model_spec
from gaussianem.training.step import Stepper, tf32_matmuls

PEAKS = {"H100 PCIe": (756.0, 51.0), "H100": (989.0, 67.0), "H200": (989.0, 67.0), "A100": (312.0, 19.5)}


def synthetic_cloud(n: int, box: int, apix: float, seed: int = 0) -> GaussianCloud:
    """n Gaussians on a jittered grid filling a sphere of radius ~0.3·D·apix (a protein-like packing)."""
    rng = np.random.default_rng(seed)
    radius = 0.3 * box * apix
    spacing = radius * (4 / 3 * math.pi / n) ** (1 / 3)
    k = int(math.ceil(radius / spacing)) + 1
    grid = np.stack(np.meshgrid(*[np.arange(-k, k + 1)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing
    grid = grid[np.argsort(np.linalg.norm(grid, axis=1))][:n]
    pos = grid + rng.normal(0, 0.05 * spacing, grid.shape)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return GaussianCloud(t(pos), torch.full((n,), 0.75 * apix), t(1 + rng.random(n)), 0.5 * apix, 1.0 * apix)


def splat_pairs(model: GaussianVAE, batch: dict, cutoff: float) -> int:
    """(Gaussian, tile) pairs of the splat for this batch's poses at the base cloud (tile 16)."""
    with torch.no_grad():
        pos, wid, amp = model.base_cloud.physical()
        centres = projected_centres(pos.float(), batch["rotation"].float(), batch["shift"].float())
        apix = model.spec.pixel_size_angstrom
        ux, uy, _, _ = pixel_frame(centres, wid.float(), amp.float(), model.box_size, apix)
        ids = bin_gaussians(ux, uy, (wid.float() / apix).expand_as(ux), model.box_size, 16, cutoff)[0]
        return int(ids.numel())


def flop_counts(cfg: TrainConfig, b: int, g: int, d: int, n_out: int, decoder=None,
                n_pairs: int | None = None, encoder_box: int | None = None,
                n_embedded: int | None = None, image_encoder_widths: tuple[int, ...] = ()) -> dict[str, float]:
    """FLOPs of one training step (forward + backward) by part. ``decoder``: the model's decoder (counted by
    ``flops_per_particle``; None: the pair decoder's formula); ``n_pairs``: the splat's pairs (None: dense);
    ``encoder_box``: the box the image encoder sees (None: d); ``n_embedded``: the rows the Gaussian encoder runs
    on (None: g; the control points with ``--control-embedding control``); ``image_encoder_widths``: the hidden width of
    each image-encoder MLP (two with ``encoder_split``; (): one of ``encoder_hidden``; their output layers counted as
    one)."""
    h, f, lyr = cfg.decoder_hidden, cfg.decoder_features, cfg.decoder_layers
    pair = h * h * (lyr - 1) + h * f + f * n_out
    dec = 3 * 2 * b * g * pair + 3 * 2 * (b * cfg.zdim * h + g * cfg.embedding_dim * h)
    if decoder is not None:
        dec = flops_per_particle(decoder, g, b, training=True) * b
    proj = 3 * 2 * b * g * d * d if n_pairs is None else splat_flops(n_pairs)
    hi, li = cfg.encoder_hidden, cfg.encoder_layers
    e = encoder_box or d
    ienc = sum(2 * 2 * b * e * e * w + 3 * 2 * b * w * w * (li - 1) for w in image_encoder_widths or (hi,))
    ienc += 3 * 2 * b * hi * 2 * cfg.zdim
    hg, lg = cfg.gaussian_hidden, cfg.gaussian_layers
    genc = 3 * 2 * (n_embedded or g) * (5 * hg + hg * hg * (lg - 1) + hg * cfg.embedding_dim)
    return {"decoder": dec, "projection": proj, "encoders": ienc + genc}


def detect_peaks(device: torch.device) -> tuple[float | None, float | None, str]:
    if device.type != "cuda":
        return None, None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key, peaks in PEAKS.items():
        if all(part in name for part in key.split()):
            return peaks[0], peaks[1], name
    return None, None, name


def make_batches(n_batches: int, b: int, d: int, apix: float, n_particles: int, device, seed: int,
                 rank: int = 0, world: int = 1) -> list[dict]:
    """Synthetic batches of ``b`` particles; under DDP this rank's share of global batches of world × b (its
    particle indices, and the ``offset`` / ``global_size`` layout the training sampler would give)."""
    gen = torch.Generator().manual_seed(seed + rank)
    out = []
    for i in range(n_batches):
        ctf = torch.stack([torch.full((b,), 1.5e4), torch.full((b,), 1.4e4), torch.rand(b, generator=gen) * 180,
                           torch.full((b,), 300.0), torch.full((b,), 2.7), torch.full((b,), 0.1),
                           torch.zeros(b)], 1)
        first = (i * world + rank) * b
        batch = {"index": torch.arange(first, first + b) % n_particles,
                 "image": torch.randn(b, d, d, generator=gen).to(device),
                 "rotation": random_rotations(b, gen, dtype=torch.float32).to(device),
                 "shift": torch.randn(b, 2, generator=gen).to(device), "ctf": ctf.to(device)}
        if world > 1:
            batch.update(offset=rank * b, global_size=world * b)
        out.append(batch)
    return out


def loader_batches(n: int, b: int, d: int, apix: float, workers: int, device, tmp: Path, rank: int = 0,
                   world: int = 1):
    """The real data path: a memory-mapped stack on disk through ParticleBatchDataset + the training DataLoader."""
    import mrcfile

    from gaussianem.io.dataset import write_ctf, write_poses
    from gaussianem.io.writes import write_json_atomic
    from gaussianem.training.data import ParticleBatchDataset, ResumableBatchSampler, make_loader

    rng = np.random.default_rng(0)
    with mrcfile.new_mmap(tmp / "particles.mrcs", shape=(n, d, d), mrc_mode=2, overwrite=True) as m:
        for s in range(0, n, 1024):
            m.data[s:s + 1024] = rng.standard_normal((min(1024, n - s), d, d), dtype=np.float32)
    write_poses(tmp, random_rotations(n, dtype=torch.float64).numpy(), rng.normal(0, 1, (n, 2)))
    write_ctf(tmp, {"defocus_u_angstrom": np.full(n, 1.5e4), "defocus_v_angstrom": np.full(n, 1.4e4),
                    "defocus_angle_deg": np.zeros(n), "voltage_kv": np.full(n, 300.0), "cs_mm": np.full(n, 2.7),
                    "amplitude_contrast": np.full(n, 0.1), "phase_shift_deg": np.zeros(n)})
    write_json_atomic(tmp / "dataset.json", {"n_particles": n, "box_size": d, "pixel_size_angstrom": apix,
                                             "image_std": 1.0})
    data = ParticleBatchDataset(tmp)
    return make_loader(data, ResumableBatchSampler(n, b, seed=0, epoch=1, rank=rank, world_size=world), workers,
                       device)


def _sync(device: torch.device, world: int) -> None:
    """Wait for this process's device work, then for every process (the timing fences)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            dist.barrier(device_ids=[device.index])
        else:
            dist.barrier()


def _number(text: str) -> bool | int | float | str:
    if text.lower() in ("true", "false"):  # the automatic switches (default None), e.g. encoder_centre=false
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def config_overrides(pairs: list[str] | None) -> dict:
    """``--set NAME=VALUE`` pairs -> TrainConfig fields with values of the field's type (e.g. distance_weight=0)."""
    types = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs or []:
        name, _, value = pair.partition("=")
        if name not in types:
            raise SystemExit(f"--set: no TrainConfig field {name!r}")
        kind = types[name]
        if kind is bool:
            out[name] = value.lower() in ("1", "true", "yes", "on")
        elif kind is type(None):  # optional fields (default None): a number where it reads as one
            out[name] = None if value.lower() in ("", "none") else _number(value)
        else:
            out[name] = kind(value) if kind in (int, float, str) else value
    return out


def run(args, rank: int = 0, world: int = 1) -> dict:
    """One measurement of ``args.batch_size`` particles per process; under DDP (world > 1) the process group is
    already joined and every rank calls this."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    torch.manual_seed(0)
    b, g, d, apix = args.batch_size, args.gaussians, args.box, args.apix
    n_particles = max(args.particles, world * b * (args.steps + args.warmup))
    cfg = TrainConfig(dataset="-", rundir="-", batch_size=b, zdim=args.zdim, amp=args.amp, compile=args.compile,
                      cudagraphs=args.cudagraphs,
                      predict_width=args.predict_width, box_size=d, pixel_size_angstrom=apix,
                      projection_chunk=args.chunk, decoder=args.decoder, projector=args.projector,
                      n_control_points=args.n_control_points, regularise_on=args.regularise_on,
                      **config_overrides(args.set))
    cloud = synthetic_cloud(g, d, apix)
    model = GaussianVAE(cloud, model_spec(cfg, cloud, 1.0))
    model.set_base_trainable(False)
    model.to(device)
    if world > 1:  # as training/loop.py::train does it
        model = convert_batchnorm(model, device)
    graphs = build_graphs(model, cfg, device)
    objective = TrainingObjective(model, LossWeights.from_config(cfg), graphs, cfg.amp,
                                  knn_counts(n_particles, cfg.knn_sample, cfg.knn_near, cfg.knn_far)).to(device)
    wrapped: torch.nn.Module = objective
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, fused=device.type == "cuda" or None)
    stepper = Stepper(wrapped, opt, None, n_particles, cfg.zdim, device, 0, b, rank, world, compile=cfg.compile,
                      cudagraphs=cfg.cudagraphs, autotune=args.autotune,
                      step_graph=getattr(args, "step_graph", None))
    stepper.bank.normal_(generator=torch.Generator(device).manual_seed(2))  # the same bank on every rank
    stepper.bank_filled.fill_(True)
    stepper.refresh_bank()
    objective.train()
    n_total = args.steps + args.warmup
    tmp = None
    if args.with_loader:
        tmp = tempfile.TemporaryDirectory()
        batches = loader_batches(n_particles, b, d, apix, args.num_workers, device, Path(tmp.name), rank, world)
    else:
        batches = make_batches(min(n_total, 8), b, d, apix, n_particles, device, seed=1, rank=rank, world=world)
    it = iter(batches)

    def next_batch():
        nonlocal it
        try:
            return next(it)
        except StopIteration:
            it = iter(batches)
            return next(it)

    if device.type == "cuda":  # the peak over warm-up too: CUDA graphs allocate their memory pool when captured
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t_warm = time.perf_counter()
    for _ in range(args.warmup):
        stepper.step(next_batch(), knn_active=True)
    stepper.flush()
    _sync(device, world)
    warmup_s = time.perf_counter() - t_warm  # compilation and graph capture included
    wait0 = stepper.host_wait_s
    t0 = time.perf_counter()
    for _ in range(args.steps):
        stepper.step(next_batch(), knn_active=True)
    stepper.flush()
    _sync(device, world)
    dt = (time.perf_counter() - t0) / args.steps
    wait = (stepper.host_wait_s - wait0) / args.steps
    if tmp is not None:
        tmp.cleanup()
    splat = cfg.projector != "dense" and splat_kernel_usable(model.base_cloud.positions)
    n_pairs = splat_pairs(model, batches[0] if not args.with_loader else make_batches(
        1, b, d, apix, n_particles, device, seed=1)[0], cfg.splat_cutoff_sigmas) if splat else None
    n_embedded = model.decoder.n_control if model.embeds_control_points else g
    bodies = (model.image_encoder.body, getattr(model.image_encoder, "amplitude_body", None))
    widths = tuple(body[0].out_features for body in bodies if body is not None)
    flops = flop_counts(cfg, b, g, d, model.decoder.n_out, model.decoder, n_pairs, model.spec.encoder_box,
                        n_embedded, widths)
    bf16_peak, fp32_peak, name = detect_peaks(device)
    bf16_peak = args.peak_bf16_tflops or bf16_peak
    fp32_peak = args.peak_fp32_tflops or fp32_peak
    total = sum(flops.values())
    floor = None
    if bf16_peak and fp32_peak:
        mlp_peak = bf16_peak if (args.amp and device.type == "cuda") else fp32_peak
        floor = (flops["decoder"] + flops["encoders"]) / (mlp_peak * 1e12) + flops["projection"] / (fp32_peak * 1e12)
    return {
        "device": name, "gaussians": g, "box": d, "world": world, "batch": b, "zdim": args.zdim, "amp": args.amp,
        "decoder": model.spec.decoder, "projector": ("splat" if splat else "dense"), "splat_pairs": n_pairs,
        "compile": stepper.compiled, "cudagraphs": stepper.cudagraphs,
        "step_graph": stepper.step_graph, "graph_error": stepper.graph_error,
        "graph_traceback": stepper.graph_traceback, "tf32": bool(getattr(args, "tf32", False)),
        "autotune": args.autotune,
        "deferred_check": stepper.deferred, "loader": args.with_loader, "step_ms": dt * 1e3,
        "warmup_s": warmup_s,
        "host_wait_ms": wait * 1e3,
        "particles_per_s": world * b / dt,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        "reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30 if device.type == "cuda" else float("nan"),
        "gflop_decoder": flops["decoder"] / 1e9, "gflop_projection": flops["projection"] / 1e9,
        "gflop_encoders": flops["encoders"] / 1e9, "achieved_tflops": world * total / dt / 1e12,
        "floor_ms": floor * 1e3 if floor else float("nan"), "fraction": floor / dt if floor else float("nan"),
        "edges": (graphs.distance.n_edges, graphs.wide.n_edges),
        "regularise_on": "control" if graphs.on_control else "gaussians",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default=None)
    p.add_argument("--gaussians", type=int, nargs="+", default=[6000],
                   help="Gaussian counts (one table row per count and batch size)")
    p.add_argument("--box", type=int, default=128)
    p.add_argument("--apix", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, nargs="+", default=[32])
    p.add_argument("--zdim", type=int, default=10)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the step (default: as gaussianem train, on with CUDA)")
    p.add_argument("--cudagraphs", action=argparse.BooleanOptionalAction, default=None,
                   help="CUDA-graph replay of the compiled step (default: as gaussianem train, on with CUDA)")
    p.add_argument("--autotune", action="store_true", help="compile with max-autotune (as train --autotune)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=False,
                   help="float32 matrix products on TF32 tensor cores (as train --tf32)")
    p.add_argument("--step-graph", action=argparse.BooleanOptionalAction, default=None,
                   help="the whole step as one CUDA graph (as train --step-graph; default on with CUDA graphs)")
    p.add_argument("--predict-width", action="store_true")
    p.add_argument("--decoder", nargs="+", default=[ModelOptions.decoder], choices=["auto", "pair", "control"],
                   help="decoders to time (a row each)")
    p.add_argument("--projector", nargs="+", default=[ModelOptions.projector], choices=["auto", "dense", "splat"],
                   help="projectors to time (a row each; auto = splat where its kernel runs)")
    p.add_argument("--n-control-points", type=int, default=1024)
    p.add_argument("--regularise-on", nargs="+", default=["auto"], choices=["auto", "gaussians", "control"],
                   help="where the distance/alignment/repulsion terms run (one row per choice)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a TrainConfig field (repeatable), e.g. --set distance_weight=0")
    p.add_argument("--chunk", type=int, default=None, help="projection chunk (Gaussians)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--particles", type=int, default=20000, help="memory bank size")
    p.add_argument("--with-loader", action="store_true", help="read particles from a memory-mapped stack")
    p.add_argument("--num-workers", type=int, default=4)
    p.add_argument("--peak-bf16-tflops", type=float, default=None)
    p.add_argument("--peak-fp32-tflops", type=float, default=None)
    args = p.parse_args()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and args.cudagraphs:
        p.error("--cudagraphs: CUDA graphs are off under DDP (as in gaussianem train)")
    rank, world = init_process_group(args.device)
    backend = ""
    try:
        rows = []
        for g in args.gaussians:
            for bs in args.batch_size:
                for dec, proj, reg in itertools.product(args.decoder, args.projector, args.regularise_on):
                    if reg == "control" and dec != "control":
                        continue
                    a = argparse.Namespace(**{**vars(args), "batch_size": bs, "gaussians": g, "decoder": dec,
                                              "projector": proj, "regularise_on": reg})
                    with tf32_matmuls(args.tf32):
                        rows.append(run(a, rank, world))
                    if rank == 0:
                        print(json.dumps({k: v for k, v in rows[-1].items() if k != "graph_traceback"}),
                              flush=True)
    finally:
        if world > 1:
            import torch.distributed as dist

            backend = dist.get_backend()
            dist.destroy_process_group()
    for r in rows:
        if r["graph_error"]:
            print(f"G {r['gaussians']}, batch {r['batch']}: the whole-step capture failed: {r['graph_error']}\n"
                  f"{r['graph_traceback']}")
    if rank == 0:
        print_table(rows, f"DDP over {world} processes ({backend})" if world > 1 else "one process")


def print_table(rows: list[dict], parallel: str) -> None:
    r0 = rows[0]
    print(f"# training throughput — {r0['device']}, torch {torch.__version__}, "
          f"{datetime.datetime.now().isoformat(timespec='minutes')}\n")
    print(f"box {r0['box']}, zdim {r0['zdim']}, DESIGN layer sizes; amp {r0['amp']}, compile {r0['compile']}, "
          f"CUDA graphs {r0['cudagraphs']}, "
          f"whole-step graph {r0['step_graph']}, TF32 {r0['tf32']}, autotune {r0['autotune']}, "
          f"deferred check {r0['deferred_check']}, "
          f"loader {r0['loader']}; "
          f"{parallel}. Per process: batch, peak memory, GFLOP, floor and its fraction; particles/s and TFLOP/s "
          "are of all processes together. 'host wait' = time per step the host spent waiting for the device "
          "(near 0: the step is bound by the host's Python and launches, not by the GPU)\n")
    print("| G | decoder | projector | regularisers on | edges | world | batch | step ms | host wait ms | particles/s "
          "| peak GPU mem GiB (reserved) | warm-up s "
          "| GFLOP decoder | GFLOP projection | GFLOP encoders | achieved TFLOP/s | floor ms | fraction of floor |")
    print("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['gaussians']} | {r['decoder']} | {r['projector']} | {r['regularise_on']} | "
              f"{r['edges'][0]} / {r['edges'][1]} | "
              f"{r['world']} | {r['batch']} | "
              f"{r['step_ms']:.2f} | {r['host_wait_ms']:.2f} | {r['particles_per_s']:.0f} | "
              f"{r['peak_mem_gib']:.2f} ({r['reserved_gib']:.2f}) | {r['warmup_s']:.1f} | "
              f"{r['gflop_decoder']:.1f} | {r['gflop_projection']:.1f} | {r['gflop_encoders']:.1f} | "
              f"{r['achieved_tflops']:.2f} | {r['floor_ms']:.3f} | {r['fraction']:.3f} |")


if __name__ == "__main__":
    main()
