"""Gaussians as pseudo-atoms: pseudo-atomic models, trajectories, flexibility, and warping a user's atomic model.

Positions here are in the Gaussian frame (Å, origin at the box centre) unless a ``centre`` offset (the user-frame
position of the box centre, :class:`gaussianem.analysis.volumes.VolumeGrid.centre_angstrom`) is applied.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import gemmi
import numpy as np
from scipy.spatial import cKDTree

from gaussianem.analysis.volumes import DecoderLike, VolumeGrid, decode_batches, render_volume
from gaussianem.io.pdb import (
    multi_model_structure,
    pseudo_atomic_model,
    structure_from_models,
    structure_positions,
    width_to_bfactor,
    write_structure,
)

log = logging.getLogger(__name__)


def occupancy_from_amplitude(amplitudes: np.ndarray, reference: np.ndarray | float | None = None) -> np.ndarray:
    """Amplitudes (G,) -> occupancies in [0, 1]: ``amplitude / reference`` clipped.

    ``reference`` is the base cloud's amplitudes (per Gaussian: occupancy = the fraction of the consensus
    density still present, so a removed subunit reads ~0) or a scalar; None normalises by the largest amplitude.
    """
    amp = np.asarray(amplitudes, np.float64)
    ref = float(amp.max()) if reference is None else np.asarray(reference, np.float64)
    return np.clip(amp / np.maximum(ref, 1e-12), 0.0, 1.0)


def pseudo_atomic_structure(
    positions: np.ndarray, widths: np.ndarray, amplitudes: np.ndarray, centre: tuple[float, float, float],
    amplitude_reference: np.ndarray | float | None = None, b_factors: np.ndarray | None = None,
    min_occupancy: float = 0.0, cell_angstrom: float | None = None,
) -> gemmi.Structure:
    """One cloud -> a pseudo-atomic structure: one atom per Gaussian at ``position + centre``.

    B-factor = 8π²σ² from the width unless ``b_factors`` (G,) is given; occupancy from the amplitude
    (:func:`occupancy_from_amplitude`); Gaussians with occupancy below ``min_occupancy`` are left out.
    """
    occ = occupancy_from_amplitude(amplitudes, amplitude_reference)
    b = width_to_bfactor(widths) if b_factors is None else np.asarray(b_factors, np.float64)
    if b_factors is not None and np.any(b > 999.99):
        log.warning("%d B-factors exceed the PDB column's 999.99 (RMSF above %.1f Å) and are clipped there; "
                    "flexibility_rmsf.npy and flexibility.mrc keep the true values", int((b > 999.99).sum()),
                    math.sqrt(3 * 999.99 / (8 * math.pi**2)))
        b = np.minimum(b, 999.99)
    _warn_b_overflow(b)
    keep = occ >= min_occupancy if min_occupancy > 0 else None
    model = pseudo_atomic_model(np.asarray(positions) + np.asarray(centre), b, occ, keep)
    return structure_from_models([model], cell_angstrom)


def pseudo_atomic_trajectory(
    positions: np.ndarray, widths: np.ndarray, amplitudes: np.ndarray, centre: tuple[float, float, float],
    amplitude_reference: np.ndarray | float | None = None, cell_angstrom: float | None = None,
) -> gemmi.Structure:
    """States (T, G, 3), (T, G), (T, G) -> one multi-model structure (all Gaussians in every model)."""
    models = []
    for t in range(positions.shape[0]):
        occ = occupancy_from_amplitude(amplitudes[t], amplitude_reference)
        b = width_to_bfactor(widths[t])
        models.append(pseudo_atomic_model(positions[t] + np.asarray(centre), b, occ))
    _warn_b_overflow(width_to_bfactor(widths))
    return structure_from_models(models, cell_angstrom)


def _warn_b_overflow(b: np.ndarray) -> None:
    if np.any(b > 999.99):
        log.warning("%d B-factors exceed the PDB column's 999.99 and are clipped there (widths above %.2f Å; the "
                    "PLY and .npy files keep the true values)", int((b > 999.99).sum()),
                    math.sqrt(999.99 / (8 * math.pi**2)))


# ----------------------------------------------------------------------------------------------- flexibility
def flexibility(
    model: DecoderLike, z_sample: np.ndarray, base_positions: np.ndarray | None = None, batch_size: int = 64,
    device: Any = "cpu", progress: bool = True,
) -> dict[str, np.ndarray]:
    """Per-Gaussian motion over a particle sample (decoded in chunks; memory O(G)).

    Args:
        z_sample: (S, zdim) latents of the sampled particles.
        base_positions: (G, 3) consensus positions; when given, ``rms_displacement`` is returned too.

    Returns:
        ``rmsf`` (G,) Å: RMS fluctuation of each Gaussian about its mean position over the sample (the
        flexibility written as B-factors and as a map); ``rms_displacement`` (G,) Å: RMS distance from the base
        position; ``mean_position`` (G, 3); ``amplitude_mean`` (G,), ``amplitude_std`` (G,).
    """
    s = 0
    sum_p = sum_p2 = sum_a = sum_a2 = sum_d2 = None
    for _rows, pos, _wid, amp in decode_batches(model, z_sample, batch_size, device, progress, desc="flexibility"):
        if sum_p is None:
            g = pos.shape[1]
            sum_p, sum_p2, sum_d2 = np.zeros((g, 3)), np.zeros(g), np.zeros(g)
            sum_a, sum_a2 = np.zeros(g), np.zeros(g)
        s += pos.shape[0]
        sum_p += pos.sum(0)
        sum_p2 += (pos**2).sum((0, 2))
        if base_positions is not None:
            sum_d2 += ((pos - base_positions[None]) ** 2).sum((0, 2))
        sum_a += amp.sum(0)
        sum_a2 += (amp**2).sum(0)
    if s == 0:
        raise ValueError("flexibility needs at least one particle")
    mean_p = sum_p / s
    msf = np.maximum(sum_p2 / s - (mean_p**2).sum(1), 0.0)
    mean_a = sum_a / s
    out = {
        "rmsf": np.sqrt(msf),
        "mean_position": mean_p,
        "amplitude_mean": mean_a,
        "amplitude_std": np.sqrt(np.maximum(sum_a2 / s - mean_a**2, 0.0)),
    }
    if base_positions is not None:
        out["rms_displacement"] = np.sqrt(sum_d2 / s)
    return out


def rmsf_to_bfactor(rmsf: np.ndarray) -> np.ndarray:
    """3-D RMS fluctuation (Å) -> B-factor (Å²): ``B = 8π²⟨u²⟩/3`` with ⟨u²⟩ = RMSF²."""
    return 8.0 * math.pi**2 * np.asarray(rmsf, np.float64) ** 2 / 3.0


def flexibility_map(
    positions: np.ndarray, widths: np.ndarray, amplitudes: np.ndarray, rmsf: np.ndarray, grid: VolumeGrid,
    density_fraction: float = 0.05, device: Any = "cpu",
) -> np.ndarray:
    """Local RMSF (Å) as a map: density-weighted mean of the Gaussians' RMSF at every voxel.

    ``map = voxelise(a·rmsf) / voxelise(a)`` where the consensus density exceeds ``density_fraction`` of its
    maximum, 0 elsewhere -> (D, D, D) float32 on ``grid``. Colour the consensus map by it, or contour it.
    """
    dens = render_volume(positions, widths, amplitudes, grid, device).astype(np.float64)
    weighted = render_volume(positions, widths, amplitudes * rmsf, grid, device).astype(np.float64)
    inside = dens > density_fraction * dens.max()
    out = np.zeros_like(dens)
    out[inside] = weighted[inside] / dens[inside]
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------------- warping
def mean_neighbour_distance(points: np.ndarray) -> float:
    """Mean distance (Å) of each point (G, 3) to its nearest neighbour."""
    d, _ = cKDTree(points).query(points, k=2)
    return float(d[:, 1].mean())


def warp_points(
    points: np.ndarray, base: np.ndarray, moved: np.ndarray, k: int = 16, kernel_angstrom: float | None = None,
    mode: str = "affine", weights: np.ndarray | None = None, ridge: float = 1e-3,
) -> np.ndarray:
    """Carry points by the displacement field of a Gaussian cloud, interpolated smoothly.

    Each point takes the k nearest base Gaussians with Gaussian-kernel weights ``w = exp(-d²/2s²)`` (times the
    optional per-Gaussian ``weights``, e.g. amplitudes, so faded Gaussians count less). ``mode="average"``:
    the weighted mean displacement. ``mode="affine"`` (default): moving least squares of first order, i.e. a
    weighted affine fit of the displacements around the point evaluated at the point; it reproduces any affine
    field (hence small rigid rotations of a domain) exactly and falls back to the mean where the fit is
    ill-conditioned (ridge-regularised gradient); points more than 3 s from their neighbours' centre take the affine
    term at 3 s (no extrapolation far outside the cloud).

    Args:
        points: (M, 3) Å, Gaussian frame.  base: (G, 3) base positions.  moved: (G, 3) positions in the state.
        k: neighbours per point.  kernel_angstrom: s; default 1.5 × the mean nearest-neighbour distance of base.

    Returns:
        (M, 3) moved points.
    """
    if mode not in ("affine", "average"):
        raise ValueError(f"mode must be 'affine' or 'average', got {mode!r}")
    base = np.asarray(base, np.float64)
    disp = np.asarray(moved, np.float64) - base
    pts = np.asarray(points, np.float64)
    k = min(k, len(base))
    s = kernel_angstrom or 1.5 * mean_neighbour_distance(base)
    dist, idx = cKDTree(base).query(pts, k=k)
    if k == 1:
        dist, idx = dist[:, None], idx[:, None]
    # weights relative to the nearest neighbour so that far points keep a usable normalisation
    w = np.exp(-(dist**2 - dist[:, :1] ** 2) / (2 * s**2))
    if weights is not None:
        w = w * np.maximum(np.asarray(weights, np.float64)[idx], 1e-12)
    w = w / w.sum(1, keepdims=True)
    d_nb = disp[idx]  # (M, k, 3)
    mean_d = np.einsum("mk,mkc->mc", w, d_nb)
    if mode == "average" or k < 4:
        return pts + mean_d
    x_nb = base[idx]
    mean_x = np.einsum("mk,mkc->mc", w, x_nb)
    xc = x_nb - mean_x[:, None]  # (M, k, 3)
    dc = d_nb - mean_d[:, None]
    cov = np.einsum("mk,mki,mkj->mij", w, xc, xc)  # (M, 3, 3)
    cross = np.einsum("mk,mki,mkj->mij", w, xc, dc)  # (M, 3, 3)
    scale = np.trace(cov, axis1=1, axis2=2)[:, None, None] / 3.0
    reg = cov + (ridge * scale + 1e-12) * np.eye(3)
    jac = np.linalg.solve(reg, cross)  # d ≈ mean_d + (x - mean_x) @ jac
    # the affine fit holds near its Gaussians: beyond 3 s from their weighted centre its lever arm is capped, so a
    # point far outside the cloud (a tail beyond the contour, a misplaced model) moves with the nearby Gaussians
    # instead of by an extrapolated rotation that grows with the distance
    lever = pts - mean_x
    reach = np.linalg.norm(lever, axis=1, keepdims=True)
    lever = lever * np.minimum(1.0, 3 * s / np.maximum(reach, 1e-12))
    return pts + mean_d + np.einsum("mi,mij->mj", lever, jac)


def best_reference(atoms: np.ndarray, candidates: list[np.ndarray]) -> tuple[int, np.ndarray]:
    """Which cloud an atomic model fits: RMS distance (Å) of every atom (M, 3) to its nearest Gaussian, for each
    candidate (G, 3) -> (index of the best, scores (C,))."""
    scores = np.array([float(np.sqrt(np.mean(cKDTree(c).query(atoms, k=1)[0] ** 2))) for c in candidates])
    return int(np.argmin(scores)), scores


def warp_structure_states(
    st: gemmi.Structure, base: np.ndarray, states: np.ndarray, centre: tuple[float, float, float],
    amplitudes: np.ndarray | None = None, **kwargs: Any,
) -> list[np.ndarray]:
    """A user's model (user frame) carried to each state: states (T, G, 3) -> T arrays (M, 3) in the user frame.

    ``amplitudes`` (T, G) optionally weights Gaussians per state (faded ones count less).
    """
    c = np.asarray(centre, np.float64)
    atoms = structure_positions(st) - c
    out = []
    for t in range(states.shape[0]):
        w = None if amplitudes is None else amplitudes[t]
        out.append(warp_points(atoms, base, states[t], weights=w, **kwargs) + c)
    return out


def write_warped(
    outdir: Path, st: gemmi.Structure, warped: list[np.ndarray], names: list[str], traj_name: str | None,
) -> list[Path]:
    """Write one file per warped state (names carry the suffix: .pdb or .cif) and, if ``traj_name``, a
    multi-model trajectory of them all."""
    paths = []
    for pos, name in zip(warped, names, strict=True):
        p = outdir / name
        write_structure(p, multi_model_structure(st, [pos]))
        paths.append(p)
    if traj_name:
        p = outdir / traj_name
        write_structure(p, multi_model_structure(st, warped))
        paths.append(p)
    return paths


def is_alpha_carbon(res: gemmi.Residue, atom: gemmi.Atom) -> bool:
    """A protein Cα (atom 'CA' of a residue that is not a calcium ion; PDB files without element columns make
    gemmi guess calcium from the name)."""
    return atom.name == "CA" and res.name != "CA" and atom.element.name in ("C", "Ca")


def ca_positions(st: gemmi.Structure) -> np.ndarray:
    """Cα positions of the first model, in chain/residue order -> (M, 3)."""
    out = [[a.pos.x, a.pos.y, a.pos.z] for ch in st[0] for r in ch for a in r if is_alpha_carbon(r, a)]
    return np.array(out, np.float64).reshape(-1, 3)
