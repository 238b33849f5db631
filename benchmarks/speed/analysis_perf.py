"""Wall time of ``analyze`` on a large synthetic run: N particles (default 100,000), K = 20, the real
GaussianVAE decoder (random weights) over G Gaussians (default 5,000) at box 128.

    python benchmarks/speed/analysis_perf.py                       # UMAP excluded, as the acceptance item says
    python benchmarks/speed/analysis_perf.py --n 100000 --gaussians 5000 --box 128 --outdir /tmp/perf

Prints a markdown table with the time of every stage (also in OUTDIR/summary.json).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time

import numpy as np
import torch

from gaussianem.analysis.options import AnalysisOptions
from gaussianem.analysis.pipeline import run_analysis
from gaussianem.gaussians import GaussianCloud
from gaussianem.model.vae import GaussianVAE, ModelSpec


def make_model(n_gaussians: int, box: int, apix: float, zdim: int, seed: int = 0) -> GaussianVAE:
    """A GaussianVAE of the default layer sizes over a blob-shaped cloud of ``n_gaussians`` (random weights)."""
    rng = np.random.default_rng(seed)
    pos = rng.normal(size=(n_gaussians, 3)) * np.array([0.16, 0.12, 0.10]) * box * apix
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    wmin, wmax = 0.5 * apix, 1.0 * apix
    cloud = GaussianCloud(t(pos), torch.full((n_gaussians,), 0.75 * apix), t(rng.uniform(0.5, 1.5, n_gaussians)),
                          wmin, wmax)
    spec = ModelSpec(box_size=box, pixel_size_angstrom=apix, n_gaussians=n_gaussians, width_min=wmin,
                     width_max=wmax, zdim=zdim)
    torch.manual_seed(seed)
    return GaussianVAE(cloud, spec).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--gaussians", type=int, default=5000)
    p.add_argument("--box", type=int, default=128)
    p.add_argument("--apix", type=float, default=2.0)
    p.add_argument("--zdim", type=int, default=10)
    p.add_argument("--ksample", type=int, default=20)
    p.add_argument("--flex-sample", type=int, default=1000)
    p.add_argument("--umap", action="store_true", help="include UMAP (excluded from the acceptance timing)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--outdir", default="/tmp/gaussianem_analysis_perf")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, args.zdim)) * 2
    z = centres[rng.integers(0, 8, args.n)] + rng.normal(size=(args.n, args.zdim))
    model = make_model(args.gaussians, args.box, args.apix, args.zdim).to(args.device)
    config = {"box_size": args.box, "pixel_size_angstrom": args.apix}
    opts = AnalysisOptions(ksample=args.ksample, flex_sample=args.flex_sample, umap=args.umap, device=args.device)
    t0 = time.perf_counter()
    summary = run_analysis(model, z, config, args.outdir, opts, epoch=0)
    total = time.perf_counter() - t0
    print(f"\n{args.n:,} particles, zdim {args.zdim}, {args.gaussians:,} Gaussians, box {args.box}, "
          f"K={args.ksample}, flexibility sample {args.flex_sample}, UMAP {'on' if args.umap else 'off'}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, device {args.device}\n")
    print("| stage | seconds |\n| --- | ---: |")
    for k, v in summary["timings_s"].items():
        print(f"| {k} | {v:.1f} |")
    print(f"| **total** | **{total:.1f}** |")


if __name__ == "__main__":
    main()
