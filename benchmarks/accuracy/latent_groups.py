"""Which latent dimensions carry the states and which the motion (issue 17): the 5-fold linear probes of
``gaussianem benchmark`` (state accuracy, motion R²) on groups of z's dimensions, epoch by epoch.

  python benchmarks/accuracy/latent_groups.py RUNDIR SIM_DIR [--epochs 1 2 3] [--split N]

The groups are the run's ``--displacement-dims`` split (the first N dimensions drive the displacements, the others
the amplitude read-out), or ``--split N`` for a run without one, and all of z. Prints a Markdown table: per epoch
and group, the state accuracy, the motion R² (all particles and within each state, averaged), the k-means ARI
(whether the states are the group's largest structure) and the standard deviation of μ along each dimension of the
group.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from gaussianem.evaluation.metrics import load_truth
from gaussianem.evaluation.probes import probes_by_group
from gaussianem.evaluation.suite import truth_rows_for_run
from gaussianem.io.checks import load_latents


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rundir", type=Path)
    parser.add_argument("sim", type=Path)
    parser.add_argument("--epochs", type=int, nargs="+", help="default: every epoch with latents")
    parser.add_argument("--split", type=int, help="default: the run's --displacement-dims")
    args = parser.parse_args(argv)
    config = yaml.safe_load((args.rundir / "config.yaml").read_text())
    split = args.split if args.split is not None else int(config.get("displacement_dims") or 0)
    epochs = args.epochs or sorted(int(p.name.split(".")[1]) for p in args.rundir.glob("z.*.npy"))
    truth = load_truth(args.sim)
    print("| epoch | dimensions | state probe | motion R² | within-state motion R² | k-means ARI | sd of μ |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for epoch in epochs:
        z = load_latents(args.rundir / f"z.{epoch}.npy")
        rows = truth_rows_for_run(config, args.rundir, len(z), truth)
        for r in probes_by_group(z, truth.state[rows], truth.coordinate[rows], split):
            sd = " ".join(f"{v:.2f}" for v in r["sd"])
            print(f"| {epoch} | {r['group']} | {_fmt(r['state'])} | {_fmt(r['motion'])} | {_fmt(r['within'])} "
                  f"| {_fmt(r['kmeans'])} | {sd} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
