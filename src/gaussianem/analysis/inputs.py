"""What ``analyze`` and ``eval-vol`` read: a run folder (model, config, latents of one epoch) and the latent points
or particle indices given on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gaussianem.errors import InputError


def _load_model(rundir: Path, epoch: int | None, device: Any):
    """The trained model of a run folder: the one place analysis names the model loader (imported lazily so that
    the rest of analysis works against any model-like object)."""
    from gaussianem.model.load import load_model

    return load_model(rundir, epoch=epoch, device=device)


def load_run(rundir: str | Path, epoch: int | None = None, device: Any = "cpu") -> tuple[Any, dict, int, np.ndarray]:
    """A run folder -> (model, config, epoch, z (N, zdim)) with z from ``z.E.npy``."""
    rundir = Path(rundir)
    if not rundir.is_dir():
        raise InputError(f"run folder not found: {rundir}")
    if epoch is not None and epoch < 1:
        raise InputError(f"--epoch is 1-based, got {epoch}")
    model, config, epoch = _load_model(rundir, epoch, device)
    zpath = rundir / f"z.{epoch}.npy"
    if not zpath.is_file():
        raise InputError(f"{rundir}: epoch {epoch} has no latents ({zpath.name} missing)")
    z = np.load(zpath)
    if z.ndim != 2 or len(z) == 0:
        raise InputError(f"{zpath}: expected an (N, zdim) array, got shape {z.shape}")
    if hasattr(model, "eval"):
        model.eval()
    return model, config, int(epoch), z



def parse_z_values(text: str, zdim: int) -> np.ndarray:
    """``--z``: numbers separated by commas/spaces, points by ';' (or a flat list of k·zdim numbers) -> (T, zdim)."""
    points = [p for p in text.replace("\n", ";").split(";") if p.strip()]
    rows = []
    for p in points:
        try:
            vals = [float(v) for v in p.replace(",", " ").split()]
        except ValueError as exc:
            raise InputError(f"--z: not a number in {p.strip()!r} ({exc})") from exc
        if len(vals) % zdim or not vals:
            raise InputError(f"--z: a point needs {zdim} values (zdim {zdim}), got {len(vals)} in {p.strip()!r}")
        rows += [vals[i:i + zdim] for i in range(0, len(vals), zdim)]
    if not rows:
        raise InputError("--z: no values given")
    return np.asarray(rows, np.float64)


def read_z_file(path: str | Path, zdim: int) -> np.ndarray:
    """``--z-file``: .npy or text (one point per line) -> (T, zdim)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--z-file not found: {path}")
    try:
        z = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter=None, ndmin=2, comments="#")
    except ValueError as exc:
        raise InputError(f"{path}: not a numeric table ({exc})") from exc
    z = np.atleast_2d(np.asarray(z, np.float64))
    if z.shape[1] != zdim:
        if z.size % zdim == 0 and z.shape[0] == 1:
            z = z.reshape(-1, zdim)
        else:
            raise InputError(f"{path}: expected rows of {zdim} values (zdim), got shape {z.shape}")
    return z


def parse_indices(text: str, n: int) -> np.ndarray:
    """``--particles``: a comma/space list of indices or a file (.npy, .pkl as cryoDRGN writes, or text)."""
    path = Path(text)
    if path.is_file():
        if path.suffix == ".npy":
            idx = np.load(path)
        elif path.suffix == ".pkl":
            import pickle

            with open(path, "rb") as f:
                idx = pickle.load(f)  # noqa: S301 - the user's own index file (cryoDRGN's format)
        else:
            idx = path.read_text().replace(",", " ").split()
    else:
        if any(c in text for c in "/\\") or text.endswith((".npy", ".pkl", ".txt")):
            raise InputError(f"--particles: index file not found: {text}")
        idx = text.replace(",", " ").split()
    try:
        arr = np.asarray([int(v) for v in np.ravel(idx)], np.int64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"--particles: indices must be integers ({exc})") from exc
    if arr.size == 0:
        raise InputError("--particles: no indices given")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise InputError(f"--particles: index {int(bad[0])} outside 0..{n - 1}")
    return arr

