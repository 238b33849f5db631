"""Accuracy metrics of a trained run (and/or another tool's outputs) against the simulator's ground truth.

  gaussianem benchmark RUNDIR --truth SIMDIR [-o OUTDIR]
  gaussianem benchmark --truth SIMDIR --external-z z.pkl --write-eval-z DIR           (step 1 for another tool)
  gaussianem benchmark [RUNDIR] --truth SIMDIR --external-z z.pkl --external-volumes DIR --external-name cryodrgn
  gaussianem benchmark [RUNDIR] --truth SIMDIR --external-z z.pkl --external-name cryodrgn   (its latents alone)

Writes OUT/metrics.md (a table, one column per tool) and OUT/metrics.json (every number, per particle too).
Metric definitions: gaussianem.evaluation.metrics.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gaussianem import progress, runlog
from gaussianem.commands.common import hidden_alias
from gaussianem.devices import resolve_device
from gaussianem.errors import InputError

if TYPE_CHECKING:
    import torch

    from gaussianem.evaluation.metrics import ScoreConfig, Truth

log = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rundir", nargs="?", type=Path, help="GaussianEM run folder (from 'gaussianem train')")
    parser.add_argument("--truth", type=Path, required=True, metavar="SIMDIR",
                        help="simulator output folder (truth.npz, volumes/)")
    parser.add_argument("-o", "--outdir", dest="out", type=Path,
                        help="output folder (default: RUNDIR/benchmark, or ./benchmark)")
    hidden_alias(parser, "--out", dest="out", type=Path)
    parser.add_argument("--epoch", type=int, help="epoch of the run to score (default: the last complete one)")
    g = parser.add_argument_group("metric settings")
    g.add_argument("--n-images", type=int, default=1000, help="particles for per-image FSC-AUC (default 1000)")
    g.add_argument("--seed", type=int, default=0, help="seed of the particle subset, k-means and CV (default 0)")
    g.add_argument("--mask-radius", type=float, default=0.85,
                   help="soft spherical mask radius as a fraction of D/2 (default 0.85)")
    g.add_argument("--max-states", type=int, default=100,
                   help="ground-truth volumes scored per state, most populous first (default 100)")
    g.add_argument("--knn-k", type=int, default=20, help="k of the neighbourhood similarity (default 20)")
    g.add_argument("--knn-sample", type=int, default=5000,
                   help="particles sampled for the neighbourhood similarity (default 5000)")
    g.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    e = parser.add_argument_group("another tool's outputs (scored by the same code)")
    e.add_argument("--external-z", type=Path, metavar="FILE", help="its latents (N, zdim): .pkl (cryoDRGN), .npy, .txt")
    e.add_argument("--external-volumes", type=Path, metavar="DIR",
                   help="folder with particles/ and states/ volumes generated at the --write-eval-z latents "
                   "(without it the other tool is scored on its latents only)")
    e.add_argument("--external-name", default="external", help="its name in the table (e.g. cryodrgn)")
    e.add_argument("--external-ind", type=Path, metavar="FILE",
                   help="truth row of each latent row (.pkl/.npy/.txt; default: row i is particle i)")
    e.add_argument("--external-transform", default="auto",
                   help="axis order / hand of its volumes: auto (calibrated on 8 particles), none, or e.g. xyz")
    e.add_argument("--write-eval-z", type=Path, metavar="DIR",
                   help="write the latents at which the other tool must generate volumes, then stop")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder (never an input)")
    t = parser.add_argument_group("throughput (recorded in the table when given)")
    t.add_argument("--train-seconds", type=float, help="wall time of GaussianEM's training command")
    t.add_argument("--particle-epochs", type=float, help="particles x epochs of GaussianEM's training")
    t.add_argument("--external-train-seconds", type=float, help="wall time of the other tool's training")
    t.add_argument("--external-particle-epochs", type=float, help="particles x epochs of the other tool's training")
    progress.add_option(parser)


def _throughput(result: dict, seconds: float | None, particle_epochs: float | None) -> None:
    if seconds is not None:
        result["train_seconds"] = seconds
        if particle_epochs is not None and seconds > 0:
            result["particle_epochs"] = particle_epochs
            result["particles_per_second"] = particle_epochs / seconds


def _score_other_tool(args: argparse.Namespace, truth: Truth, config: ScoreConfig, device: torch.device) -> dict:
    """The other tool's row: from its latents and volumes, or (without --external-volumes) its latents alone."""
    from gaussianem.evaluation.external import score_external, score_external_latents

    if args.external_volumes is None:
        return score_external_latents(truth, args.external_z, name=args.external_name,
                                      rows_path=args.external_ind, config=config)
    return score_external(truth, args.external_z, args.external_volumes, name=args.external_name,
                          rows_path=args.external_ind, config=config, device=device,
                          transform=args.external_transform)


