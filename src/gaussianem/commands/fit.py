"""Homogeneous refinement of the Gaussian cloud against the particles of a dataset folder.

Writes gaussians.ply, consensus.mrc (the voxelised cloud, placed on the input map), fsc.txt/json/png against
the input map, fit.json and a per-epoch checkpoint (continue with --resume).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from gaussianem import runlog
from gaussianem.commands.common import hidden_alias
from gaussianem.errors import InputError
from gaussianem.training.config import FitConfig, StrategyConfig

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    d, s = FitConfig(), StrategyConfig()
    on = {True: "on", False: "off"}
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder written by 'gaussianem preprocess'")
    parser.add_argument("-o", "--outdir", dest="out", metavar="OUTDIR", default=None,
                        help="output folder (default: DATASET)")
    hidden_alias(parser, "--out", dest="out")
    parser.add_argument("--epochs", "-n", "--num-epochs", type=int, default=d.epochs,
                        help="passes over the particles (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="particles per step (default %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr,
                        help="Adam learning rate at the start, relative amplitude change per step "
                        "(default %(default)s)")
    parser.add_argument("--lr-final", type=float, default=d.lr_final,
                        help="learning rate at the end of the exponential decay (default %(default)s)")
    parser.add_argument("--train-positions", action=argparse.BooleanOptionalAction, default=d.train_positions,
                        help=f"also refine the Gaussians' positions (default: {on[d.train_positions]})")
    parser.add_argument("--position-lr", type=float, default=d.position_lr_angstrom, metavar="ANGSTROM",
                        help="Adam learning rate of the positions with --train-positions (default %(default)s Å)")
    parser.add_argument("--fix-widths", action="store_true", default=not d.train_widths,
                        help="keep the widths at their initial values")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda when available, else cpu)")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="random seed of the particle order (default %(default)s)")
    parser.add_argument("--max-gaussians", type=int, default=s.max_gaussians,
                        help="cap on the number of Gaussians")
    parser.add_argument("--densify", action=argparse.BooleanOptionalAction, default=s.densify,
                        help=f"add Gaussians where position gradients are large (default {on[s.densify]}: on a cloud "
                        "made from the consensus map it lowered the FSC of the fit)")
    parser.add_argument("--prune", action=argparse.BooleanOptionalAction, default=s.prune,
                        help=f"remove Gaussians of negligible mass (default {on[s.prune]})")
    parser.add_argument("--prune-every", type=int, default=s.prune_every, metavar="STEPS",
                        help="pruning period (default %(default)s)")
    parser.add_argument("--densify-every", type=int, default=s.densify_every, metavar="STEPS",
                        help="densification period (default %(default)s)")
    parser.add_argument("--map", default=None,
                        help="input consensus map for the FSC (default: the one recorded in dataset.json)")
    parser.add_argument("--reference", default=None,
                        help="another map (e.g. a ground-truth volume) to compute an FSC against: fsc_reference.*")
    parser.add_argument("--max-particles", type=int, default=d.max_particles,
                        help="use only the first N particles")
    parser.add_argument("--resume", action="store_true", help="continue from OUTDIR/fit_checkpoint.pt")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier fit in OUTDIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> FitConfig:
    for name in ("epochs", "batch_size", "prune_every", "densify_every"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if not (args.lr > 0 and args.lr_final > 0):
        raise InputError("--lr and --lr-final must be positive")
    if args.max_gaussians is not None and args.max_gaussians < 1:
        raise InputError("--max-gaussians must be at least 1")
    strategy = StrategyConfig(densify=args.densify, prune=args.prune, prune_every=args.prune_every,
                              densify_every=args.densify_every, max_gaussians=args.max_gaussians)
    return FitConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_final=args.lr_final,
                     position_lr_angstrom=args.position_lr, train_positions=args.train_positions,
                     train_widths=not args.fix_widths, max_particles=args.max_particles, seed=args.seed,
                     strategy=strategy)


def main(args: argparse.Namespace) -> int:
    from gaussianem.devices import resolve_device
    from gaussianem.io.locks import folder_lock
    from gaussianem.io.staging import check_output, sweep_leftovers
    from gaussianem.training.fit import CHECKPOINT
    from gaussianem.training.fit_outputs import run_fit

    config = config_from_args(args)
    device = resolve_device(args.device)
    out = Path(args.out or args.dataset)
    # the output folder may be the dataset (fit adds its files there), never an input file or a folder holding one
    check_output(out, [args.map, args.reference], overwrite=True)
    if (out / "gaussians.ply").is_file() and not (args.overwrite or args.resume):
        raise InputError(f"{out} holds the outputs of an earlier fit (gaussians.ply); use --overwrite to replace "
                         "them or --resume to continue it")
    created = not out.exists()
    try:
        with folder_lock(out, "gaussianem fit"):
            sweep_leftovers(out, locked=True)
            runlog.attach(out)
            summary = run_fit(args.dataset, args.out, config, device=device, map_path=args.map,
                              reference_path=args.reference, resume=args.resume, progress=not args.no_progress,
                              command_line=getattr(args, "command_line", None))
    except BaseException:
        if created and out.is_dir() and not (out / CHECKPOINT).is_file():  # nothing to resume: leave nothing
            shutil.rmtree(out, ignore_errors=True)
        raise
    parts = [f"{summary['n_gaussians']} Gaussians"]
    for key in ("fsc_input_map", "fsc_reference"):
        if key in summary:
            s = summary[key]
            parts.append(f"{s['label']}: FSC-AUC {s['fsc_auc']:.3f}, FSC {s['crossings'][0]}")
    print(f"fit done ({'; '.join(parts)}); outputs in {out}")
    return 0
