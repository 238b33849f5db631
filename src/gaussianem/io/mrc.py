"""MRC volumes and image stacks (mrcfile), with clear errors for damaged files."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np

from gaussianem.io.atomic import atomic_path


class InputError(ValueError):
    """Bad user input: the CLI reports it in one line and exits with code 2."""


def _open(path: Path, mmap: bool):
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        return (mrcfile.mmap if mmap else mrcfile.open)(path, mode="r", permissive=False)
    except Exception as exc:  # mrcfile raises ValueError/OSError with varied text on damaged headers
        raise InputError(f"{path}: not a readable MRC file ({exc})") from exc


def read_volume(path: str | Path) -> tuple[np.ndarray, float, tuple[float, float, float]]:
    """Read a map -> (volume (D, D, D) float32 ``[z, y, x]``, voxel size Å, origin (x, y, z) Å)."""
    path = Path(path)
    with _open(path, mmap=False) as m:
        data = np.asarray(m.data, dtype=np.float32).copy()
        voxel = float(m.voxel_size.x)
        origin = (float(m.header.origin.x), float(m.header.origin.y), float(m.header.origin.z))
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D map, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise InputError(f"{path}: the map holds {int((~np.isfinite(data)).sum())} non-finite voxels")
    return data, voxel, origin


def write_volume(
    path: str | Path, volume: np.ndarray, voxel_size_angstrom: float,
    origin_angstrom: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> None:
    """Write a float32 map ``[z, y, x]`` with voxel size and origin in the header, atomically."""
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as m:
            m.set_data(np.ascontiguousarray(volume, dtype=np.float32))
            m.voxel_size = voxel_size_angstrom
            m.header.origin.x, m.header.origin.y, m.header.origin.z = origin_angstrom
            m.update_header_stats()


def open_stack(path: str | Path):
    """Memory-map an image stack; returns the open mrcfile object (use as a context manager).

    ``obj.data`` is (N, D, D), or (D, D) for a single image; :func:`gaussianem.io.particles.stack_info` reads
    and checks a stack's header alone.
    """
    return _open(Path(path), mmap=True)
