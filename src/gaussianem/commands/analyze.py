"""Latent analysis of a trained run: k-means volumes, PCA trajectories, UMAP, flexibility, models, report.

    gaussianem analyze RUNDIR [--epoch E] [--ksample 20] [--pc 3] [--atomic-model MODEL.pdb|cif]
                      [--box D] [--apix A] [-o OUTDIR] [--no-progress]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from gaussianem import progress, runlog
from gaussianem.analysis.options import AnalysisOptions as D
from gaussianem.devices import resolve_device
from gaussianem.errors import InputError


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rundir", type=Path, help="run folder written by 'gaussianem train'")
    p.add_argument("--epoch", type=int, default=None, help="epoch to analyse (1-based; default: the last)")
    p.add_argument("--ksample", type=int, default=D.ksample, help=f"k-means classes (default {D.ksample})")
    p.add_argument("--pc", type=int, default=D.n_pcs, help=f"PCA trajectories along PC1..PCn (default {D.n_pcs})")
    p.add_argument("--atomic-model", type=Path, default=None,
                   help="PDB/mmCIF fitted to the consensus map: warped to every class and trajectory point")
    p.add_argument("--box", type=int, default=None, help="box of the volumes written (default: the working box)")
    p.add_argument("--apix", "--Apix", type=float, default=None, help="voxel size (Å) of the volumes written")
    p.add_argument("-o", "--outdir", type=Path, default=None, help="output folder (default RUNDIR/analyze.E)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder (never an input)")
    p.add_argument("--flex-sample", type=int, default=D.flex_sample,
                   help="particles sampled for the flexibility (RMSF) estimate (default 1000)")
    p.add_argument("--no-umap", "--skip-umap", action="store_true", help="skip UMAP (slow for large N)")
    p.add_argument("--points", type=int, default=D.n_points, help=f"points per PC trajectory (default {D.n_points})")
    p.add_argument("--device", default=D.device, help="torch device for decoding and voxelising (default cpu)")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help="latent points decoded at once")
    p.add_argument("--seed", type=int, default=D.seed)
    progress.add_option(p)


def _check_options(args: argparse.Namespace) -> None:
    for flag, value, low in (("--ksample", args.ksample, 1), ("--pc", args.pc, 0), ("--points", args.points, 1),
                             ("--flex-sample", args.flex_sample, 1), ("--batch-size", args.batch_size, 1)):
        if value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}")
    if args.box is not None and (args.box < 2 or args.box % 2):
        raise InputError(f"--box must be an even number of voxels >= 2, got {args.box}")
    if args.apix is not None and not (math.isfinite(args.apix) and args.apix > 0):
        raise InputError(f"--apix must be a positive number, got {args.apix}")


def main(args: argparse.Namespace) -> int:
    from gaussianem.analysis.inputs import load_run
    from gaussianem.analysis.options import AnalysisOptions
    from gaussianem.analysis.pipeline import run_analysis
    from gaussianem.io.locks import folder_lock
    from gaussianem.io.pdb import read_structure
    from gaussianem.io.staging import check_output, staged_folder

    _check_options(args)
    args.device = str(resolve_device(args.device))
    if args.atomic_model is not None:
        read_structure(args.atomic_model)  # a damaged model stops here, before any work
    model, config, epoch, z = load_run(args.rundir, args.epoch, args.device)
    outdir = args.outdir or args.rundir / f"analyze.{epoch}"
    check_output(outdir, [args.rundir, args.atomic_model], args.overwrite)
    opts = AnalysisOptions(
        ksample=args.ksample, n_pcs=args.pc, n_points=args.points, box=args.box, apix=args.apix,
        atomic_model=args.atomic_model, flex_sample=args.flex_sample, umap=not args.no_umap, seed=args.seed,
        batch_size=args.batch_size, device=args.device, command_line=getattr(args, "command_line", ""),
    )
    # everything is written into a staging folder renamed to OUTDIR at the end: a failure or a kill leaves no
    # half-written OUTDIR (a killed run's staging folder is removed by the next run)
    with folder_lock(outdir, "gaussianem analyze", inside=False), staged_folder(outdir, args.overwrite) as tmp:
        runlog.attach(tmp)
        summary = run_analysis(model, z, config, tmp, opts, epoch=epoch, rundir=args.rundir)
    print(f"analysis of epoch {epoch} ({summary['n_particles']:,} particles) written to {outdir} "
          f"in {summary['total_s']:.0f} s; open {outdir / 'report.html'}")
    return 0
