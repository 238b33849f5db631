"""Gaussian clouds as binary PLY files: one vertex per Gaussian with x, y, z (Å, map frame, origin at the box
centre), sigma (Å) and amplitude; the width bounds of a :class:`gaussianem.gaussians.GaussianCloud` travel in a
``width_bounds_angstrom`` comment.

``plyfile`` is imported by the functions that use it, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaussianem.io.writes import atomic_path


def write_gaussians_ply(
    path: str | Path, positions: np.ndarray, widths: np.ndarray, amplitudes: np.ndarray,
    width_min: float | None = None, width_max: float | None = None,
) -> None:
    """Gaussians to a binary little-endian PLY (one vertex per Gaussian), atomically."""
    from plyfile import PlyData, PlyElement

    n = positions.shape[0]
    arr = np.empty(n, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("sigma", "f4"), ("amplitude", "f4")])
    arr["x"], arr["y"], arr["z"] = positions[:, 0], positions[:, 1], positions[:, 2]
    arr["sigma"], arr["amplitude"] = widths, amplitudes
    comments = ["GaussianEM Gaussian cloud; units: angstrom, map frame, origin at box centre"]
    if width_min is not None and width_max is not None:
        comments.append(f"width_bounds_angstrom {width_min!r} {width_max!r}")
    data = PlyData([PlyElement.describe(arr, "vertex")], text=False, byte_order="<", comments=comments)
    with atomic_path(path) as tmp:
        data.write(str(tmp))


def read_gaussians_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float] | None]:
    """Read a PLY written by :func:`write_gaussians_ply` -> positions (G, 3), widths (G,), amplitudes (G,), bounds."""
    from plyfile import PlyData

    from gaussianem.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Gaussian PLY not found: {path}")
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"].data
    except Exception as exc:  # plyfile raises its own parse errors, KeyError, ValueError, ... on a damaged file
        raise InputError(f"{path}: not a readable Gaussian PLY ({type(exc).__name__}: {exc})") from None
    names = v.dtype.names
    for need in ("x", "y", "z", "sigma", "amplitude"):
        if need not in names:
            raise InputError(f"{path}: PLY vertex lacks property '{need}' (has {', '.join(names)})")
    pos = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
    if not (np.isfinite(pos).all() and np.isfinite(v["sigma"]).all() and np.isfinite(v["amplitude"]).all()):
        raise InputError(f"{path}: the Gaussians hold non-finite values")
    bounds = None
    for c in ply.comments:
        if c.startswith("width_bounds_angstrom"):
            _, lo, hi = c.split()
            bounds = (float(lo), float(hi))
    return pos, np.asarray(v["sigma"], np.float64), np.asarray(v["amplitude"], np.float64), bounds
