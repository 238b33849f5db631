"""Preprocess RELION (.star), cryoSPARC (.cs) or cryoDRGN-style (.mrcs/.txt + pkl) particles into a dataset folder.

Reads the particles, poses and CTF, Fourier-crops the images to the working box, samples initial Gaussians from the
consensus map, checks poses and contrast against the images, and writes OUTDIR (dataset.json, particles.mrcs,
poses.npz, ctf.npz, source_index.npy, gaussians_init.ply).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gaussianem import progress, runlog
from gaussianem.devices import resolve_device
from gaussianem.preprocess.config import PreprocessConfig


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("particles", type=Path, help="particles: RELION .star, cryoSPARC .cs, or a .mrcs/.txt stack")
    parser.add_argument("-o", "--outdir", type=Path, required=True, help="output dataset folder")
    parser.add_argument("--map", dest="map_path", type=Path, required=True, metavar="CONSENSUS.mrc",
                        help="consensus map (.mrc)")
    parser.add_argument("--threshold", type=float, help="contour level of the map (default: automatic)")
    parser.add_argument("--gaussian-interval", type=int, metavar="N",
                        help="initial Gaussians every N voxels of the working box above the contour; widths scale "
                        "with N. N = 2 gives ~8x fewer Gaussians: faster training, coarser model. Default: one per "
                        "voxel up to a budget of 5 per estimated heavy atom (from the volume above the contour), "
                        "at least 6,000 and at most 60,000; beyond it a coarser (fractional) interval. Given (or "
                        "with --max-gaussians), the budget is off: N (default 1, 2 for boxes over 256) as asked")
    parser.add_argument("--max-gaussians", type=int, metavar="G",
                        help="keep at most G initial Gaussians (the densest points), bypassing the default budget "
                        "(see --gaussian-interval); ask for more than 60,000 with it")
    parser.add_argument("--box", "-D", type=int,
                        help="working box in pixels (even, <= the particles' box; -D as cryoDRGN's downsample)")
    parser.add_argument("--apix", type=float, help="working pixel size in Å (default: input pixel size × D/box)")
    parser.add_argument("--poses", type=Path, help="poses of a .mrcs/.txt stack, or of a .star without pose "
                        "columns: cryoDRGN pose .pkl (rots N×3×3, trans N×2 in fractions of the box) or GaussianEM "
                        "poses.npy (N×5 rot,tilt,psi,x,y px or N×11); refused for a .star that carries its own poses")
    parser.add_argument("--ctf", type=Path, help="CTF of a .mrcs/.txt stack, or of a .star without CTF columns: "
                        "cryoDRGN ctf .pkl or ctf.npy (N×9); refused for a .star that carries its own CTF")
    parser.add_argument("--datadir", type=Path, help="folder the star/cs image paths are relative to")
    parser.add_argument("--passthrough", type=Path, action="append", metavar="PASSTHROUGH.cs",
                        help="cryoSPARC: a .cs whose fields (blob, ctf, alignments3D, ...) the particles' .cs lacks, "
                        "joined by uid (repeatable; default: the job's *_passthrough_particles.cs beside it when "
                        "fields are missing)")
    sign = parser.add_mutually_exclusive_group()
    sign.add_argument("--invert", dest="invert", action="store_true", default=None,
                      help="the particles are dark: flip them (default: decided from the data)")
    sign.add_argument("--no-invert", dest="invert", action="store_false",
                      help="the particles are white: keep them (default: decided from the data)")
    parser.add_argument("--chunk", type=int, help="particles per chunk (default: ~64 MiB of input images)")
    parser.add_argument("--drop-bad", action="store_true", help="drop particles with non-finite pixels")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty OUTDIR")
    parser.add_argument("--input-apix", type=float,
                        help="pixel size (Å) of a bare stack whose CTF file and MRC header give none")
    parser.add_argument("--n-check", type=int, default=PreprocessConfig.n_check,
                        help="particles sampled for the pose/contrast check")
    parser.add_argument("--ind", type=Path, metavar="IND.pkl",
                        help="keep only these particles: a cryoDRGN index .pkl or a .npy/.txt of rows of the input "
                        "(source_index.npy records the input rows kept)")
    parser.add_argument("--device", default=PreprocessConfig.device,
                        help="torch device for the pose check (cpu, cuda, ...)")
    progress.add_option(parser)


def main(args: argparse.Namespace) -> int:
    from gaussianem.io.locks import folder_lock
    from gaussianem.io.staging import check_output, sweep_leftovers
    from gaussianem.preprocess import preprocess

    args.device = str(resolve_device(args.device))
    cfg = PreprocessConfig(
        particles=args.particles, outdir=args.outdir, map_path=args.map_path, threshold=args.threshold,
        gaussian_interval=args.gaussian_interval, max_gaussians=args.max_gaussians,
        box=args.box, apix=args.apix, poses=args.poses, ctf=args.ctf, datadir=args.datadir,
        passthrough=args.passthrough, invert=args.invert,
        chunk=args.chunk, drop_bad=args.drop_bad, overwrite=args.overwrite, input_apix=args.input_apix,
        n_check=args.n_check, device=args.device, ind=args.ind, command_line=getattr(args, "command_line", ""),
    )
    inputs = [args.particles, args.map_path, args.poses, args.ctf, args.datadir, args.ind, *(args.passthrough or [])]
    check_output(args.outdir, inputs, args.overwrite)
    with folder_lock(args.outdir, "gaussianem preprocess", inside=False):
        sweep_leftovers(args.outdir.parent, args.outdir.name, locked=True)
        out = preprocess(cfg)
    runlog.attach(out)
    print(f"dataset written to {out}")
    return 0
