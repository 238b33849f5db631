"""Decoding latent points into states and writing them: a volume, a Gaussian cloud and a pseudo-atomic model per
point (the k-means classes, the PC trajectories of ``analyze`` and the points of ``eval-vol``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gaussianem.analysis import atomic, state_views, volumes
from gaussianem.analysis.options import AnalysisOptions
from gaussianem.analysis.volumes import VolumeGrid
from gaussianem.errors import InputError
from gaussianem.gaussians import automatic_threshold
from gaussianem.io.mrc import write_volume
from gaussianem.io.pdb import write_structure
from gaussianem.io.ply import write_gaussians_ply
from gaussianem.physics.fsc import fsc
from gaussianem.progress import bar_disabled

log = logging.getLogger(__name__)

FORMATS = ("mrc", "ply", "pdb")


@dataclass
class StateSet:
    """Decoded states and what was written for them (for the report and the ChimeraX script)."""

    label: str
    folder: Path
    z: np.ndarray
    positions: np.ndarray
    widths: np.ndarray
    amplitudes: np.ndarray
    volume_files: list[Path]
    levels: list[float]
    projections: list[np.ndarray]  # (3, D, D) sum projections per state (state_views.projections)
    fsc_low: list[float]
    fsc_curves: list[np.ndarray] = field(default_factory=list)  # (D//2,) FSC with the consensus per state


def fsc_curve(vol: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """FSC (D//2,) of two volumes on the same grid."""
    with volumes.single_cpu_thread("cpu"):
        return fsc(torch.from_numpy(vol), torch.from_numpy(ref)).numpy()


def low_res_fsc(vol: np.ndarray, ref: np.ndarray, curve: np.ndarray | None = None) -> float:
    """Mean FSC over shells 1 .. D/8 (the low-resolution band)."""
    curve = fsc_curve(vol, ref) if curve is None else curve
    hi = max(2, len(curve) // 4)
    return float(np.mean(curve[1:hi]))


def render_states(
    label: str, folder: Path, model: Any, z: np.ndarray, grid: VolumeGrid, opts: AnalysisOptions,
    consensus: np.ndarray | None, base_amp: np.ndarray, formats: tuple[str, ...] = FORMATS,
    pdb_trajectory: str | None = None, cell: float | None = None,
) -> StateSet:
    """Decode the latent points z (T, zdim), write vol_XXX.mrc / gaussians_XXX.ply / model_XXX.pdb (per
    ``formats``) and optionally a multi-model PDB; keep projections, levels and FSC curves with the consensus."""
    folder.mkdir(parents=True, exist_ok=True)
    pos, wid, amp = volumes.decode_points(model, z, opts.batch_size, opts.device)
    n = len(z)
    vol_names = volumes.state_names(n, "vol", ".mrc")
    ply_names = volumes.state_names(n, "gaussians", ".ply")
    pdb_names = volumes.state_names(n, "model", ".pdb")
    files, levels, projs, fscs, curves = [], [], [], [], []
    for i in tqdm(range(n), desc=label, unit="vol", leave=False, disable=bar_disabled()):
        if "mrc" in formats or consensus is not None:
            vol = volumes.render_volume(pos[i], wid[i], amp[i], grid, opts.device)
            levels.append(automatic_threshold(vol, 0.85) if (vol > 0).any() else 0.0)
            projs.append(state_views.projections(vol))
            if consensus is not None:
                curves.append(fsc_curve(vol, consensus))
                fscs.append(low_res_fsc(vol, consensus, curves[-1]))
            if "mrc" in formats:
                write_volume(folder / vol_names[i], vol, grid.pixel_size_angstrom, grid.origin_angstrom)
                files.append(folder / vol_names[i])
        if "ply" in formats:
            write_gaussians_ply(folder / ply_names[i], pos[i], wid[i], amp[i])
        if "pdb" in formats:
            st = atomic.pseudo_atomic_structure(pos[i], wid[i], amp[i], grid.centre_angstrom, base_amp,
                                                min_occupancy=opts.min_occupancy, cell_angstrom=cell)
            write_structure(folder / pdb_names[i], st)
    if pdb_trajectory:
        st = atomic.pseudo_atomic_trajectory(pos, wid, amp, grid.centre_angstrom, base_amp, cell)
        write_structure(folder / pdb_trajectory, st)
    return StateSet(label, folder, z, pos, wid, amp, files, levels, projs, fscs, curves)



def evaluate_points(
    model: Any, z_points: np.ndarray, config: dict, outdir: str | Path, formats: tuple[str, ...] = ("mrc",),
    box: int | None = None, apix: float | None = None, device: str = "cpu", batch_size: int = 32,
) -> list[Path]:
    """Volumes / Gaussian clouds / pseudo-atomic PDBs at latent points (T, zdim), named vol_000.mrc ... in the
    request order. Returns the written paths."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"--format takes a comma list of {', '.join(FORMATS)}, got {','.join(formats) or '(none)'}")
    grid = volumes.output_grid(volumes.working_grid(config), box, apix)
    out = Path(outdir)
    _, _, base_amp = volumes.base_cloud_arrays(model)
    opts = AnalysisOptions(batch_size=batch_size, device=device, min_occupancy=0.0)
    s = render_states("eval-vol", out, model, np.atleast_2d(z_points), grid, opts, None, base_amp,
                       formats=tuple(formats), cell=grid.extent_angstrom)
    np.savetxt(out / "z_values.txt", np.atleast_2d(z_points), fmt="%.9g")
    n = len(s.z)
    names = {"mrc": ("vol", ".mrc"), "ply": ("gaussians", ".ply"), "pdb": ("model", ".pdb")}
    paths = [out / name for f in FORMATS if f in formats for name in volumes.state_names(n, *names[f])]
    log.info("%d points -> %d files in %s", len(s.z), len(paths), out)
    return paths

