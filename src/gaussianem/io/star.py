"""RELION star files: particles, optics groups, poses, CTF (read with the ``starfile`` package).

Facts relied on (RELION's documentation and source; cryoDRGN's ``parse_pose_star`` / ``parse_ctf_star``; pyem):

- RELION 3.0 ``run_data.star`` has one data block (``data_`` or ``data_images``); every per-particle value is a
  column: ``rlnImageName`` (``idx@path``, idx 1-based), ``rlnAngleRot/Tilt/Psi`` (deg), ``rlnOriginX/Y``
  (**pixels**), ``rlnDefocusU/V`` (Å), ``rlnDefocusAngle`` (deg), ``rlnVoltage`` (kV), ``rlnSphericalAberration``
  (mm), ``rlnAmplitudeContrast``, ``rlnPhaseShift`` (deg, optional), ``rlnCtfBfactor`` (Å², optional: the CTF
  is multiplied by ``exp(-B s²/4)``, s in 1/Å, as in RELION's ``CTF::getCTF``). The pixel size is
  ``rlnDetectorPixelSize`` (µm) · 10⁴ / ``rlnMagnification`` (Å), or ``rlnImagePixelSize`` where present.
- RELION 3.1, 4 and 5 have ``data_optics`` (one row per ``rlnOpticsGroup``: ``rlnImagePixelSize``,
  ``rlnImageSize``, ``rlnVoltage``, ``rlnSphericalAberration``, ``rlnAmplitudeContrast``) and ``data_particles``
  with ``rlnOpticsGroup`` and ``rlnOriginXAngst/YAngst`` (**Å**). A column present in the particle table
  overrides the optics value.
- The Euler angles give RELION's matrix ``A`` (``Euler_angles2matrix``; cryoDRGN's ``R_from_relion`` yields the
  same matrix and its ``parse_pose_star`` stores it untransposed). The origin is the vector from the particle
  centre to the image centre: the particle centre sits at ``image centre − origin``. cryoDRGN stores
  ``trans = +origin_px / D``, with the same sign.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch

from gaussianem.errors import InputError
from gaussianem.io.checks import numeric_column
from gaussianem.io.files import existing_file
from gaussianem.io.writes import atomic_path
from gaussianem.physics.rotation import euler_relion_to_matrix

log = logging.getLogger(__name__)

ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnVoltage", "rlnSphericalAberration",
               "rlnAmplitudeContrast")


@dataclass
class StarFile:
    """A parsed RELION star file.

    ``blocks`` holds every data block in file order (for writing subsets back unchanged); ``particles_key`` names
    the particle block and ``optics_key`` the optics block (None for RELION 3.0).
    """

    path: Path
    blocks: dict[str, pd.DataFrame]
    particles_key: str
    optics_key: str | None = None
    version: str = "3.0"
    _merged: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def particles(self) -> pd.DataFrame:
        return self.blocks[self.particles_key]

    @property
    def optics(self) -> pd.DataFrame | None:
        return self.blocks[self.optics_key] if self.optics_key is not None else None

    def __len__(self) -> int:
        return len(self.particles)

    def merged(self) -> pd.DataFrame:
        """The particle table with every optics-group column joined in (particle columns take precedence)."""
        if self._merged is None:
            self._merged = merge_optics(self.particles, self.optics, self.path)
        return self._merged


def read_star(path: str | Path) -> StarFile:
    """Read a RELION particle star file (3.0 single block, or 3.1+ with ``data_optics`` + ``data_particles``)."""
    path = existing_file(path)
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile/pandas raise many kinds on malformed text
        raise InputError(f"{path}: not a readable star file ({type(exc).__name__}: {exc})") from exc
    blocks = {k: v for k, v in blocks.items() if isinstance(v, pd.DataFrame)}
    if not blocks:
        raise InputError(f"{path}: no data table found")
    optics_key = "optics" if "optics" in blocks else None
    if "particles" in blocks:
        pkey = "particles"
    else:
        candidates = [k for k in blocks if k != optics_key and "rlnImageName" in blocks[k].columns]
        if not candidates:
            candidates = [k for k in blocks if k != optics_key]
        if not candidates:
            raise InputError(f"{path}: no particle table (only data_optics)")
        pkey = max(candidates, key=lambda k: len(blocks[k]))
    version = "3.1+" if optics_key is not None else "3.0"
    star = StarFile(path, blocks, pkey, optics_key, version)
    if len(star.particles) == 0:
        raise InputError(f"{path}: the particle table is empty")
    log.info("%s: RELION %s star, %d particles%s", path.name, version, len(star),
             f", {len(star.optics)} optics group(s)" if optics_key else "")
    return star


def merge_optics(particles: pd.DataFrame, optics: pd.DataFrame | None, path: Path | str = "star") -> pd.DataFrame:
    """Join optics-group columns into the particle table by ``rlnOpticsGroup`` (particle columns win)."""
    if optics is None:
        return particles
    if "rlnOpticsGroup" not in optics.columns:
        raise InputError(f"{path}: data_optics lacks rlnOpticsGroup")
    extra = [c for c in optics.columns if c not in particles.columns and c != "rlnOpticsGroup"]
    if "rlnOpticsGroup" not in particles.columns:
        if len(optics) != 1:
            raise InputError(f"{path}: data_particles lacks rlnOpticsGroup but there are {len(optics)} optics groups")
        out = particles.copy()
        for c in extra:
            out[c] = optics[c].iloc[0]
        return out
    groups = set(particles["rlnOpticsGroup"].unique()) - set(optics["rlnOpticsGroup"].unique())
    if groups:
        raise InputError(f"{path}: particles name optics group(s) {sorted(groups)} missing from data_optics")
    table = optics.set_index("rlnOpticsGroup")[extra]
    joined = table.loc[particles["rlnOpticsGroup"].to_numpy()].reset_index(drop=True)
    joined.index = particles.index
    return pd.concat([particles, joined], axis=1)


def require_columns(df: pd.DataFrame, columns: tuple[str, ...] | list[str], path: Path | str, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: {what} needs column(s) {', '.join(missing)}, absent from the star file")


def pixel_size(df: pd.DataFrame, path: Path | str) -> np.ndarray | None:
    """Per-particle pixel size (N,) in Å from rlnImagePixelSize, else rlnDetectorPixelSize·1e4/rlnMagnification."""
    if "rlnImagePixelSize" in df.columns:
        return numeric_column(df, "rlnImagePixelSize", path)
    if "rlnDetectorPixelSize" in df.columns and "rlnMagnification" in df.columns:
        return numeric_column(df, "rlnDetectorPixelSize", path) * 1e4 / numeric_column(df, "rlnMagnification", path)
    return None


def image_names(df: pd.DataFrame, path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """``rlnImageName`` -> (0-based index (N,) int64, file names (N,) str).

    A stack reference must carry ``@`` (``index@stack.mrcs``); a name without one is a single-image file (index
    0), never a ``.mrcs`` stack (whose first image it would silently mean)."""
    require_columns(df, ["rlnImageName"], path, "reading images")
    names = df["rlnImageName"].astype(str)
    has_at = names.str.contains("@", regex=False).to_numpy()
    bare_stack = ~has_at & names.str.lower().str.endswith(".mrcs").to_numpy()
    if bare_stack.any():
        rows = np.flatnonzero(bare_stack)
        raise InputError(f"{path}: rlnImageName must be INDEX@STACK for a stack; {len(rows)} row(s) lack the '@', "
                         f"e.g. row {int(rows[0])}: {names.iloc[rows[0]]!r}")
    parts = names.str.split("@", n=1, expand=True)
    if parts.shape[1] == 1:
        return np.zeros(len(df), np.int64), parts[0].to_numpy(str)
    files = np.where(has_at, parts[1].fillna("").to_numpy(str), parts[0].to_numpy(str))
    idx_text = np.where(has_at, parts[0].to_numpy(str), "1")
    try:
        index = idx_text.astype(np.int64) - 1
    except ValueError as exc:
        raise InputError(f"{path}: rlnImageName holds a non-integer image index ({exc})") from exc
    if (index < 0).any():
        raise InputError(f"{path}: rlnImageName holds image index {int(index.min()) + 1} (indices start at 1)")
    return index, files


def poses(df: pd.DataFrame, apix: np.ndarray | None, path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """RELION matrices A (N, 3, 3) and origins in Å (N, 2) from a (merged) particle table.

    ``rlnOriginXAngst/YAngst`` are taken as they are; ``rlnOriginX/Y`` (pixels) are multiplied by the pixel size.
    Missing origins are zero (with a warning).
    """
    require_columns(df, list(ANGLES), path, "the poses")
    angles = torch.as_tensor(np.stack([numeric_column(df, c, path) for c in ANGLES], axis=1))
    rotation = euler_relion_to_matrix(angles).numpy()
    if "rlnOriginXAngst" in df.columns and "rlnOriginYAngst" in df.columns:
        shift = np.stack([numeric_column(df, c, path) for c in ("rlnOriginXAngst", "rlnOriginYAngst")], axis=1)
    elif "rlnOriginX" in df.columns and "rlnOriginY" in df.columns:
        if apix is None:
            raise InputError(f"{path}: rlnOriginX/Y are in pixels but the star file gives no pixel size "
                             "(rlnImagePixelSize or rlnDetectorPixelSize + rlnMagnification)")
        shift = np.stack([numeric_column(df, c, path) for c in ("rlnOriginX", "rlnOriginY")], axis=1) * apix[:, None]
    else:
        log.warning("%s: no rlnOriginXAngst/YAngst or rlnOriginX/Y: shifts set to zero", path)
        shift = np.zeros((len(df), 2))
    return rotation, shift


def ctf(df: pd.DataFrame, path: Path | str) -> dict[str, np.ndarray] | None:
    """CTF parameters (each (N,)) named as in ``ctf.npz``, or None when the star holds no defocus at all."""
    if "rlnDefocusU" not in df.columns:
        log.warning("%s: no rlnDefocusU: the data are treated as having no CTF", path)
        return None
    require_columns(df, list(CTF_COLUMNS), path, "the CTF")
    f = lambda c: numeric_column(df, c, path)  # noqa: E731
    out = {
        "defocus_u_angstrom": f("rlnDefocusU"),
        "defocus_v_angstrom": f("rlnDefocusV"),
        "defocus_angle_deg": f("rlnDefocusAngle"),
        "voltage_kv": f("rlnVoltage"),
        "cs_mm": f("rlnSphericalAberration"),
        "amplitude_contrast": f("rlnAmplitudeContrast"),
        "phase_shift_deg": f("rlnPhaseShift") if "rlnPhaseShift" in df.columns else np.zeros(len(df)),
    }
    if "rlnCtfBfactor" in df.columns:  # Å², envelope exp(-B s²/4) (RELION's CTF::getCTF); absent: no key
        out["bfactor"] = f("rlnCtfBfactor")
    if "rlnCtfScalefactor" in df.columns and not np.all(f("rlnCtfScalefactor") == 1.0):
        out["scale"] = f("rlnCtfScalefactor")  # RELION's CTF::getCTF multiplies the CTF by it
        out.setdefault("bfactor", np.zeros(len(df)))  # optional CTF fields are packed in order
    return out


def write_star(path: str | Path, blocks: dict[str, pd.DataFrame], float_format: str = "%.10g") -> None:
    """Write data blocks (in order) to a star file, atomically."""
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, float_format=float_format)
