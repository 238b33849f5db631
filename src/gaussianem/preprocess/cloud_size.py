"""How many initial Gaussians: the default count from the map's content and the working pixel size, and warnings
when a cloud makes training slow (docs/DESIGN.md, "Initial cloud size").

Facts used: protein occupies ≈ 1.21 Å³ per Da (partial specific volume 0.73 cm³/g); an amino-acid residue of
≈ 110 Da carries ≈ 7.8 heavy atoms, ≈ 14 Da per heavy atom. The volume above the contour of a map at cryo-EM
resolution is larger than the molecule's (the map is blurred), so the estimates below err on the large side.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

PROTEIN_A3_PER_DA = 1.21
DA_PER_HEAVY_ATOM = 14.0
GAUSSIANS_PER_ATOM = 5.0  # content budget: ≈ one Gaussian per (1.5 Å)³ of the density above the contour
CEILING = 60_000  # the cloud size of the box-128 benchmarks; more only when asked for (--max-gaussians)
FLOOR = 6_000  # a cloud this small is never thinned (cheap, and the box-64 presets' size: 5,850)
TRIM_ONLY = 1.25  # up to this factor over the budget, keep one per voxel and drop the faintest
LARGE_CLOUD = 80_000  # warn above this many Gaussians
CPU_SLOW_HOURS = 1.0  # warn when training on the CPU would take longer than this (rough estimate)


@dataclass(frozen=True)
class CloudPlan:
    """Sampling of the initial cloud: a Gaussian every ``interval`` voxels of the working grid (an integer when
    the user gave one; possibly fractional by the default rule), at most ``max_gaussians`` kept (the densest), and
    the reasons recorded in ``dataset.json``."""

    interval: float
    max_gaussians: int | None
    record: dict


def default_interval(box: int) -> int:
    """The interval of the rule before the content budget, still used when only ``--max-gaussians`` is given."""
    return 2 if box > 256 else 1


def plan_cloud(volume: np.ndarray, voxel: float, threshold: float, interval: int | None,
               max_gaussians: int | None) -> CloudPlan:
    """Choose the sampling of the map (D, D, D) on the working grid (``voxel`` Å) above ``threshold``.

    Given ``interval`` or ``max_gaussians``: exactly as asked (interval default 1, 2 for boxes over 256). Otherwise
    one Gaussian per voxel above the contour (n₁) unless that exceeds the budget
    B = min(max(GAUSSIANS_PER_ATOM × estimated heavy atoms, FLOOR), CEILING): up to TRIM_ONLY·B the faintest
    voxels are dropped, beyond it the map is sampled every (n₁/B)^(1/3) voxels (trilinear values), trimmed to B.
    """
    d = volume.shape[0]
    if interval is not None or max_gaussians is not None:
        chosen = interval or default_interval(d)
        return CloudPlan(chosen, max_gaussians, {"rule": "user", "interval": chosen, "max_gaussians": max_gaussians})
    n1 = int(np.count_nonzero(volume > threshold))
    volume_a3 = n1 * voxel**3
    atoms = volume_a3 / (PROTEIN_A3_PER_DA * DA_PER_HEAVY_ATOM)
    content = max(1, int(math.ceil(GAUSSIANS_PER_ATOM * atoms)))
    budget = min(max(content, FLOOR), CEILING)
    record = {"rule": "content", "n_voxels_above_contour": n1, "volume_above_contour_a3": volume_a3,
              "estimated_mass_kda": volume_a3 / PROTEIN_A3_PER_DA / 1e3, "estimated_heavy_atoms": int(round(atoms)),
              "content_budget": content, "floor": FLOOR, "ceiling": CEILING, "budget": budget}
    what = (f"{n1:,} voxels above the contour at {voxel:.3g} Å/px ≈ {volume_a3 / PROTEIN_A3_PER_DA / 1e3:,.0f} kDa "
            f"≈ {atoms:,.0f} heavy atoms; budget min(max({GAUSSIANS_PER_ATOM:g}/atom = {content:,}, floor "
            f"{FLOOR:,}), ceiling {CEILING:,}) = {budget:,}")
    if n1 <= budget:
        reason = f"one per voxel above the contour ({what})"
        interval_out, cap = 1.0, None
    elif n1 <= TRIM_ONLY * budget:
        reason = f"one per voxel, the faintest {n1 - budget:,} dropped ({what})"
        interval_out, cap = 1.0, budget
    else:
        interval_out = (n1 / budget) ** (1 / 3)
        reason = f"one every {interval_out:.3f} voxels ({what})"
        cap = budget
    record.update(interval=interval_out, max_gaussians=cap, reason=reason)
    log.info("initial cloud size: %s; --max-gaussians / --gaussian-interval choose otherwise", reason)
    return CloudPlan(1 if interval_out == 1.0 else interval_out, cap, record)


def seconds_per_particle(n_gaussians: int, box: int, device: str) -> float:
    """A rough training cost per particle and epoch: linear in G (the decoder's MLP per Gaussian and the
    projection's 2·D² per Gaussian), fitted to benchmarks/RESULTS.md (2-core CPU at box 64: 126 / 40 particles/s
    at G 739 / 2,500; H200 at box 128: 1,747 particles/s at G 60,000)."""
    if device.startswith("cpu"):
        return n_gaussians * (9e-6 + 4e-10 * box * box)
    return n_gaussians * (6e-9 + 2.1e-13 * box * box)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def warn_training_cost(n_gaussians: int, box: int, n_particles: int, device: str, epochs: int = 20) -> list[str]:
    """Warnings (also logged) when the cloud is large or training on a CPU ``device`` would be slow."""
    out = []
    if n_gaussians > LARGE_CLOUD:
        gpu = seconds_per_particle(n_gaussians, box, "cuda")
        out.append(f"{n_gaussians:,} Gaussians: training {n_particles:,} particles for {epochs} epochs will take "
                   f"~{_duration(gpu * n_particles * epochs)} on one H200-class GPU (rough estimate, ~{1 / gpu:,.0f} "
                   "particles/s); use --max-gaussians / --gaussian-interval for fewer")
    if device.startswith("cpu"):
        cpu = seconds_per_particle(n_gaussians, box, "cpu")
        if cpu * n_particles * epochs > CPU_SLOW_HOURS * 3600:
            out.append(f"training on the CPU with {n_gaussians:,} Gaussians at box {box}: ~{1 / cpu:,.1f} "
                       f"particles/s, ~{_duration(cpu * n_particles * epochs)} for {epochs} epochs of "
                       f"{n_particles:,} particles (a rough estimate); use a GPU, or fewer Gaussians (--max-gaussians "
                       "/ --gaussian-interval) or a smaller --box")
    for text in out:
        log.warning(text)
    return out
