"""Latent analysis of a trained run: k-means volumes, PCA trajectories, UMAP, flexibility, models, report.

    gaussianem analyze RUNDIR [--epoch E] [--ksample 20] [--pc 3] [--atomic-model MODEL.pdb|cif]
                      [--box D] [--apix A] [-o OUTDIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gaussianem.analysis.options import AnalysisOptions as D
from gaussianem.devices import resolve_device


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rundir", type=Path, help="run folder written by 'gaussianem train'")
    p.add_argument("--epoch", type=int, default=None, help="epoch to analyse (1-based; default: the last)")
    p.add_argument("--ksample", type=int, default=D.ksample, help=f"k-means classes (default {D.ksample})")
    p.add_argument("--pc", type=int, default=D.n_pcs, help=f"PCA trajectories along PC1..PCn (default {D.n_pcs})")
    p.add_argument("--atomic-model", type=Path, default=None,
                   help="PDB/mmCIF fitted to the consensus map: warped to every class and trajectory point")
    p.add_argument("--box", type=int, default=None, help="box of the volumes written (default: the working box)")
    p.add_argument("--apix", type=float, default=None, help="voxel size (Å) of the volumes written")
    p.add_argument("-o", "--outdir", type=Path, default=None, help="output folder (default RUNDIR/analyze.E)")
    p.add_argument("--flex-sample", type=int, default=D.flex_sample,
                   help="particles sampled for the flexibility (RMSF) estimate (default 1000)")
    p.add_argument("--no-umap", action="store_true", help="skip UMAP (slow for large N)")
    p.add_argument("--points", type=int, default=D.n_points, help=f"points per PC trajectory (default {D.n_points})")
    p.add_argument("--device", default=D.device, help="torch device for decoding and voxelising (default cpu)")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help="latent points decoded at once")
    p.add_argument("--seed", type=int, default=D.seed)


def main(args: argparse.Namespace) -> int:
    from gaussianem.analysis.inputs import load_run
    from gaussianem.analysis.options import AnalysisOptions
    from gaussianem.analysis.pipeline import run_analysis

    args.device = str(resolve_device(args.device))
    model, config, epoch, z = load_run(args.rundir, args.epoch, args.device)
    outdir = args.outdir or args.rundir / f"analyze.{epoch}"
    opts = AnalysisOptions(
        ksample=args.ksample, n_pcs=args.pc, n_points=args.points, box=args.box, apix=args.apix,
        atomic_model=args.atomic_model, flex_sample=args.flex_sample, umap=not args.no_umap, seed=args.seed,
        batch_size=args.batch_size, device=args.device, command_line=getattr(args, "command_line", ""),
    )
    summary = run_analysis(model, z, config, outdir, opts, epoch=epoch, rundir=args.rundir)
    print(f"analysis of epoch {epoch} ({summary['n_particles']:,} particles) written to {outdir} "
          f"in {summary['total_s']:.0f} s; open {outdir / 'report.html'}")
    return 0
