"""What ``analyze`` and ``eval-vol`` read: a run folder (model, config, latents of one epoch) and the latent points
or particle indices given on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gaussianem.errors import InputError
from gaussianem.io.checks import check_finite, load_error, load_latents
from gaussianem.io.pickles import load_pickle


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
    n = config.get("n_particles") if isinstance(config, dict) else None
    z = load_latents(zpath, int(n) if isinstance(n, int) else None)  # finite numbers, one row per particle
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
    return check_finite(np.asarray(rows, np.float64), "--z", "the latent values")


def read_z_file(path: str | Path, zdim: int) -> np.ndarray:
    """``--z-file``: .npy or text (one point per line) -> (T, zdim)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--z-file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, delimiter=None, ndmin=2,
                                                                                       comments="#")
        z = np.atleast_2d(np.asarray(z, np.float64))
    except (ValueError, TypeError, EOFError, OSError) as exc:
        raise InputError(f"{path}: not a numeric table ({load_error(exc)})") from None
    check_finite(z, path, "the latent values")
    if z.shape[1] != zdim:
        if z.size % zdim == 0 and z.shape[0] == 1:
            z = z.reshape(-1, zdim)
        else:
            raise InputError(f"{path}: expected rows of {zdim} values (zdim), got shape {z.shape}")
    return z


def parse_indices(text: str, n: int) -> np.ndarray:
    """``--particles``: a comma/space list of indices (any length) or a file (.npy, .pkl as cryoDRGN writes, or
    text)."""
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # a long list of indices is no file name (ENAMETOOLONG)
        is_file = False
    if is_file:
        if path.suffix == ".npy":
            try:
                idx = np.load(path, allow_pickle=False)
            except Exception as exc:
                raise InputError(f"{path}: not a numeric .npy array ({load_error(exc)})") from None
        elif path.suffix == ".pkl":
            idx = load_pickle(path, "index")  # restricted: numpy arrays and plain containers only
        else:
            idx = path.read_text().replace(",", " ").split()
    else:
        if any(c in text for c in "/\\") or text.endswith((".npy", ".pkl", ".txt")):
            raise InputError(f"--particles: index file not found: {text}")
        idx = text.replace(",", " ").split()
    try:
        arr = np.asarray([int(v) for v in np.ravel(idx)], np.int64)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"--particles: indices must be integers ({exc})") from exc
    if arr.size == 0:
        raise InputError("--particles: no indices given")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise InputError(f"--particles: index {int(bad[0])} outside 0..{n - 1}")
    return arr

