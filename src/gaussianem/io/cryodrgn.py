"""cryoDRGN pose/CTF pickles and the original GaussianEM ``poses.npy`` / ``ctf.npy``.

Facts relied on (cryoDRGN ``parse_pose_star``, ``parse_pose_csparc``, ``parse_ctf_csparc``, ``utils.R_from_relion``;
the original GaussianEM ``particle_preprocess.py``):

- cryoDRGN pose pickle: ``(rot (N, 3, 3), trans (N, 2))``. ``rot`` is ``R_from_relion(rot, tilt, psi)``, which is
  numerically RELION's ``A`` (checked against :func:`physics.rotation.euler_relion_to_matrix`); ``trans`` is
  ``+rlnOrigin (pixels) / D`` — a fraction of the box, same sign as RELION's origin. So the origin in Å is
  ``trans · D · pixel_size`` for any D/pixel size pair describing the same field of view. Old pickles that hold
  only ``rot`` mean zero shifts.
- cryoDRGN CTF pickle: float array (N, 9) with columns ``D, Apix, dfU (Å), dfV (Å), dfang (deg), kV, Cs (mm),
  amplitude contrast, phase shift (deg)``.
- Original GaussianEM ``poses.npy``: (N, 5) = RELION ``rot, tilt, psi`` (deg) + origin x, y in **pixels**
  (divided by D/2 there exactly like ``rlnOriginX/Y``), or (N, 11) = the flattened 3×3 matrix (``R_from_relion``,
  i.e. ``A``) + origin x, y in pixels. Its ``ctf.npy`` (N, 9) uses cryoDRGN's column order.
- A ``.txt`` particle list (cryoDRGN) names one stack per line, relative to the list's folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gaussianem.errors import InputError
from gaussianem.io.checks import load_error
from gaussianem.io.files import existing_file
from gaussianem.io.pickles import dump_pickle, load_pickle
from gaussianem.physics.ctf import CTF_FIELDS
from gaussianem.physics.rotation import euler_relion_to_matrix

log = logging.getLogger(__name__)

# cryoDRGN's (N, 9) CTF array: box, pixel size, then GaussianEM's required CTF fields in their order
CTF_COLUMNS = ("box_size", "pixel_size_angstrom", *CTF_FIELDS)


def _load(path: Path, what: str = "pickle") -> object:
    """A ``.npy`` array or a pickle read through the restricted unpickler (no code runs from the file)."""
    existing_file(path)
    if path.suffix != ".npy":
        return load_pickle(path, what)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: unreadable ({load_error(exc)})") from None


def read_poses(path: str | Path, box_size: np.ndarray | int, pixel_size_angstrom: np.ndarray | float,
               n_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a cryoDRGN pose pkl or an original GaussianEM ``poses.npy``.

    ``box_size`` and ``pixel_size_angstrom`` (scalars or (N,)) describe the particle images the poses belong to
    (to convert fractions/pixels to Å); ``n_images`` is checked against the number of poses.
    Returns (A (N, 3, 3), origins Å (N, 2)).
    """
    path = Path(path)
    obj = _load(path, "pose")
    apix = np.asarray(pixel_size_angstrom, np.float64).reshape(-1)
    box = np.asarray(box_size, np.float64).reshape(-1)
    n_poses = _count(obj)
    if n_images is not None and n_poses != n_images:
        raise InputError(f"count mismatch: {n_images} images but {n_poses} poses in {path}")
    if path.suffix == ".npy":
        arr = np.asarray(obj, np.float64)
        if arr.ndim != 2 or arr.shape[1] not in (5, 11):
            raise InputError(f"{path}: expected a GaussianEM poses array (N, 5) or (N, 11), got {arr.shape}")
        if arr.shape[1] == 5:
            rotation = euler_relion_to_matrix(torch.as_tensor(arr[:, :3])).numpy()
        else:
            rotation = arr[:, :9].reshape(-1, 3, 3)
        return _check_rot(rotation, path), arr[:, -2:] * apix[:, None]
    if isinstance(obj, tuple | list) and len(obj) == 2:
        try:
            rot, trans = (np.asarray(o, np.float64) for o in obj)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: expected a cryoDRGN pose pickle (rot (N,3,3), trans (N,2)): {exc}") from None
    elif isinstance(obj, np.ndarray) and obj.ndim == 3:
        rot, trans = np.asarray(obj, np.float64), None
        log.warning("%s: holds rotations only: shifts set to zero", path)
    else:
        raise InputError(f"{path}: expected a cryoDRGN pose pickle (rot (N,3,3), trans (N,2))")
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise InputError(f"{path}: rotations have shape {rot.shape}, expected (N, 3, 3)")
    if trans is None:
        trans = np.zeros((len(rot), 2))
    if trans.shape != (len(rot), 2):
        raise InputError(f"{path}: translations have shape {trans.shape}, expected ({len(rot)}, 2)")
    return _check_rot(rot, path), trans * box[:, None] * apix[:, None]


