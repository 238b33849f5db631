"""MRC volumes and image stacks (mrcfile), with clear errors for damaged files.

Image stacks are written in chunks: :func:`new_stack` creates the file (data left sparse), chunks go in through
its memory map or by positioned writes (:func:`write_stack_rows`), :class:`ImageStats` gathers the pixel
statistics on the way and :func:`set_stack_stats` puts them in the header.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from gaussianem.errors import InputError
from gaussianem.io.files import existing_file
from gaussianem.io.writes import atomic_path

log = logging.getLogger(__name__)


def _open(path: Path, mmap: bool):
    existing_file(path)
    return open_mrc(path, mmap=mmap)


def open_mrc(path: str | Path, mmap: bool = False, header_only: bool = False):
    """Open an MRC file for reading. A file whose only fault is a missing ``MAP `` id string (older software,
    cryoDRGN's test stacks) is read permissively, with a warning; any other damage is one InputError line."""
    path = Path(path)
    opener = mrcfile.mmap if mmap else mrcfile.open
    kw = {"header_only": True} if header_only else {}
    try:
        return opener(path, mode="r", permissive=False, **kw)
    except Exception as exc:  # mrcfile raises ValueError/OSError with varied text on damaged headers
        if "map id string" not in str(exc).lower():
            raise InputError(f"{path}: not a readable MRC file ({exc})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = opener(path, mode="r", permissive=True, **kw)
    except Exception as exc:
        raise InputError(f"{path}: not a readable MRC file ({exc})") from None
    if m.header is None or (not header_only and m.data is None):
        m.close()
        raise InputError(f"{path}: not a readable MRC file (no MAP id string and no readable header or data)")
    log.warning("%s: the MRC header lacks the 'MAP ' id string (older software): read it anyway", path)
    return m


def header_origin_angstrom(header, voxel: float, path: str | Path = "map") -> tuple[float, float, float]:
    """Where a map's voxel 0 sits in the user's (ChimeraX/PDB) frame: (x, y, z) Å, read as ChimeraX reads MRC files.

    The MRC2014 ``ORIGIN`` (x, y, z, already Å) when it is non-zero, finite and not so large that one voxel step
    is lost to float32 rounding (RELION 2.0 left it uninitialised); otherwise the start indices ``NXSTART,
    NYSTART, NZSTART`` (given along the file's column, row, section axes, mapped to x, y, z by ``MAPC, MAPR,
    MAPS``) times ``voxel`` (Å); (0, 0, 0) when those look uninitialised too (larger than 10 × the box).
    """
    h = header
    origin = np.array([h.origin.x, h.origin.y, h.origin.z], np.float32)
    crs_start = [int(h.nxstart), int(h.nystart), int(h.nzstart)]
    crs_size = [int(h.nx), int(h.ny), int(h.nz)]
    cell = [int(h.mx), int(h.my), int(h.mz)]
    axes = _axes(h)
    step = np.float32(voxel)
    usable = np.isfinite(origin).all() and not (origin + step == origin).any()
    if origin.any() and usable:
        return tuple(float(o) for o in origin)  # type: ignore[return-value]
    xyz_start = [0, 0, 0]
    for crs, axis in enumerate(axes):
        xyz_start[axis - 1] = crs_start[crs]
    if max(abs(s) for s in xyz_start) > 10 * max(cell + crs_size):
        log.warning("%s: the MRC origin and start indices look uninitialised: taking the origin as (0, 0, 0)", path)
        return (0.0, 0.0, 0.0)
    return tuple(float(s * voxel) for s in xyz_start)  # type: ignore[return-value]


def map_origin_angstrom(path: str | Path, voxel: float) -> tuple[float, float, float]:
    """Where a map's voxel 0 sits in the user's (ChimeraX/PDB) frame, (x, y, z) Å, from its header alone, with
    ``voxel`` (Å) given by the caller (the header's may be unset): see :func:`header_origin_angstrom`."""
    try:
        with mrcfile.open(path, mode="r", header_only=True, permissive=True) as m:
            return header_origin_angstrom(m.header, voxel, path)
    except InputError:
        raise
    except Exception as exc:  # mrcfile raises ValueError/OSError with varied text on damaged headers
        raise InputError(f"{path}: not a readable MRC file ({exc})") from exc


def _axes(header) -> list[int]:
    """MAPC, MAPR, MAPS (the x/y/z axis of the file's columns, rows, sections); (1, 2, 3) when invalid."""
    axes = [int(header.mapc), int(header.mapr), int(header.maps)]
    return axes if sorted(axes) == [1, 2, 3] else [1, 2, 3]


def read_volume(path: str | Path) -> tuple[np.ndarray, float, tuple[float, float, float]]:
    """Read a map -> (volume (D, D, D) float32 ``[z, y, x]``, voxel size Å, origin (x, y, z) Å of voxel 0).

    Maps stored with permuted axes (MAPC/MAPR/MAPS other than 1/2/3) are transposed to ``[z, y, x]``; the origin
    follows :func:`header_origin_angstrom` (ORIGIN, else the start indices).
    """
    path = Path(path)
    with _open(path, mmap=False) as m:
        data = np.asarray(m.data, dtype=np.float32).copy()
        voxel = float(m.voxel_size.x)
        axes = _axes(m.header)
        origin = header_origin_angstrom(m.header, voxel, path)
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D map, got shape {data.shape}")
    if axes != [1, 2, 3]:  # the array's dimensions are (sections, rows, columns) = axes (maps, mapr, mapc)
        labels = [axes[2], axes[1], axes[0]]
        data = np.ascontiguousarray(np.transpose(data, [labels.index(a) for a in (3, 2, 1)]))
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


def new_stack(path: str | Path, n: int, box: int, pixel_size_angstrom: float):
    """Create an (n, box, box) float32 MRC image stack with the pixel size in the header, its data left sparse.

    Returns the open, memory-mapped mrcfile object (use it as a context manager); the data start at byte
    :func:`stack_data_offset` for positioned writes.
    """
    mrc = mrcfile.new_mmap(path, shape=(n, box, box), mrc_mode=2, overwrite=True)
    mrc.set_image_stack()
    mrc.voxel_size = pixel_size_angstrom
    return mrc


def stack_data_offset(mrc) -> int:
    """Byte offset of the first image in an open mrcfile object (header + extended header)."""
    return int(mrc.header.nbytes) + int(mrc.header.nsymbt)


def create_stack(path: str | Path, n: int, box: int, pixel_size_angstrom: float) -> int:
    """:func:`new_stack`, closed at once -> byte offset of the data (for :func:`write_stack_rows`)."""
    with new_stack(path, n, box, pixel_size_angstrom) as mrc:
        return stack_data_offset(mrc)


def write_stack_rows(f, offset: int, start: int, images: np.ndarray) -> None:
    """Write images (B, D, D) as little-endian float32 at image ``start`` of a stack open as binary file ``f``."""
    d = images.shape[-1]
    f.seek(offset + start * d * d * 4)
    f.write(np.ascontiguousarray(images, dtype="<f4").tobytes())


class ImageStats:
    """Pixel statistics gathered over chunks of images: min, max, mean and (population) std, float64 sums."""

    def __init__(self) -> None:
        self.total = 0.0
        self.total_sq = 0.0
        self.count = 0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, images: np.ndarray) -> None:
        x = np.asarray(images, np.float64)
        if x.size:
            self.total += float(x.sum())
            self.total_sq += float((x * x).sum())
            self.count += x.size
            self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))

    def result(self) -> dict[str, float]:
        """{"mean", "std", "min", "max"}; all 0 when nothing was added."""
        mean = self.total / max(self.count, 1)
        std = math.sqrt(max(self.total_sq / max(self.count, 1) - mean * mean, 0.0))
        return {"mean": mean, "std": std, "min": self.lo if self.count else 0.0, "max": self.hi if self.count else 0.0}


def set_stack_stats(header, stats: dict[str, float]) -> None:
    """Put :meth:`ImageStats.result` into an MRC header (DMIN, DMAX, DMEAN, RMS)."""
    header.dmin, header.dmax = stats["min"], stats["max"]
    header.dmean, header.rms = stats["mean"], stats["std"]


def write_stack_stats(path: str | Path, stats: dict[str, float]) -> None:
    """:func:`set_stack_stats` on a stack on disk (only the header is touched; the data pages stay unmapped)."""
    with mrcfile.mmap(path, mode="r+") as mrc:
        set_stack_stats(mrc.header, stats)
