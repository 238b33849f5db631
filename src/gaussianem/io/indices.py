"""cryoDRGN-style particle index files (``--ind``): a pickled integer array (``.pkl``), a ``.npy`` or a text file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaussianem.errors import InputError
from gaussianem.io.pickles import load_pickle


def _integers(path: Path, flag: str) -> np.ndarray:
    try:
        if path.suffix == ".pkl":
            arr = load_pickle(path, f"{flag} index")
        elif path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.array(path.read_text().replace(",", " ").split(), dtype=np.float64)
        arr = np.asarray(arr)
    except InputError:
        raise
    except Exception as exc:  # a damaged or foreign file raises anything
        raise InputError(f"{flag} {path}: not a readable index file ({type(exc).__name__}: {exc})") from None
    if arr.ndim != 1 or arr.dtype.hasobject or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{flag} {path}: expected a 1-D array of integers, got {arr.dtype} {arr.shape}")
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values) & (values == np.round(values))):
        raise InputError(f"{flag} {path}: the indices must be integers")
    return arr.astype(np.int64)


def read_ind(path: str | Path, n: int, flag: str = "--ind") -> np.ndarray:
    """The rows ``path`` names among ``n`` particles, in its order: distinct, in [0, n), at least one.

    Raises InputError (one line) for a missing or damaged file, out-of-range or duplicate indices."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{flag} {path}: file not found")
    rows = _integers(path, flag)
    if len(rows) == 0:
        raise InputError(f"{flag} {path}: holds no index")
    bad = (rows < 0) | (rows >= n)
    if bad.any():
        raise InputError(f"{flag} {path}: {int(bad.sum())} index(es) out of range [0, {n}), e.g. {int(rows[bad][0])}")
    unique, counts = np.unique(rows, return_counts=True)
    if len(unique) != len(rows):
        raise InputError(f"{flag} {path}: duplicate indices, e.g. {int(unique[counts > 1][0])}")
    return rows