def _count(obj: object) -> int:
    if isinstance(obj, tuple | list) and len(obj) == 2:
        return len(obj[0]) if hasattr(obj[0], "__len__") else -1
    return len(obj) if hasattr(obj, "__len__") else -1


def _check_rot(rot: np.ndarray, path: Path) -> np.ndarray:
    err = np.abs(np.einsum("nij,nkj->nik", rot, rot) - np.eye(3)).max() if len(rot) else 0.0
    if not np.isfinite(rot).all() or err > 1e-3:
        raise InputError(f"{path}: the rotation matrices are not orthonormal (error {err:.3g})")
    det = np.linalg.det(rot)
    if (det < 0).any():
        raise InputError(f"{path}: {int((det < 0).sum())} rotation matrices are reflections (det < 0)")
    return rot


def read_ctf(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Read a cryoDRGN CTF pkl / GaussianEM ``ctf.npy`` (N, 9) -> (ctf dict (N,) each, box (N,), pixel size (N,))."""
    path = Path(path)
    obj = _load(path, "CTF")
    try:
        arr = np.asarray(obj, np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: expected CTF parameters of shape (N, 9) ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != 9:
        raise InputError(f"{path}: expected CTF parameters of shape (N, 9), got {arr.shape}")
    if not np.isfinite(arr[:, :8]).all():
        raise InputError(f"{path}: CTF parameters hold non-finite values")
    cols = {name: arr[:, i] for i, name in enumerate(CTF_COLUMNS)}
    cols["phase_shift_deg"] = np.nan_to_num(cols["phase_shift_deg"])
    box, apix = cols.pop("box_size"), cols.pop("pixel_size_angstrom")
    return cols, box, apix


def read_txt_list(path: str | Path) -> list[Path]:
    """Stacks named in a cryoDRGN ``.txt`` particle list (one per line, relative to the list's folder)."""
    path = existing_file(path)
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            out.append(p if p.is_absolute() else path.parent / p)
    if not out:
        raise InputError(f"{path}: names no stacks")
    return out


def write_pose_pkl(path: str | Path, rotation: np.ndarray, shift_angstrom: np.ndarray, box_size: int,
                   pixel_size_angstrom: float) -> None:
    """Write a cryoDRGN pose pickle (rot = A, trans = origin / (D · pixel size)), atomically."""
    trans = np.asarray(shift_angstrom, np.float64) / (box_size * pixel_size_angstrom)
    dump_pickle(path, (np.asarray(rotation, np.float64), trans))


def write_ctf_pkl(path: str | Path, ctf: dict[str, np.ndarray], box_size: int, pixel_size_angstrom: float) -> None:
    """Write a cryoDRGN CTF pickle (N, 9) float32, atomically."""
    n = len(ctf["defocus_u_angstrom"])
    arr = np.zeros((n, 9), np.float32)
    arr[:, 0], arr[:, 1] = box_size, pixel_size_angstrom
    for i, name in enumerate(CTF_COLUMNS[2:], start=2):
        arr[:, i] = ctf[name]
    dump_pickle(path, arr)
