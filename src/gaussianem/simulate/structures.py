"""Atomic structures and trajectories -> atoms as weighted, resolution-limited 3D Gaussians.

Every atom becomes an isotropic 3D Gaussian whose integral is its atomic number ``Z`` (a simple stand-in for the
electron scattering power of the element) and whose standard deviation ``σ`` sets the resolution limit. The
relation between ``σ`` and a resolution ``d`` is the one :func:`gaussianem.physics.fourier.lowpass_volume` uses:
the Fourier transform of the Gaussian, ``exp(-2π²σ²s²)``, falls to 1/2 at ``s = 1/d``, i.e.
``σ = d · √(ln 2 / 2) / π ≈ 0.187 d``. ``σ`` is never smaller than ``min_sigma_px`` pixels so the grid samples
the Gaussians (at σ = 1 px the spectrum at Nyquist is exp(-π²/2) ≈ 0.007).

Structures are read with gemmi (PDB / mmCIF, first model, hydrogens, waters and alternative conformations
removed); trajectories with MDAnalysis (elements from the topology, else guessed from masses).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaussianem.errors import InputError

log = logging.getLogger(__name__)

# standard atomic masses (u) of the elements found in biomolecules, to guess elements from topologies without them
_MASS_TABLE = {
    "H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "NA": 22.990, "MG": 24.305, "P": 30.974, "S": 32.06,
    "CL": 35.45, "K": 39.098, "CA": 40.078, "MN": 54.938, "FE": 55.845, "ZN": 65.38, "SE": 78.971,
}


def sigma_from_resolution(resolution_angstrom: float) -> float:
    """σ (Å) of a Gaussian whose Fourier amplitude is 1/2 at 1/resolution: ``d · √(ln2/2) / π``."""
    return float(resolution_angstrom) * math.sqrt(math.log(2) / 2) / math.pi


def atom_sigma(resolution_angstrom: float | None, pixel_size_angstrom: float, min_sigma_px: float = 1.0) -> float:
    """The atom width (Å) used by the simulator: from the resolution, floored at ``min_sigma_px`` pixels."""
    floor = min_sigma_px * pixel_size_angstrom
    if resolution_angstrom is None:
        return floor
    return max(sigma_from_resolution(resolution_angstrom), floor)


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol (gemmi's table); 6 (carbon) with a warning for unknown symbols."""
    import gemmi

    z = gemmi.Element(str(symbol).strip() or "X").atomic_number
    return int(z) if z > 0 else 6


@dataclass
class AtomSet:
    """Atoms of one structure: positions (G, 3) Å (x, y, z), weights (G,) (atomic numbers), chain ids (G,) str,
    residue numbers (G,) int. ``frames`` (F, G, 3) holds trajectory coordinates when there are several."""

    positions: np.ndarray
    weights: np.ndarray
    chains: np.ndarray
    residues: np.ndarray
    frames: np.ndarray | None = None

    @property
    def n_atoms(self) -> int:
        return int(self.positions.shape[0])

    def select(self, chains: list[str] | None = None, residues: list[list[int]] | None = None) -> np.ndarray:
        """Boolean mask (G,) of the atoms in ``chains`` (all when None) and within any inclusive residue range."""
        mask = np.ones(self.n_atoms, dtype=bool)
        if chains:
            unknown = sorted(set(chains) - set(self.chains.tolist()))
            if unknown:
                raise InputError(f"chains {unknown} are not in the structure (it has {sorted(set(self.chains))})")
            mask &= np.isin(self.chains, list(chains))
        if residues:
            rmask = np.zeros(self.n_atoms, dtype=bool)
            for lo, hi in residues:
                rmask |= (self.residues >= int(lo)) & (self.residues <= int(hi))
            mask &= rmask
        return mask


def load_structure(path: str | Path, hydrogens: bool = False) -> AtomSet:
    """Read a PDB / mmCIF file (optionally gzipped) with gemmi: first model, no waters, first altloc."""
    from gaussianem.io.pdb import read_structure_file  # gemmi loads only when a structure is read

    st = read_structure_file(path, "structure file")
    if len(st) == 0:
        raise InputError(f"{path}: the structure has no model")
    st.remove_waters()
    st.remove_alternative_conformations()
    if not hydrogens:
        st.remove_hydrogens()
    pos, w, ch, res = [], [], [], []
    for chain in st[0]:
        for residue in chain:
            for atom in residue:
                pos.append((atom.pos.x, atom.pos.y, atom.pos.z))
                w.append(atom.element.atomic_number or 6)
                ch.append(chain.name)
                res.append(residue.seqid.num)
    if not pos:
        raise InputError(f"{path}: no atoms left after removing waters/hydrogens")
    return AtomSet(np.asarray(pos, np.float64), np.asarray(w, np.float64), np.asarray(ch), np.asarray(res, np.int64))


def _elements_from_universe(atoms) -> list[str]:
    if hasattr(atoms, "elements"):
        els = [str(e) for e in atoms.elements]
        if all(e.strip() for e in els):
            return els
    names, masses = list(_MASS_TABLE), np.array(list(_MASS_TABLE.values()))
    return [names[int(np.argmin(np.abs(masses - m)))] for m in atoms.masses]


def load_trajectory(
    topology: str | Path,
    trajectory: str | Path,
    selection: str = "all",
    align_selection: str | None = "name CA",
    hydrogens: bool = False,
    frames: tuple[int | None, int | None, int | None] = (None, None, None),
) -> AtomSet:
    """Read a trajectory with MDAnalysis; every frame is superimposed on the first by ``align_selection``.

    Returns an :class:`AtomSet` whose ``positions`` is the first frame and ``frames`` (F, G, 3) all of them.
    """
    import MDAnalysis as mda
    from MDAnalysis.analysis.align import rotation_matrix

    for p in (topology, trajectory):
        if not Path(p).is_file():
            raise InputError(f"trajectory file not found: {p}")
    try:
        u = mda.Universe(str(topology), str(trajectory))
    except Exception as exc:
        raise InputError(f"cannot read trajectory {topology} + {trajectory} ({exc})") from exc
    atoms = u.select_atoms(selection)
    if not hydrogens:
        els = np.array(_elements_from_universe(atoms))
        atoms = atoms[els != "H"]
    if len(atoms) == 0:
        raise InputError(f"selection '{selection}' leaves no atoms")
    elements = _elements_from_universe(atoms)
    weights = np.array([atomic_number(e) for e in elements], dtype=np.float64)
    ref_idx = None
    if align_selection:
        ref_sel = atoms.select_atoms(align_selection)
        if len(ref_sel) < 3:
            raise InputError(f"alignment selection '{align_selection}' has fewer than 3 atoms")
        ref_idx = np.searchsorted(atoms.indices, ref_sel.indices)
    coords = []
    ref = ref_centre = None
    for _ in u.trajectory[slice(*frames)]:
        x = atoms.positions.astype(np.float64)
        if ref_idx is not None:
            sub = x[ref_idx]
            centre = sub.mean(0)
            if ref is None:
                ref, ref_centre = sub - centre, centre
            else:
                rot, _ = rotation_matrix(sub - centre, ref)
                x = (x - centre) @ np.asarray(rot).T + ref_centre
        coords.append(x)
    if not coords:
        raise InputError("the trajectory has no frames in the chosen range")
    frames_arr = np.stack(coords)
    chains = np.asarray([str(s) for s in atoms.segids]) if hasattr(atoms, "segids") else np.full(len(atoms), "A")
    return AtomSet(frames_arr[0].copy(), weights, chains, np.asarray(atoms.resids, np.int64), frames_arr)
