"""Atomic writes: a file appears complete under its final name or not at all.

:func:`atomic_path` is the primitive; the writers below serialise JSON, ``.npy``, ``.npz`` and pickles with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error remove it.

    The temporary name keeps the final suffix so that libraries that dispatch on it still work.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files 0600; outputs get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.filename is not None and tmp_path.name in os.fspath(exc.filename):
            raise _naming(exc, path) from None  # the user's file name, not the temporary one
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error (errno, cause) naming ``path``."""
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def write_json_atomic(path: str | Path, obj: dict) -> None:
    """Write ``obj`` as indented JSON with sorted keys (numpy scalars/arrays and paths converted), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def save_npz_atomic(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` (no suffix added), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def save_npy_atomic(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` (no suffix added), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def save_pickle_atomic(path: str | Path, obj: object) -> None:
    """``pickle.dump`` to ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(obj, f)
