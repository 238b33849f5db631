"""The structural ensemble of a simulation: compositional states × a continuous motion, as atom Gaussians.

A particle's structure is given by a discrete ``state`` (which chains are present) and a continuous
``coordinate`` in [0, 1] (the trajectory frame / (F − 1), or the hinge angle mapped linearly from its range;
0 for ensembles without motion). Ground-truth volumes are rendered per state and per coordinate bin:
``volume_index = state · n_bins + bin``.

Positions are in Å in the map frame: the structure is centred on the weighted centroid of the full state (all
chains; for a trajectory averaged over frames) so that every state and conformation shares one frame.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gaussianem.errors import InputError
from gaussianem.physics.projection import voxelize_gaussians
from gaussianem.physics.rotation import rotvec_to_matrix
from gaussianem.simulate.presets import resolve_data_path, toy_atoms
from gaussianem.simulate.spec import SimulationSpec
from gaussianem.simulate.structures import AtomSet, atom_sigma, load_structure, load_trajectory

log = logging.getLogger(__name__)


@dataclass
class Ensemble:
    """Atoms (G) with states (S) and one optional continuous motion. All arrays numpy float64 on the host.

    base (G, 3) Å centred; weights (G,) integral of each atom Gaussian; sigma Å (shared); keep (S, G) bool;
    frames (F, G, 3) for a trajectory; hinge_moving (G,) bool, hinge_pivot (3,), hinge_axis (3,) unit,
    hinge_angles_deg (lo, hi) for a hinge; n_bins coordinate bins for the ground-truth volumes.
    """

    base: np.ndarray
    weights: np.ndarray
    sigma: float
    keep: np.ndarray
    state_names: list[str]
    state_probabilities: np.ndarray
    n_bins: int = 1
    frames: np.ndarray | None = None
    frame_weights: np.ndarray | None = None
    hinge_moving: np.ndarray | None = None
    hinge_pivot: np.ndarray | None = None
    hinge_axis: np.ndarray | None = None
    hinge_angles_deg: tuple[float, float] = (0.0, 0.0)
    coordinate_beta: tuple[float, float] = (1.0, 1.0)

    @property
    def n_atoms(self) -> int:
        return int(self.base.shape[0])

    @property
    def n_states(self) -> int:
        return int(self.keep.shape[0])

    @property
    def motion(self) -> str:
        """'trajectory', 'hinge' or 'none'."""
        if self.frames is not None:
            return "trajectory"
        return "hinge" if self.hinge_moving is not None else "none"

    @property
    def n_volumes(self) -> int:
        return self.n_states * self.n_bins

    def peak_amplitudes(self) -> np.ndarray:
        """(G,) peak densities of the atom Gaussians whose integrals are the weights."""
        return self.weights / ((2 * math.pi) ** 1.5 * self.sigma**3)

    # --- coordinates and bins -------------------------------------------------------------------------------
    def sample_coordinates(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n,) coordinates in [0, 1]: frame/(F-1) of frames drawn by ``frame_weights``, or Beta draws."""
        if self.motion == "trajectory":
            f = self.frames.shape[0]
            p = self.frame_weights if self.frame_weights is not None else np.full(f, 1.0 / f)
            frames = rng.choice(f, size=n, p=p)
            return frames / max(f - 1, 1)
        if self.motion == "hinge":
            return rng.beta(*self.coordinate_beta, size=n)
        return np.zeros(n)

    def frame_of(self, coordinate: np.ndarray) -> np.ndarray:
        f = self.frames.shape[0]
        return np.clip(np.rint(np.asarray(coordinate) * (f - 1)), 0, f - 1).astype(np.int64)

    def bin_of(self, coordinate: np.ndarray) -> np.ndarray:
        """(N,) coordinate bin of each coordinate."""
        coordinate = np.asarray(coordinate, dtype=np.float64)
        if self.motion == "trajectory":
            f = self.frames.shape[0]
            return (self.frame_of(coordinate) * self.n_bins) // f
        return np.clip(np.floor(coordinate * self.n_bins), 0, self.n_bins - 1).astype(np.int64)

    def bin_coordinates(self) -> np.ndarray:
        """(n_bins,) representative coordinate of every bin. A trajectory: the middle frame of the bin, or with
        ``frame_weights`` the weighted median of the bin's frames (where its particles are: one-hot weights on frame
        k make frame k the representative of its bin)."""
        if self.motion == "trajectory":
            f = self.frames.shape[0]
            bins = (np.arange(f) * self.n_bins) // f
            reps = []
            for b in range(self.n_bins):
                r = np.nonzero(bins == b)[0]
                w = None if self.frame_weights is None else self.frame_weights[r]
                if w is None or w.sum() <= 0:
                    reps.append(r[len(r) // 2])
                else:
                    reps.append(r[int(np.searchsorted(np.cumsum(w), 0.5 * w.sum()))])
            return np.array(reps, dtype=np.float64) / max(f - 1, 1)
        if self.motion == "hinge":
            return (np.arange(self.n_bins) + 0.5) / self.n_bins
        return np.zeros(1)

    def hinge_angle_deg(self, coordinate: np.ndarray) -> np.ndarray:
        lo, hi = self.hinge_angles_deg
        return lo + np.asarray(coordinate) * (hi - lo)

    # --- geometry -------------------------------------------------------------------------------------------
    def positions(self, coordinate: np.ndarray, device=None, dtype=torch.float32) -> Tensor:
        """Atom positions (B, G, 3) Å for coordinates (B,); (G, 3) for an ensemble without motion."""
        if self.motion == "none":
            return torch.as_tensor(self.base, dtype=dtype, device=device)
        if self.motion == "trajectory":
            return torch.as_tensor(self.frames[self.frame_of(coordinate)], dtype=dtype, device=device)
        angles = np.deg2rad(self.hinge_angle_deg(coordinate))
        rotvec = torch.as_tensor(angles[:, None] * self.hinge_axis[None], dtype=torch.float64)
        rot = rotvec_to_matrix(rotvec)  # (B, 3, 3)
        base = torch.as_tensor(self.base, dtype=torch.float64)
        pivot = torch.as_tensor(self.hinge_pivot, dtype=torch.float64)
        moved = torch.einsum("bij,gj->bgi", rot, base - pivot) + pivot
        moving = torch.as_tensor(self.hinge_moving)[None, :, None]
        return torch.where(moving, moved, base[None]).to(device=device, dtype=dtype)

    def amplitudes(self, state: np.ndarray, device=None, dtype=torch.float32) -> Tensor:
        """Peak amplitudes (B, G) of every particle's atoms: zero for the chains its state removes."""
        amp = self.peak_amplitudes()[None] * self.keep[np.asarray(state)]
        return torch.as_tensor(amp, dtype=dtype, device=device)

    def volume(self, state: int, coordinate: float, box: int, apix: float, device=None,
               dtype=torch.float32) -> Tensor:
        """Ground-truth density (D, D, D) ``[z, y, x]`` of one state at one coordinate."""
        pos = self.positions(np.array([coordinate]), device, dtype)
        if pos.ndim == 3:
            pos = pos[0]
        keep = torch.as_tensor(self.keep[state], device=device)
        amp = torch.as_tensor(self.peak_amplitudes(), dtype=dtype, device=device)
        sig = torch.full((self.n_atoms,), self.sigma, dtype=dtype, device=device)
        return voxelize_gaussians(pos[keep], sig[keep], amp[keep], box, apix)

    def max_radius(self) -> float:
        """Largest distance (Å) of any atom from the box centre over the motion's range."""
        if self.motion == "trajectory":
            return float(np.linalg.norm(self.frames, axis=-1).max())
        if self.motion == "hinge":
            c = np.linspace(0, 1, 9)
            return float(torch.linalg.vector_norm(self.positions(c, dtype=torch.float64), dim=-1).max())
        return float(np.linalg.norm(self.base, axis=-1).max())


def _hinge_geometry(atoms: AtomSet, moving: np.ndarray, hinge: dict, centre: np.ndarray):
    """Pivot (3,) and unit axis (3,) in the centred frame. Given ones are in the source's coordinates.

    Automatic pivot: centroid of the moving atoms within 6 Å of a fixed atom (the interface). Automatic axis:
    perpendicular to both the pivot→moving-centroid and pivot→fixed-centroid directions (an opening motion).
    """
    from scipy.spatial import cKDTree

    pos = atoms.positions
    fixed = ~moving
    if hinge.get("pivot") is not None:
        pivot = np.asarray(hinge["pivot"], dtype=np.float64)
    else:
        d, _ = cKDTree(pos[fixed]).query(pos[moving], distance_upper_bound=6.0)
        contact = pos[moving][np.isfinite(d)]
        if len(contact) == 0:
            raise InputError("hinge: the moving part does not touch the rest (no atom within 6 Å); give a pivot")
        pivot = contact.mean(0)
    if hinge.get("axis") is not None:
        axis = np.asarray(hinge["axis"], dtype=np.float64)
    else:
        a = pos[moving].mean(0) - pivot
        b = pos[fixed].mean(0) - pivot
        axis = np.cross(a, b)
        if np.linalg.norm(axis) < 1e-6 * max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12):
            axis = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 * np.linalg.norm(a) else [0.0, 1.0, 0.0])
    norm = np.linalg.norm(axis)
    if not norm > 0:
        raise InputError("hinge: the axis has zero length")
    return pivot - centre, axis / norm


