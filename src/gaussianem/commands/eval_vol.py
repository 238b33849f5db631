"""Volumes, Gaussian clouds and pseudo-atomic PDBs at given latent points (values, a file, particle indices).

    gaussianem eval-vol RUNDIR [--epoch E] (--z VALUES | --z-file FILE | --particles INDICES) -o OUTDIR
                       [--box D] [--apix A] [--format mrc,ply,pdb]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gaussianem import progress, runlog
from gaussianem.devices import resolve_device
from gaussianem.errors import InputError


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rundir", type=Path, help="run folder written by 'gaussianem train'")
    p.add_argument("--epoch", type=int, default=None, help="epoch (1-based; default: the last)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--z", dest="z_values", metavar="VALUES",
                     help="latent values, zdim per point, comma/space separated; points separated by ';'")
    src.add_argument("--z-file", "--zfile", type=Path, help="(T, zdim) latent points: .npy or text, one point per line")
    src.add_argument("--particles", metavar="INDICES",
                     help="particle indices (comma list, or a .txt/.npy/.pkl file): their z from z.E.npy")
    p.add_argument("-o", "--outdir", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder (never an input)")
    p.add_argument("--box", type=int, default=None, help="box of the volumes (default: the working box)")
    p.add_argument("--apix", "--Apix", type=float, default=None, help="voxel size (Å) of the volumes")
    p.add_argument("--format", default="mrc", help="comma list of mrc, ply, pdb (default mrc)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    progress.add_option(p)


def main(args: argparse.Namespace) -> int:
    from gaussianem.analysis.inputs import load_run, parse_indices, parse_z_values, read_z_file
    from gaussianem.analysis.states import FORMATS, evaluate_points
    from gaussianem.io.locks import folder_lock
    from gaussianem.io.staging import check_output, staged_folder

    args.device = str(resolve_device(args.device))
    formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"--format takes a comma list of {', '.join(FORMATS)}, got {args.format!r}")
    check_output(args.outdir, [args.rundir, args.z_file], args.overwrite)
    model, config, epoch, z_all = load_run(args.rundir, args.epoch, args.device)
    zdim = z_all.shape[1]
    if args.z_values is not None:
        z = parse_z_values(args.z_values, zdim)
    elif args.z_file is not None:
        z = read_z_file(args.z_file, zdim)
    else:
        z = z_all[parse_indices(args.particles, len(z_all))]
    # written into a staging folder renamed to OUTDIR at the end: nothing half-written is ever left
    with folder_lock(args.outdir, "gaussianem eval-vol", inside=False), \
            staged_folder(args.outdir, args.overwrite) as tmp:
        runlog.attach(tmp)
        paths = evaluate_points(model, z, config, tmp, formats, args.box, args.apix, args.device)
    print(f"{len(z)} latent point(s) of epoch {epoch} -> {len(paths)} file(s) in {args.outdir}")
    return 0
