"""Peak memory and time of ``gaussianem preprocess`` on a synthetic star + stack larger than half the RAM.

Writes a RELION 3.1 star and ``--stacks`` MRC stacks (``--n`` particles of ``--box``², float32) under ``--workdir``
with ``mrcfile.new_mmap`` in chunks, plus a small consensus map; then runs ``gaussianem preprocess ... --box
--out-box`` in a child process and reports its peak resident set (``getrusage(RUSAGE_CHILDREN).ru_maxrss``) and
wall time. Everything under ``--workdir`` is deleted afterwards unless ``--keep``.

    python benchmarks/speed/preprocess_memory.py --n 200000 --box 128 --out-box 64 --workdir /tmp/gem_prep_bench
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import starfile
import torch

from gaussianem.io.mrc import write_volume
from gaussianem.physics.projection import voxelize_gaussians
from gaussianem.physics.rotation import matrix_to_euler_relion, random_rotations

log = logging.getLogger("preprocess_memory")


def synthesise(workdir: Path, n: int, box: int, apix: float, n_stacks: int, seed: int = 0) -> tuple[Path, Path]:
    """Star + stacks + map on disk. Image content: a bank of 512 noise images, each scaled per particle."""
    rng = np.random.default_rng(seed)
    bank = rng.normal(size=(512, box, box)).astype(np.float32)
    stacks = workdir / "Extract" / "job001"
    stacks.mkdir(parents=True, exist_ok=True)
    names = []
    split = np.array_split(np.arange(n), n_stacks)
    t0 = time.time()
    for k, rows in enumerate(split):
        rel = f"Extract/job001/stack_{k:03d}.mrcs"
        with mrcfile.new_mmap(workdir / rel, shape=(len(rows), box, box), mrc_mode=2, overwrite=True) as m:
            m.set_image_stack()
            m.voxel_size = apix
            for s in range(0, len(rows), 2048):
                j = rows[s:s + 2048]
                m.data[s:s + len(j)] = bank[j % 512] * (1 + (j % 7)[:, None, None] * 0.01).astype(np.float32)
            m.flush()
        names += [f"{i + 1:06d}@{rel}" for i in range(len(rows))]
        log.info("stack %d/%d written (%.0f s)", k + 1, n_stacks, time.time() - t0)
    rot = random_rotations(n, torch.Generator().manual_seed(seed))
    euler = matrix_to_euler_relion(rot).numpy()
    particles = pd.DataFrame({
        "rlnImageName": names, "rlnAngleRot": euler[:, 0], "rlnAngleTilt": euler[:, 1], "rlnAnglePsi": euler[:, 2],
        "rlnOriginXAngst": rng.uniform(-5, 5, n), "rlnOriginYAngst": rng.uniform(-5, 5, n),
        "rlnDefocusU": rng.uniform(8000, 25000, n), "rlnDefocusV": rng.uniform(8000, 25000, n),
        "rlnDefocusAngle": rng.uniform(-90, 90, n), "rlnOpticsGroup": np.ones(n, np.int64),
    })
    optics = pd.DataFrame({"rlnOpticsGroupName": ["opticsGroup1"], "rlnOpticsGroup": [1],
                           "rlnImagePixelSize": [apix], "rlnImageSize": [box], "rlnImageDimensionality": [2],
                           "rlnVoltage": [300.0], "rlnSphericalAberration": [2.7], "rlnAmplitudeContrast": [0.1]})
    star_path = workdir / "Refine3D" / "job002" / "run_data.star"
    star_path.parent.mkdir(parents=True, exist_ok=True)
    starfile.write({"optics": optics, "particles": particles}, star_path)
    pos = torch.as_tensor(rng.normal(0, box * apix / 10, (40, 3)))
    vol = voxelize_gaussians(pos, torch.full((40,), 3 * apix, dtype=torch.float64), torch.ones(40, dtype=torch.float64),
                             box, apix)
    map_path = workdir / "consensus.mrc"
    write_volume(map_path, vol.numpy().astype(np.float32), apix)
    return star_path, map_path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--box", type=int, default=128)
    p.add_argument("--out-box", type=int, default=64)
    p.add_argument("--apix", type=float, default=1.0)
    p.add_argument("--stacks", type=int, default=20)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gem_prep_bench"))
    p.add_argument("--json", type=Path, help="write the figures here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the synthetic data and the dataset")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.time()
        star_path, map_path = synthesise(args.workdir, args.n, args.box, args.apix, args.stacks)
        input_bytes = sum(f.stat().st_size for f in (args.workdir / "Extract").rglob("*.mrcs"))
        t_synth = time.time() - t0
        log.info("synthetic input: %.2f GB in %.0f s", input_bytes / 1e9, t_synth)
        out = args.workdir / "dataset"
        cmd = [sys.executable, "-m", "gaussianem.cli", "preprocess", str(star_path), "-o", str(out),
               "--map", str(map_path), "--box", str(args.out_box)]
        t1 = time.time()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.time() - t1
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: KiB
        tail = "\n".join(proc.stdout.strip().splitlines()[-12:])
        log.info("preprocess output (tail):\n%s", tail)
        if proc.returncode != 0:
            log.error("preprocess failed with code %d", proc.returncode)
            return 1
        manifest = json.loads((out / "dataset.json").read_text())
        figures = {
            "n_particles": args.n, "input_box": args.box, "output_box": args.out_box,
            "input_gb": input_bytes / 1e9, "output_gb": (out / "particles.mrcs").stat().st_size / 1e9,
            "wall_s": wall, "particles_per_s": args.n / wall, "peak_rss_gb": peak_kb * 1024 / 1e9,
            "ram_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "n_gaussians": manifest["map"]["n_gaussians"], "pose_check_n": manifest["pose_check"]["n_sampled"],
            "synthesis_s": t_synth,
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
        return 0 if figures["peak_rss_gb"] <= 2.0 else 3
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
