"""Particle images named ``idx@path`` across many stacks: path resolution, validation, memory-bounded reads.

Images are read with plain positioned file reads (header parsed by ``mrcfile``), never through a memory map: a map
of a 12 GB stack would count every page touched in the process's resident set. Only the rows asked for are in
memory at any time.

Path resolution for a name ``p`` in a star/cs file (first hit wins): an absolute ``p``; with ``--datadir D``:
``D/p`` then ``D/basename(p)``; otherwise ``F/p`` for ``F`` the source file's folder and up to three of its parents
(RELION and cryoSPARC names are relative to the project directory, which is usually two levels above
``Refine3D/job012/run_data.star``), then ``F/basename(p)``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import mrcfile.utils
import numpy as np

from gaussianem.errors import InputError
from gaussianem.io.files import existing_file
from gaussianem.io.mrc import open_mrc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackInfo:
    """Layout of one MRC stack on disk: ``n`` images of ``ny × nx`` of ``dtype`` starting at byte ``offset``."""

    path: Path
    n: int
    ny: int
    nx: int
    dtype: np.dtype
    offset: int
    voxel_size: float

    @property
    def image_bytes(self) -> int:
        return self.ny * self.nx * self.dtype.itemsize


def stack_info(path: str | Path) -> StackInfo:
    """Parse and check an MRC stack header (clear InputError for a missing, damaged or truncated file)."""
    path = existing_file(path)
    try:
        with open_mrc(path, header_only=True) as m:
            h = m.header
            dtype = mrcfile.utils.data_dtype_from_header(h)
            nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
            offset = int(h.nbytes) + int(h.nsymbt)
            voxel = float(m.voxel_size.x)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable MRC file ({exc})") from exc
    if min(nx, ny, nz) <= 0:
        raise InputError(f"{path}: MRC header gives a non-positive size ({nx}, {ny}, {nz})")
    info = StackInfo(path, nz, ny, nx, np.dtype(dtype), offset, voxel)
    need = offset + nz * info.image_bytes
    size = path.stat().st_size
    if size < need:
        raise InputError(f"{path}: truncated MRC file ({size} bytes, the header needs {need})")
    return info


def resolve_path(name: str, source: Path, datadir: Path | None) -> Path | None:
    """Find the file a star/cs names (see the module docstring); None when nothing exists."""
    p = Path(name)
    if p.is_absolute():
        return p if p.is_file() else None
    if datadir is not None:
        candidates = [datadir / p, datadir / p.name]
    else:
        folder = source.resolve().parent
        candidates = [folder / p] + [parent / p for parent in list(folder.parents)[:3]] + [folder / p.name]
    for c in candidates:
        if c.is_file():
            return c
    return None


class ParticleImages:
    """Random access to the images of N particles spread over many stacks.

    ``file_id`` (N,) indexes ``files``; ``index`` (N,) is the 0-based image in that stack.
    """

    def __init__(self, files: list[Path], file_id: np.ndarray, index: np.ndarray, source: Path | str = "input"):
        self.files = [Path(f) for f in files]
        self.file_id = np.asarray(file_id, np.int64)
        self.index = np.asarray(index, np.int64)
        self.source = source
        self.infos = [stack_info(f) for f in self.files]
        self._handles: OrderedDict[int, object] = OrderedDict()
        self._validate()

    @classmethod
    def from_names(cls, names: np.ndarray, index: np.ndarray, source: Path, datadir: Path | None) -> ParticleImages:
        """Resolve stack names (N,) as written in ``source`` (star/cs) and open them."""
        uniq, inverse = np.unique(np.asarray(names, dtype=str), return_inverse=True)
        files, missing = [], []
        for u in uniq:
            f = resolve_path(str(u), source, datadir)
            if f is None:
                missing.append(str(u))
            files.append(f)
        if missing:
            hint = "" if datadir is not None else " (give --datadir)"
            where = f" under {datadir}" if datadir is not None else ""
            raise InputError(f"{source}: {len(missing)} of {len(uniq)} particle stacks it names are missing{where}, "
                             f"e.g. {missing[0]}{hint}")
        log.info("%s: %d particles in %d stack(s)", Path(source).name, len(index), len(files))
        return cls(files, inverse, index, source)

    @classmethod
    def from_stacks(cls, files: list[Path]) -> ParticleImages:
        """All images of the given stacks, in order (a ``.mrcs`` or a cryoDRGN ``.txt`` list)."""
        infos = [stack_info(f) for f in files]
        file_id = np.concatenate([np.full(i.n, k) for k, i in enumerate(infos)])
        index = np.concatenate([np.arange(i.n) for i in infos])
        return cls(files, file_id, index, files[0] if len(files) == 1 else "stack list")

    def _validate(self) -> None:
        if len(self.index) == 0:
            raise InputError(f"{self.source}: no particles")
        counts = np.array([i.n for i in self.infos])
        bad = self.index >= counts[self.file_id]
        if bad.any():
            r = int(np.nonzero(bad)[0][0])
            info = self.infos[self.file_id[r]]
            raise InputError(f"{self.source}: image index out of range for {int(bad.sum())} particle(s), e.g. row "
                             f"{r} names image {int(self.index[r]) + 1} of {info.path}, which holds {info.n}")
        for info in self.infos:
            if info.nx != info.ny:
                raise InputError(f"{info.path}: images are {info.ny}×{info.nx}; only square images are supported")

    def __len__(self) -> int:
        return len(self.index)

    @property
    def box_sizes(self) -> np.ndarray:
        """(N,) image edge of every particle in pixels."""
        return np.array([i.nx for i in self.infos])[self.file_id]

    @property
    def header_pixel_sizes(self) -> np.ndarray:
        """(N,) voxel size in the stacks' headers (0 where unset)."""
        return np.array([i.voxel_size for i in self.infos])[self.file_id]

    def _handle(self, k: int):
        f = self._handles.pop(k, None)
        if f is None:
            f = open(self.files[k], "rb")
            if len(self._handles) >= 64:
                _, old = self._handles.popitem(last=False)
                old.close()
        self._handles[k] = f
        return f

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Images of the particles ``rows`` (B,), all of one box size -> (B, D, D) float32."""
        rows = np.asarray(rows, np.int64)
        boxes = np.unique(self.box_sizes[rows]) if len(rows) else np.array([0])
        if len(boxes) != 1:
            raise ValueError(f"read(): rows span several box sizes {boxes.tolist()}")
        d = int(boxes[0])
        out = np.empty((len(rows), d, d), np.float32)
        fid, idx = self.file_id[rows], self.index[rows]
        order = np.lexsort((idx, fid))
        start = 0
        while start < len(order):
            k, i0 = fid[order[start]], idx[order[start]]
            stop = start + 1
            while stop < len(order) and fid[order[stop]] == k and idx[order[stop]] == idx[order[stop - 1]] + 1:
                stop += 1
            info = self.infos[k]
            f = self._handle(int(k))
            f.seek(info.offset + int(i0) * info.image_bytes)
            count = stop - start
            block = np.fromfile(f, dtype=info.dtype, count=count * d * d)
            if block.size != count * d * d:
                raise InputError(f"{info.path}: could not read images {int(i0) + 1}..{int(i0) + count} "
                                 "(file truncated?)")
            out[order[start:stop]] = block.reshape(count, d, d)
            start = stop
        return out

    def close(self) -> None:
        for f in self._handles.values():
            f.close()
        self._handles.clear()
