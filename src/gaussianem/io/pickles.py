"""Pickle files from other tools (cryoDRGN's pose, CTF, index, label and latent ``.pkl``), read without running code.

:func:`load_pickle` goes through :class:`RestrictedUnpickler`, which resolves only the few globals that numpy
arrays, numpy scalars and plain containers need (the array reconstructors, ``numpy.ndarray``, ``numpy.dtype``,
``set``/``frozenset``/``complex`` and the byte-string helper of protocol 2). Any other global — ``os.system``,
``builtins.exec``, a class of some package — stops the read with an :class:`~gaussianem.errors.InputError` before
it is called, so a payload hidden in a data file never runs. Arrays of Python objects are refused too: every
cryoDRGN file holds numbers. :func:`dump_pickle` writes such files (checked, atomically).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gaussianem.errors import InputError

_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric")


def _numpy_global(name: str) -> Any:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    return {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar,
            "_frombuffer": getattr(numeric, "_frombuffer", None)}.get(name)


def _encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for byte strings (text in, bytes out)."""
    if not isinstance(text, str) or not isinstance(encoding, str):
        raise pickle.UnpicklingError("_codecs.encode with non-text arguments")
    return text.encode(encoding)


_BUILTINS = {"set": set, "frozenset": frozenset, "complex": complex, "bytearray": bytearray, "list": list,
             "tuple": tuple, "dict": dict, "slice": slice}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits numpy arrays, numpy scalars and plain containers, numbers and strings only."""

    def find_class(self, module: str, name: str) -> Any:
        found = None
        if module in _NUMPY_CORE and name in ("_reconstruct", "scalar", "_frombuffer"):
            found = _numpy_global(name)
        elif module == "numpy" and name in ("ndarray", "dtype"):
            found = getattr(np, name)
        elif module == "numpy.dtypes" and name.endswith("DType") and hasattr(np, "dtypes"):
            cls = getattr(np.dtypes, name, None)
            found = cls if isinstance(cls, type) and issubclass(cls, np.dtype) else None
        elif module in ("builtins", "__builtin__"):
            found = _BUILTINS.get(name)
        elif module == "_codecs" and name == "encode":
            found = _encode
        if found is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays and plain "
                                         "containers are read from a pickle")
        return found


def _check_plain(obj: Any, path: Path, depth: int = 0) -> None:
    if depth > 20:
        raise InputError(f"{path}: nested too deeply to be a data file")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise InputError(f"{path}: holds an array of Python objects, not numbers")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, path, depth + 1)
            _check_plain(v, path, depth + 1)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            _check_plain(v, path, depth + 1)
    elif not (obj is None or isinstance(obj, bool | int | float | complex | str | bytes | bytearray | np.generic)):
        raise InputError(f"{path}: holds a {type(obj).__name__}, not numbers")


def load_pickle(path: str | Path, what: str = "pickle") -> Any:
    """The first object of the pickle file ``path``, through :class:`RestrictedUnpickler`.

    Raises :class:`InputError` (one line naming the file and the cause) for a missing, truncated or foreign file
    and for one that names anything beyond numpy arrays and plain containers."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file not found: {path}")
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f).load()
    except pickle.UnpicklingError as exc:
        raise InputError(f"{path}: {what} file not loaded: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # truncated or garbage bytes raise anything: EOFError, ValueError, KeyError, ...
        raise InputError(f"{path}: not a readable {what} file ({type(exc).__name__}: {exc})") from None
    _check_plain(obj, path)
    return obj


def dump_pickle(path: str | Path, obj: Any) -> None:
    """Write ``obj`` (numpy arrays and plain containers only) as a pickle, atomically."""
    from gaussianem.io.writes import save_pickle_atomic

    _check_plain(obj, Path(path))
    save_pickle_atomic(path, obj)
