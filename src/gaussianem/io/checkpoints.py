"""Checkpoint files that load without running code: tensors, plain containers, numbers and strings only.

:func:`save_state` refuses anything else (so a checkpoint never needs a pickle global to load) and writes
atomically; :func:`load_state` reads with ``torch.load(weights_only=True)``. Checkpoints of older versions, whose
RNG states held numpy arrays, load through the same weights-only unpickler with the numpy array reconstructors
allowed, and nothing else. A truncated, foreign or hostile file ends as one :class:`InputError` line naming it.
RNG states are stored as tensors (:func:`encode_rng`, :func:`decode_rng`).
"""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gaussianem.errors import GaussianEMRuntimeError, InputError

log = logging.getLogger(__name__)


def _numpy_safe_globals() -> list:
    try:
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    found = [multiarray._reconstruct, np.ndarray, np.dtype]
    if hasattr(np, "dtypes"):
        found += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return found


def _allowed_old_globals() -> set[str]:
    out = set()
    for g in _numpy_safe_globals():
        mod = getattr(g, "__module__", "") or ""
        out.add(f"{mod}.{g.__name__}")
        out.add(f"{mod.replace('numpy._core', 'numpy.core')}.{g.__name__}")
    return out


# ------------------------------------------------------------------------------------------------ RNG states
def encode_rng(state: dict) -> dict:
    """RNG states (``torch``, ``numpy``, ``python``, optional ``cuda`` and ``generator``) as tensors and numbers."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key == "numpy":
            kind, keys, pos, has_gauss, cached = value
            out[key] = {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                        "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
        elif key == "python":
            version, internal, gauss_next = value
            out[key] = {"version": int(version), "state": torch.tensor(list(internal), dtype=torch.int64),
                        "gauss_next": gauss_next}
        else:
            out[key] = value
    return out


def decode_rng(state: dict) -> dict:
    """The inverse of :func:`encode_rng` (older checkpoints' numpy and Python tuples pass through unchanged)."""
    out = dict(state)
    np_state = state.get("numpy")
    if isinstance(np_state, dict):
        out["numpy"] = (np_state["kind"], np_state["keys"].numpy().astype(np.uint32), int(np_state["pos"]),
                        int(np_state["has_gauss"]), float(np_state["cached_gaussian"]))
    py_state = state.get("python")
    if isinstance(py_state, dict):
        out["python"] = (int(py_state["version"]), tuple(int(v) for v in py_state["state"].tolist()),
                         py_state["gauss_next"])
    elif isinstance(py_state, list | tuple) and isinstance(py_state[1], list):
        out["python"] = (py_state[0], tuple(py_state[1]), py_state[2])
    return out


def capture_rng(generator: torch.Generator | None = None) -> dict:
    """Every global RNG state (and ``generator``'s), encoded for a checkpoint."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return encode_rng(state)


def restore_rng(state: dict, generator: torch.Generator | None = None) -> None:
    """Set the RNG states saved by :func:`capture_rng` (or by an older checkpoint)."""
    state = decode_rng(state)
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


# ------------------------------------------------------------------------------------------------ files
def check_plain(obj: Any, where: str = "state") -> None:
    """Raise TypeError unless ``obj`` is made of tensors, dicts, lists, tuples, numbers, strings and None."""
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, bool | int | float | str):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            check_plain(k, where)
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, list | tuple) and type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: a {type(obj).__name__} cannot go into a checkpoint (tensors, numbers, strings and "
                    "plain containers only)")


def save_state(path: str | Path, state: dict) -> None:
    """Write ``state`` (checked by :func:`check_plain`) with ``torch.save``, atomically."""
    from gaussianem.io.writes import atomic_path

    check_plain(state)
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:  # torch's C++ writer: a full disk surfaces as "failed writing file"
            raise GaussianEMRuntimeError(f"{path}: cannot write the checkpoint ({str(exc).splitlines()[0]})") \
                from None


def load_state(path: str | Path, map_location: Any = "cpu", what: str = "checkpoint") -> dict:
    """Read a checkpoint written by :func:`save_state` (or an older GaussianEM) without running any code.

    Raises :class:`InputError` naming ``path`` for a missing, truncated, foreign or hostile file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        state = _load_old(path, map_location, what)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    except Exception as exc:
        raise InputError(f"{path}: truncated or not a GaussianEM {what} ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a GaussianEM {what} (holds a {type(state).__name__})")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].split(". ")[0].rstrip(".") if text else ""
    return f"{type(exc).__name__}: {first}".rstrip(": ")


def _load_old(path: Path, map_location: Any, what: str) -> dict:
    """An older checkpoint (numpy RNG state inside): weights-only, with the numpy array reconstructors allowed."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:
        raise InputError(f"{path}: truncated or not a GaussianEM {what} ({_first_line(exc)})") from None
    refused = sorted(set(names) - _allowed_old_globals())
    if refused:
        raise InputError(f"{path}: refused to load: it refers to {', '.join(refused[:3])}"
                         f"{' ...' if len(refused) > 3 else ''}, which a {what} never holds (tensors and numbers "
                         "only); it was not run")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise InputError(f"{path}: refused to load ({_first_line(exc)})") from None
    log.info("%s: an older checkpoint format (numpy RNG state), read safely", path)
    return state
