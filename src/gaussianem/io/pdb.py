"""Atomic models (PDB / mmCIF) through gemmi: reading users' models, writing pseudo-atomic models atomically.

Pseudo-atomic models hold one atom per Gaussian. PDB columns limit residue numbers to 9999, so Gaussian ``g``
becomes residue ``g % 9999 + 1`` of chain ``CHAIN_IDS[g // 9999]``; :func:`gaussian_index_of` inverts it.
"""

from __future__ import annotations

import logging
import math
import string
from pathlib import Path

import gemmi
import numpy as np

from gaussianem.errors import InputError
from gaussianem.io.files import existing_file
from gaussianem.io.writes import atomic_path

log = logging.getLogger(__name__)

CHAIN_IDS = string.ascii_uppercase + string.ascii_lowercase + string.digits
RESIDUES_PER_CHAIN = 9999
PSEUDO_RESNAME = "GAU"
PSEUDO_ATOM = "G"
B_FACTOR_MAX = 999.99  # the PDB column holds 6.2f
CIF_SUFFIXES = (".cif", ".mmcif")


def width_to_bfactor(sigma_angstrom: np.ndarray) -> np.ndarray:
    """Isotropic Gaussian width σ (Å) -> B-factor (Å²): ``B = 8π²σ²`` (σ² = mean-square displacement per axis)."""
    return 8.0 * math.pi**2 * np.asarray(sigma_angstrom, np.float64) ** 2


def gaussian_index_of(chain: str, seqnum: int) -> int:
    """(chain name, residue number) of a pseudo-atom -> Gaussian index."""
    return CHAIN_IDS.index(chain) * RESIDUES_PER_CHAIN + seqnum - 1


def pseudo_atomic_model(
    positions: np.ndarray,
    b_factors: np.ndarray,
    occupancies: np.ndarray,
    keep: np.ndarray | None = None,
) -> gemmi.Model:
    """One gemmi model with one HETATM per Gaussian.

    Args:
        positions: (G, 3) coordinates in Å (x, y, z) in the frame the file should have.
        b_factors: (G,) Å², clipped to the PDB column (999.99).
        occupancies: (G,) in [0, 1].
        keep: optional (G,) bool; Gaussians left out keep their residue number gap (identity is preserved).
    """
    g = positions.shape[0]
    if g > RESIDUES_PER_CHAIN * len(CHAIN_IDS):
        raise ValueError(f"{g} Gaussians exceed the {RESIDUES_PER_CHAIN * len(CHAIN_IDS)} a pseudo-atomic model holds")
    model = _new_model(1)
    b = np.clip(np.asarray(b_factors, np.float64), 0.0, B_FACTOR_MAX)
    occ = np.clip(np.asarray(occupancies, np.float64), 0.0, 1.0)
    keep = np.ones(g, bool) if keep is None else np.asarray(keep, bool)
    for c in range(math.ceil(g / RESIDUES_PER_CHAIN)):
        chain = gemmi.Chain(CHAIN_IDS[c])
        for i in range(c * RESIDUES_PER_CHAIN, min(g, (c + 1) * RESIDUES_PER_CHAIN)):
            if not keep[i]:
                continue
            res = gemmi.Residue()
            res.name = PSEUDO_RESNAME
            res.seqid = gemmi.SeqId(i - c * RESIDUES_PER_CHAIN + 1, " ")
            res.het_flag = "H"
            atom = gemmi.Atom()
            atom.name = PSEUDO_ATOM
            atom.element = gemmi.Element("C")
            atom.pos = gemmi.Position(*(float(v) for v in positions[i]))
            atom.b_iso = float(b[i])
            atom.occ = float(occ[i])
            res.add_atom(atom)
            chain.add_residue(res)
        if len(chain):
            model.add_chain(chain)
    return model


def structure_from_models(models: list[gemmi.Model], cell_angstrom: float | None = None) -> gemmi.Structure:
    """Wrap models (one, or many for a multi-model trajectory) into a structure; P1 cell of the box if given."""
    st = gemmi.Structure()
    st.name = "gaussianem"
    for i, m in enumerate(models):
        _set_model_number(m, i + 1)
        st.add_model(m)
    if cell_angstrom:
        st.cell = gemmi.UnitCell(cell_angstrom, cell_angstrom, cell_angstrom, 90, 90, 90)
        st.spacegroup_hm = "P 1"
    st.setup_entities()
    return st


def write_structure(path: str | Path, st: gemmi.Structure) -> None:
    """Write PDB (``.pdb``/``.ent``) or mmCIF (``.cif``/``.mmcif``) by suffix, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in CIF_SUFFIXES:
            st.make_mmcif_document().write_file(str(tmp))
        else:
            tmp.write_text(st.make_pdb_string())


def read_structure_file(path: str | Path, what: str = "atomic model") -> gemmi.Structure:
    """Read a PDB or mmCIF file (gzip allowed) with gemmi, every model as stored; a missing or unreadable file
    -> InputError (``what`` names the file in the message)."""
    path = existing_file(path, what)
    try:
        return gemmi.read_structure(str(path))
    except Exception as exc:  # gemmi raises RuntimeError/ValueError with varied text
        raise InputError(f"{path}: not a readable PDB/mmCIF file ({exc})") from exc


def read_structure(path: str | Path) -> gemmi.Structure:
    """Read a user's PDB or mmCIF (gzip allowed), first model only; bad input -> InputError."""
    st = read_structure_file(path)
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputError(f"{path}: the model holds no atoms")
    if len(st) > 1:
        log.info("%s holds %d models: using the first", path, len(st))
        for i in range(len(st) - 1, 0, -1):
            del st[i]
    st.remove_empty_chains()
    return st


def structure_positions(st: gemmi.Structure) -> np.ndarray:
    """All atom positions of the first model, in file order -> (M, 3) Å."""
    return np.array([[a.pos.x, a.pos.y, a.pos.z] for a in _atoms(st[0])], dtype=np.float64).reshape(-1, 3)


def _new_model(number: int) -> gemmi.Model:
    try:  # gemmi >= 0.7 numbers models; older versions name them
        return gemmi.Model(number)
    except TypeError:
        return gemmi.Model(str(number))


def _set_model_number(model: gemmi.Model, number: int) -> None:
    if hasattr(model, "num"):
        model.num = number
    else:
        model.name = str(number)


def _atoms(model: gemmi.Model):
    for chain in model:
        for res in chain:
            yield from res


def multi_model_structure(st: gemmi.Structure, positions: list[np.ndarray]) -> gemmi.Structure:
    """A trajectory: one model per entry of ``positions`` (each (M, 3)), all with the first model's atoms."""
    out = st.clone()
    template = out[0].clone()
    while len(out):
        del out[0]
    for i, pos in enumerate(positions):
        m = template.clone()
        _set_model_number(m, i + 1)
        atoms = list(_atoms(m))
        if len(atoms) != len(pos):
            raise ValueError(f"{len(pos)} positions for {len(atoms)} atoms")
        for a, p in zip(atoms, pos, strict=True):
            a.pos = gemmi.Position(float(p[0]), float(p[1]), float(p[2]))
        out.add_model(m)
    return out
