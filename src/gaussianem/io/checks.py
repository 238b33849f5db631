"""Validation at the door: values that a reader accepts only when they are finite and physical.

Each check raises :class:`~gaussianem.errors.InputError` with one line naming the source, the field, a bad row
and the rule, so that bad metadata stops before any work (not hours later as a non-finite loss).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaussianem.errors import InputError

# field -> (what, rule text, test of the good values); CTF fields as in ctf.npz / physics.ctf.CTFParams
CTF_RULES = {
    "defocus_u_angstrom": ("defocus U", "finite", np.isfinite),
    "defocus_v_angstrom": ("defocus V", "finite", np.isfinite),
    "defocus_angle_deg": ("defocus angle", "finite", np.isfinite),
    "voltage_kv": ("voltage", "finite and > 0 kV", lambda v: np.isfinite(v) & (v > 0)),
    "cs_mm": ("spherical aberration", "finite and >= 0 mm", lambda v: np.isfinite(v) & (v >= 0)),
    "amplitude_contrast": ("amplitude contrast", "in [0, 1)", lambda v: np.isfinite(v) & (v >= 0) & (v < 1)),
    "phase_shift_deg": ("phase shift", "finite", np.isfinite),
    "bfactor": ("CTF B-factor", "finite", np.isfinite),
    "scale": ("CTF scale factor", "finite", np.isfinite),
}


def check_ctf(ctf: dict[str, np.ndarray] | None, source: str | Path) -> None:
    """CTF values finite and physical: voltage > 0, Cs >= 0, 0 <= amplitude contrast < 1, finite defocus."""
    if ctf is None:
        return
    for key, (what, rule, good) in CTF_RULES.items():
        if key not in ctf:
            continue
        values = np.asarray(ctf[key], np.float64)
        ok = good(values)
        if not np.all(ok):
            rows = np.flatnonzero(~ok)
            raise InputError(f"{source}: invalid CTF: {what} must be {rule}, but {len(rows)} particle(s) have "
                             f"e.g. {values[rows[0]]:g} (row {int(rows[0])})")


def check_finite(values: np.ndarray, source: str | Path, what: str) -> np.ndarray:
    """A numeric array with only finite values (else one line naming the first bad row)."""
    arr = np.asarray(values)
    if arr.dtype.hasobject or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(f"{source}: {what} must be numbers, got {arr.dtype} values")
    ok = np.isfinite(arr)
    if not ok.all():
        row = int(np.argwhere(~ok)[0][0]) if arr.ndim else 0
        raise InputError(f"{source}: {what} hold {int((~ok).sum())} non-finite value(s) (e.g. row {row})")
    return arr


def check_rows(n_rows: int, n_particles: int, source: str | Path, what: str) -> None:
    """One row per particle."""
    if int(n_rows) != int(n_particles):
        raise InputError(f"{source}: {n_rows} rows of {what} for {n_particles} particles (one row per particle)")


def numeric_column(df, column: str, source: str | Path) -> np.ndarray:
    """A star/table column as float64, with one line naming the column and a value that is not a number."""
    try:
        return df[column].to_numpy(np.float64)
    except (TypeError, ValueError):
        values = df[column].astype(str).to_numpy()
        bad = [v for v in values if not _is_number(v)]
        raise InputError(f"{source}: column {column} holds text where numbers are expected "
                         f"(e.g. {bad[0] if bad else values[0]!r})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_error(exc: BaseException) -> str:
    """The cause of a failed ``np.load``, in one line; numpy's advice to load pickled data "unsafely" is replaced
    by what happened (GaussianEM never loads pickles from ``.npy``/``.npz``/``.cs`` files)."""
    text = " ".join(str(exc).split())
    if "allow_pickle" in text or "pickled" in text:
        return "it holds pickled Python objects or is not a numpy file; such data are not loaded"
    return f"{type(exc).__name__}: {text}"


def load_latents(path: str | Path, n_particles: int | None = None, what: str = "latents") -> np.ndarray:
    """An (N, zdim) array of finite numbers from a ``.npy`` (no pickles), with one row per particle when
    ``n_particles`` is known."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except Exception as exc:  # garbage, a truncated file, an object array (needs pickles): one line
        raise InputError(f"{path}: not a numeric .npy array ({load_error(exc)})") from None
    if not isinstance(z, np.ndarray) or z.ndim != 2 or len(z) == 0:
        raise InputError(f"{path}: expected an (N, zdim) array, got shape {getattr(z, 'shape', None)}")
    check_finite(z, path, what)
    if n_particles is not None:
        check_rows(len(z), n_particles, path, what)
    return np.asarray(z)
