"""cryoSPARC ``.cs`` files: a numpy structured array saved with ``np.save`` (read with ``np.load``).

Facts relied on (cryoSPARC's guide "Manipulating .cs files"; cryoDRGN ``parse_pose_csparc`` /
``parse_ctf_csparc``; pyem ``csparc2star`` / ``metadata/cryosparc2.py``):

- ``blob/path`` (bytes) names the particle stack, relative to the cryoSPARC project directory; a leading ``>``
  marks such a project-relative path (we strip it). ``blob/idx`` is the 0-based image index in that stack,
  ``blob/shape`` the (ny, nx) image size and ``blob/psize_A`` the pixel size in Å.
- ``alignments3D/pose`` is a rotation vector (axis · angle, radians). cryoDRGN turns it into its pose matrix with
  Rodrigues' formula and then **transposes** it; its ``R_from_relion`` for star files gives RELION's ``A``
  untransposed, and pyem's ``expmap`` likewise returns the transposed Rodrigues matrix before decomposing it
  with RELION's Euler convention. Hence ``A = Rodrigues(pose)ᵀ = Rodrigues(-pose)``.
- ``alignments3D/shift`` is in pixels of the alignment box, with the same sign as RELION's ``rlnOriginX/Y``
  (cryoDRGN divides both by D unchanged; pyem copies it to ``rlnOriginX/Y``). We convert with
  ``alignments3D/psize_A`` when present (the pixel size of the alignment, which is what makes cryoDRGN's "×2 for
  heterogeneous refinement" rule hold), else ``blob/psize_A``.
- ``ctf/df1_A``, ``ctf/df2_A`` (Å, = RELION DefocusU/V), ``ctf/df_angle_rad`` and ``ctf/phase_shift_rad``
  (radians: converted to degrees), ``ctf/accel_kv``, ``ctf/cs_mm``, ``ctf/amp_contrast``; ``ctf/bfactor`` (Å²,
  optional) is RELION's ``rlnCtfBfactor`` (pyem's csparc2star copies one into the other unchanged).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gaussianem.errors import InputError
from gaussianem.io.checks import load_error
from gaussianem.io.files import existing_file
from gaussianem.io.writes import save_npy_atomic
from gaussianem.physics.rotation import matrix_to_rotvec, rotvec_to_matrix

log = logging.getLogger(__name__)

POSE, SHIFT = "alignments3D/pose", "alignments3D/shift"
CTF_FIELDS = ("ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast")


def read_cs(path: str | Path) -> np.ndarray:
    """Load a ``.cs`` structured array (N,), with a clear error for anything else."""
    path = existing_file(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable cryoSPARC .cs file ({load_error(exc)})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None or arr.ndim != 1:
        raise InputError(f"{path}: not a cryoSPARC .cs file (expected a 1-D structured numpy array)")
    if len(arr) == 0:
        raise InputError(f"{path}: holds no particles")
    return arr


def require_fields(cs: np.ndarray, fields, path: Path | str, what: str) -> None:
    missing = [f for f in fields if f not in cs.dtype.names]
    if missing:
        raise InputError(f"{path}: {what} needs field(s) {', '.join(missing)}, absent from the .cs file")


# what preprocess needs from a .cs; a job's particles.cs may leave some to its passthrough file
NEEDED_FIELDS = ("blob/path", "blob/idx", POSE, SHIFT, "ctf/df1_A")


def merge_cs(base: np.ndarray, others: list[tuple[np.ndarray, Path | str]], path: Path | str) -> np.ndarray:
    """Join other .cs tables (a job's ``*_passthrough_particles.cs``) into ``base`` by ``uid``.

    ``base`` keeps its rows, their order and its own fields; each other table contributes only the fields the result
    does not yet have. Every ``uid`` of ``base`` must have a row in each other table (a clear error otherwise).

    Args:
        base: the particles' structured array (N,); others: (table (M,), its path) pairs; path: base's path.
    Returns:
        (N,) structured array with the union of the fields.
    """
    out = base
    for other, other_path in others:
        for name, arr in (("", out), (other_path, other)):
            if "uid" not in arr.dtype.names:
                raise InputError(f"{name or path}: no uid field: cannot join {Path(other_path).name} to "
                                 f"{Path(path).name}")
        new = [f for f in other.dtype.names if f not in out.dtype.names]
        if not new:
            continue
        order = np.argsort(other["uid"], kind="stable")
        sorted_uid = other["uid"][order]
        pos = np.clip(np.searchsorted(sorted_uid, out["uid"]), 0, len(sorted_uid) - 1)
        found = sorted_uid[pos] == out["uid"]
        if not found.all():
            raise InputError(f"{other_path}: {int((~found).sum())} of the {len(out)} particles of "
                             f"{Path(path).name} have no row (by uid) in it: not its passthrough file")
        rows = other[order[pos]]
        dtype = np.dtype([(f, out.dtype.fields[f][0]) for f in out.dtype.names]
                         + [(f, other.dtype.fields[f][0]) for f in new])  # names and types only: no padding
        merged = np.empty(len(out), dtype=dtype)
        for f in out.dtype.names:
            merged[f] = out[f]
        for f in new:
            merged[f] = rows[f]
        log.info("%s: took %d field(s) from %s (%s)", Path(path).name, len(new), Path(other_path).name,
                 ", ".join(sorted({f.split("/")[0] for f in new})))
        out = merged
    return out


def passthrough_candidates(path: Path | str) -> list[Path]:
    """``*passthrough_particles*.cs`` files beside ``path`` whose job prefix (``J42_``, ``P3_J42_``) is path's."""
    path = Path(path)
    job = path.name.split("_particles")[0].split("_passthrough")[0]
    prefix = "_".join(p for p in job.split("_") if not p.isdigit() or len(p) < 3)  # J42_008 -> J42
    return sorted(p for p in path.parent.glob("*passthrough_particles*.cs")
                  if p != path and (not prefix or p.name.startswith(prefix + "_")))


def read_cs_with_passthrough(path: Path | str, passthrough: list[Path] | None = None
                              ) -> tuple[np.ndarray, list[Path]]:
    """Read a .cs and join its passthrough file(s): the ones given, else, when fields that preprocess needs are
    missing, the job's ``*_passthrough_particles.cs`` beside it (cryoSPARC keeps inherited fields there).

    Returns (the joined table, the passthrough files joined)."""
    cs = read_cs(path)
    if passthrough:
        return merge_cs(cs, [(read_cs(p), p) for p in passthrough], path), [Path(p) for p in passthrough]
    missing = [f for f in NEEDED_FIELDS if f not in cs.dtype.names]
    if not missing or "uid" not in cs.dtype.names:
        return cs, []
    for cand in passthrough_candidates(path):
        try:
            other = read_cs(cand)
            if any(f in other.dtype.names for f in missing):
                log.info("%s lacks %s: joining %s by uid", Path(path).name, ", ".join(missing), cand.name)
                return merge_cs(cs, [(other, cand)], path), [cand]
        except InputError as exc:
            log.warning("passthrough candidate %s not used: %s", cand, exc)
    return cs, []


def blob_paths(cs: np.ndarray, path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(0-based image index (N,), stack path strings (N,) with any leading '>' removed)."""
    require_fields(cs, ["blob/path", "blob/idx"], path, "reading images")
    raw = cs["blob/path"]
    uniq, inverse = np.unique(raw, return_inverse=True)
    names = []
    for u in uniq:
        s = u.decode() if isinstance(u, bytes) else str(u)
        names.append(s[1:] if s.startswith(">") else s)
    return cs["blob/idx"].astype(np.int64), np.asarray(names, dtype=object)[inverse].astype(str)


def pixel_size(cs: np.ndarray) -> np.ndarray | None:
    """Per-particle image pixel size (N,) in Å from ``blob/psize_A``, or None."""
    if "blob/psize_A" in cs.dtype.names:
        return cs["blob/psize_A"].astype(np.float64)
    return None


def poses(cs: np.ndarray, path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """RELION matrices A (N, 3, 3) and origins in Å (N, 2) from ``alignments3D``."""
    require_fields(cs, [POSE, SHIFT], path, "the poses")
    rotvec = torch.as_tensor(np.asarray(cs[POSE], np.float64))
    rotation = rotvec_to_matrix(rotvec).transpose(-1, -2).numpy()
    if "alignments3D/psize_A" in cs.dtype.names:
        psize = cs["alignments3D/psize_A"].astype(np.float64)
    elif "blob/psize_A" in cs.dtype.names:
        psize = cs["blob/psize_A"].astype(np.float64)
    else:
        raise InputError(f"{path}: alignments3D/shift is in pixels but the .cs gives no pixel size "
                         "(alignments3D/psize_A or blob/psize_A)")
    shift = np.asarray(cs[SHIFT], np.float64) * psize[:, None]
    return rotation, shift


def ctf(cs: np.ndarray, path: Path | str) -> dict[str, np.ndarray] | None:
    """CTF parameters (each (N,)) named as in ``ctf.npz``; None when the .cs has no ``ctf/df1_A``."""
    if "ctf/df1_A" not in cs.dtype.names:
        log.warning("%s: no ctf/df1_A: the data are treated as having no CTF", path)
        return None
    require_fields(cs, CTF_FIELDS, path, "the CTF")
    f = lambda k: np.asarray(cs[k], np.float64)  # noqa: E731
    phase = np.rad2deg(f("ctf/phase_shift_rad")) if "ctf/phase_shift_rad" in cs.dtype.names else np.zeros(len(cs))
    out = {
        "defocus_u_angstrom": f("ctf/df1_A"),
        "defocus_v_angstrom": f("ctf/df2_A"),
        "defocus_angle_deg": np.rad2deg(f("ctf/df_angle_rad")),
        "voltage_kv": f("ctf/accel_kv"),
        "cs_mm": f("ctf/cs_mm"),
        "amplitude_contrast": f("ctf/amp_contrast"),
        "phase_shift_deg": phase,
    }
    if "ctf/bfactor" in cs.dtype.names:  # Å², = rlnCtfBfactor; absent: no key
        out["bfactor"] = f("ctf/bfactor")
    return out


def relion_to_cs_pose(rotation: np.ndarray, shift_angstrom: np.ndarray, psize: np.ndarray | float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`poses`: A (N, 3, 3), origins Å (N, 2) -> (rotation vectors (N, 3), shifts in pixels (N, 2))."""
    a_t = torch.as_tensor(np.asarray(rotation, np.float64)).transpose(-1, -2)
    rotvec = matrix_to_rotvec(a_t).numpy()
    shift = np.asarray(shift_angstrom, np.float64) / np.reshape(np.asarray(psize, np.float64), (-1, 1))
    return rotvec, shift


def write_cs(path: str | Path, cs: np.ndarray) -> None:
    """Save a structured array as a ``.cs`` file (``np.save`` format, no suffix added), atomically."""
    save_npy_atomic(path, cs)