def _load_atoms(spec: SimulationSpec) -> AtomSet:
    src = spec.source
    kind = src["kind"]
    if kind == "toy":
        return toy_atoms()
    if kind == "structure":
        if "path" not in src:
            raise InputError("source.path is required for kind 'structure'")
        return load_structure(resolve_data_path(src["path"]), hydrogens=spec.hydrogens)
    for key in ("topology", "trajectory"):
        if key not in src:
            raise InputError(f"source.{key} is required for kind 'trajectory'")
    frames = tuple(src.get("frames", (None, None, None)))
    return load_trajectory(
        resolve_data_path(src["topology"]), resolve_data_path(src["trajectory"]),
        selection=src.get("selection", "all"), align_selection=src.get("align", "name CA"),
        hydrogens=spec.hydrogens, frames=frames,
    )


def build_ensemble(spec: SimulationSpec) -> Ensemble:
    """Read / build the structure of a spec and set up its states, motion and atom width."""
    atoms = _load_atoms(spec)
    w = atoms.weights
    if atoms.frames is not None:
        centre = np.mean([(f * w[:, None]).sum(0) / w.sum() for f in atoms.frames], axis=0)
    else:
        centre = (atoms.positions * w[:, None]).sum(0) / w.sum()

    names, probs, keep = [], [], []
    for i, state in enumerate(spec.states):
        removed = list(state.get("remove_chains", []) or [])
        mask = ~atoms.select(chains=removed) if removed else np.ones(atoms.n_atoms, dtype=bool)
        if not mask.any():
            raise InputError(f"state {state.get('name', i)!r} removes every atom")
        names.append(str(state.get("name", f"state{i}")))
        probs.append(float(state.get("probability", 1.0)))
        keep.append(mask)
    probs = np.asarray(probs) / np.sum(probs)
    sigma = atom_sigma(spec.resolution_angstrom, spec.apix, spec.min_sigma_px)
    ens = Ensemble(
        base=atoms.positions - centre, weights=w, sigma=sigma, keep=np.stack(keep), state_names=names,
        state_probabilities=probs, coordinate_beta=tuple(spec.coordinate_beta),
    )
    if atoms.frames is not None and atoms.frames.shape[0] > 1:
        f = atoms.frames.shape[0]
        ens.frames = atoms.frames - centre
        ens.n_bins = min(spec.volume_bins, f)
        if spec.frame_weights is not None:
            fw = np.asarray(spec.frame_weights, dtype=np.float64)
            if fw.shape != (f,) or fw.min() < 0 or fw.sum() <= 0:
                raise InputError(f"frame_weights must be {f} non-negative numbers with a positive sum")
            ens.frame_weights = fw / fw.sum()
    elif spec.hinge is not None:
        parts = spec.hinge.get("parts") or []
        if not parts:
            raise InputError("hinge.parts must list at least one selection ({chains: [...], residues: [[lo, hi]]})")
        moving = np.zeros(atoms.n_atoms, dtype=bool)
        for part in parts:
            moving |= atoms.select(part.get("chains"), part.get("residues"))
        if not moving.any() or moving.all():
            raise InputError("hinge: the moving selection must hold some but not all atoms")
        ens.hinge_moving = moving
        ens.hinge_pivot, ens.hinge_axis = _hinge_geometry(atoms, moving, spec.hinge, centre)
        lo, hi = (float(a) for a in spec.hinge.get("angle_deg", (0.0, 30.0)))
        ens.hinge_angles_deg = (lo, hi)
        ens.n_bins = spec.volume_bins
    radius = ens.max_radius() + 3 * sigma + 2 * spec.shift_std_px * spec.apix
    half = spec.box // 2 * spec.apix
    if radius > half:
        log.warning("the structure reaches %.0f Å from the centre (with 3σ atoms and 2σ shifts) but the box half-width "
                    "is %.0f Å: particles will be cut at the box edge; raise --box or --apix", radius, half)
    log.info("%d atoms, σ = %.2f Å, %d state(s), motion: %s, %d ground-truth volume(s)",
             ens.n_atoms, sigma, ens.n_states, ens.motion, ens.n_volumes)
    return ens
