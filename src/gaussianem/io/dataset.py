"""The dataset folder written by ``preprocess`` (a contract: other commands and users read it).

Layout::

    dataset.json          manifest: n_particles, box_size, pixel_size_angstrom, original_box_size,
                          original_pixel_size_angstrom, contrast ("inverted" | "as-is"), image_std, source_path,
                          source_kind, pose_check, map (the consensus map's record), map_origin_angstrom
                          (x, y, z Å of the map's voxel 0), map_box, map_apix, working_origin_angstrom (MRC origin
                          of the working grid on the map's frame), ...
    particles.mrcs        (N, D, D) float32, Fourier-cropped, contrast already made white (positive CTF)
    poses.npz             rotation (N, 3, 3) RELION matrices A; shift_angstrom (N, 2) RELION origins in Å
    ctf.npz               defocus_u_angstrom, defocus_v_angstrom, defocus_angle_deg, voltage_kv, cs_mm,
                          amplitude_contrast, phase_shift_deg: each (N,)   (absent for data without CTF);
                          optionally bfactor (N,) Å², the CTF envelope exp(-B s²/4) (only when the input had one:
                          RELION rlnCtfBfactor, cryoSPARC ctf/bfactor), and scale (N,), a factor on the CTF
                          (RELION rlnCtfScalefactor, kept only when some value differs from 1; bfactor is then
                          written too, 0 where the input had none)
    source_index.npy      (N,) row of every particle in the input file, for ``select``
    gaussians_init.ply    the initial Gaussian cloud
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gaussianem.errors import InputError
from gaussianem.io.checks import check_ctf, load_error
from gaussianem.io.mrc import open_stack
from gaussianem.io.writes import save_npz_atomic
from gaussianem.physics.ctf import CTF_FIELDS, OPTIONAL_CTF_FIELDS, CTFParams

MANIFEST = "dataset.json"
PARTICLES = "particles.mrcs"
POSES = "poses.npz"
CTF = "ctf.npz"
SOURCE_INDEX = "source_index.npy"
GAUSSIANS_INIT = "gaussians_init.ply"


def write_poses(root: Path, rotation: np.ndarray, shift_angstrom: np.ndarray) -> None:
    save_npz_atomic(root / POSES, rotation=np.asarray(rotation, np.float64),
                    shift_angstrom=np.asarray(shift_angstrom, np.float64))


def write_ctf(root: Path, ctf: dict[str, np.ndarray]) -> None:
    """Write ``ctf.npz``: every field of :data:`CTF_FIELDS` (required) and those of :data:`OPTIONAL_CTF_FIELDS`
    present in ``ctf``, each (N,) float64; other keys are ignored."""
    missing = [k for k in CTF_FIELDS if k not in ctf]
    if missing:
        raise ValueError(f"CTF parameters lack {missing}")
    names = CTF_FIELDS + tuple(k for k in OPTIONAL_CTF_FIELDS if k in ctf)
    save_npz_atomic(root / CTF, **{k: np.asarray(ctf[k], np.float64) for k in names})


@dataclass
class ParticleDataset:
    """A preprocessed dataset: memory-mapped images plus poses and CTF, all indexable by particle."""

    root: Path
    manifest: dict
    images: np.ndarray  # (N, D, D) float32, memory-mapped
    rotations: np.ndarray  # (N, 3, 3)
    shifts_angstrom: np.ndarray  # (N, 2)
    ctf: dict[str, np.ndarray] | None = None  # each (N,)
    source_index: np.ndarray | None = None
    _mrc: object = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def box_size(self) -> int:
        return int(self.manifest["box_size"])

    @property
    def pixel_size_angstrom(self) -> float:
        return float(self.manifest["pixel_size_angstrom"])

    @property
    def gaussians_init(self) -> Path:
        return self.root / GAUSSIANS_INIT

    def ctf_batch(self, index: np.ndarray, device=None, dtype=torch.float32) -> CTFParams | None:
        """CTF parameters of the particles ``index`` (B,), or None for data without a CTF."""
        if self.ctf is None:
            return None
        return CTFParams.from_mapping(self.ctf, index, device=device, dtype=dtype)

    def close(self) -> None:
        if self._mrc is not None:
            self._mrc.close()
            self._mrc = None


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path`` (one InputError line for a damaged or foreign file)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a JSON object, got a {type(obj).__name__}")
    return obj


def _read_arrays(path: Path, need: tuple[str, ...] = ()):
    """The arrays of an ``.npz`` (dict) or an ``.npy`` (array), numbers only; one InputError line naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: missing: not a complete dataset folder")
    try:
        if path.suffix == ".npy":
            out = np.load(path, allow_pickle=False)
            arrays = [out]
        else:
            with np.load(path, allow_pickle=False) as f:
                out = {k: f[k] for k in f.files}
            arrays = list(out.values())
    except Exception as exc:  # a truncated or foreign file raises anything (BadZipFile, ValueError, EOFError, ...)
        raise InputError(f"{path}: damaged or not a numpy file ({load_error(exc)})") from None
    missing = [k for k in need if k not in out]
    if missing:
        raise InputError(f"{path}: lacks {', '.join(missing)}")
    if any(not np.issubdtype(a.dtype, np.number) for a in arrays):
        raise InputError(f"{path}: holds non-numeric arrays")
    return out


def load_dataset(path: str | Path) -> ParticleDataset:
    """Open a dataset folder written by ``preprocess`` (or by tests/simulators following the same layout)."""
    root = Path(path)
    if not (root / MANIFEST).is_file():
        raise InputError(f"{root} is not a GaussianEM dataset folder (no {MANIFEST}); run 'gaussianem preprocess'")
    manifest = read_json(root / MANIFEST)
    for key in ("box_size", "pixel_size_angstrom"):
        if not isinstance(manifest.get(key), int | float) or not manifest[key] > 0:
            raise InputError(f"{root / MANIFEST}: {key} is missing or not a positive number")
    mrc = open_stack(root / PARTICLES)
    images = mrc.data
    if images.ndim == 2:
        images = images[None]
    try:
        poses = _read_arrays(root / POSES, ("rotation", "shift_angstrom"))
        rotations, shifts = poses["rotation"], poses["shift_angstrom"]
        ctf = _read_arrays(root / CTF) if (root / CTF).is_file() else None
        source_index = _read_arrays(root / SOURCE_INDEX) if (root / SOURCE_INDEX).is_file() else None
    except InputError:
        mrc.close()
        raise
    check_ctf(ctf, root / CTF)
    n = images.shape[0]
    counts = {"poses": len(rotations), "shifts": len(shifts)}
    if ctf is not None:
        counts.update({f"ctf {k}": len(v) for k, v in ctf.items()})
    bad = {k: v for k, v in counts.items() if v != n}
    if bad:
        raise InputError(f"{root}: {n} images but {bad}")
    return ParticleDataset(root, manifest, images, rotations, shifts, ctf, source_index, mrc)