def main(args: argparse.Namespace) -> int:

    from gaussianem.evaluation.external import load_latents, load_rows, write_eval_inputs
    from gaussianem.evaluation.metrics import ScoreConfig
    from gaussianem.evaluation.suite import load_truth_checked, score_gaussianem_run, write_outputs
    from gaussianem.io.locks import folder_lock
    from gaussianem.io.staging import check_output, staged_folder

    if args.n_images < 1:
        raise InputError("--n-images must be at least 1")
    if not 0 < args.mask_radius <= 1:
        raise InputError("--mask-radius must be in (0, 1]")
    if args.rundir is None and args.external_z is None:
        raise InputError("give a run folder, or another tool's --external-z (and --external-volumes)")
    if args.external_z is not None and args.external_volumes is None and args.write_eval_z is None:
        log.warning("--external-z without --external-volumes: %s is scored on its latents only (no FSC-AUC; "
                    "--write-eval-z DIR prepares the latents its volumes are needed at)", args.external_name)
    device = resolve_device(args.device)
    config = ScoreConfig(n_images=args.n_images, seed=args.seed, mask_radius_fraction=args.mask_radius,
                         max_states=args.max_states, knn_k=args.knn_k, knn_sample=args.knn_sample)
    inputs = [args.rundir, args.truth, args.external_z, args.external_volumes, args.external_ind]
    if args.write_eval_z is not None:
        check_output(args.write_eval_z, inputs, args.overwrite)
    truth = load_truth_checked(args.truth)

    if args.write_eval_z is not None:
        if args.external_z is None:
            raise InputError("--write-eval-z needs --external-z (the other tool's latents)")
        z = load_latents(args.external_z)
        rows = load_rows(args.external_ind) if args.external_ind else None
        import numpy as np

        if rows is None and len(z) != truth.n:
            raise InputError(f"{args.external_z}: {len(z)} rows of latents for {truth.n} ground-truth particles "
                             "(give --external-ind when the tool saw a subset)")
        if rows is not None and len(rows) != len(z):
            raise InputError(f"{args.external_ind}: {len(rows)} rows of indices for {len(z)} rows of latents")
        with folder_lock(args.write_eval_z, "gaussianem benchmark", inside=False), \
                staged_folder(args.write_eval_z, args.overwrite) as tmp:
            runlog.attach(tmp)
            info = write_eval_inputs(z, rows if rows is not None else np.arange(len(z)), truth, tmp, config)
        print(f"wrote {info['particles']} particle and {info['states']} state latents to {args.write_eval_z}")
        return 0

    out = args.out or (args.rundir / "benchmark" if args.rundir is not None else Path("benchmark"))
    check_output(out, inputs, args.overwrite)
    results = []
    if args.rundir is not None:
        r = score_gaussianem_run(args.rundir, truth, args.epoch, config, device)
        r["name"] = "gaussianem"
        _throughput(r, args.train_seconds, args.particle_epochs)
        results.append(r)
    if args.external_z is not None:
        r = _score_other_tool(args, truth, config, device)
        _throughput(r, args.external_train_seconds, args.external_particle_epochs)
        results.append(r)
    spec = truth.spec
    header = (f"Ground truth: `{args.truth}` (preset {spec.get('preset', '?')}, {truth.n} particles, "
              f"box {spec.get('box_size', spec.get('box', '?'))}, SNR {spec.get('snr', '?')}). "
              f"Command: `{getattr(args, 'command_line', 'gaussianem benchmark')}`")
    with folder_lock(out, "gaussianem benchmark", inside=False), staged_folder(out, args.overwrite) as tmp:
        runlog.attach(tmp)
        write_outputs(tmp, results, header)
    md, js = out / "metrics.md", out / "metrics.json"
    for r in results:
        pi = r["per_image_fsc_auc"]
        log.info("%s: per-image FSC-AUC %.3f (n=%d)", r["name"], pi["mean"] or float("nan"), pi["n"])
    print(f"wrote {md} and {js}")
    return 0
