"""RELION 3.1 particle star files (``data_optics`` + ``data_particles``) for simulated stacks, with starfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch

from gaussianem.io.writes import atomic_path
from gaussianem.physics.rotation import matrix_to_euler_relion


def write_relion31_star(
    path: str | Path,
    stack_name: str,
    rotation: np.ndarray,
    shift_angstrom: np.ndarray,
    ctf: dict[str, np.ndarray],
    box_size: int,
    pixel_size_angstrom: float,
) -> None:
    """Write a RELION 3.1 star for the stack ``stack_name`` (relative to the star's folder), atomically.

    rotation (N, 3, 3) RELION matrices A -> rlnAngleRot/Tilt/Psi; shift_angstrom (N, 2) -> rlnOriginX/YAngst;
    ctf: (N,) arrays named as in ``ctf.npz``. Voltage, Cs and amplitude contrast must be single-valued (one
    optics group); defocus, angle and phase shift go per particle.
    """
    n = rotation.shape[0]
    for key in ("voltage_kv", "cs_mm", "amplitude_contrast"):
        if np.ptp(ctf[key]) > 0:
            raise ValueError(f"{key} varies between particles; one optics group needs one value")
    euler = matrix_to_euler_relion(torch.as_tensor(rotation, dtype=torch.float64)).numpy()
    optics = pd.DataFrame({
        "rlnOpticsGroup": [1],
        "rlnOpticsGroupName": ["opticsGroup1"],
        "rlnAmplitudeContrast": [float(ctf["amplitude_contrast"][0])],
        "rlnSphericalAberration": [float(ctf["cs_mm"][0])],
        "rlnVoltage": [float(ctf["voltage_kv"][0])],
        "rlnImagePixelSize": [float(pixel_size_angstrom)],
        "rlnImageSize": [int(box_size)],
        "rlnImageDimensionality": [2],
    })
    particles = pd.DataFrame({
        "rlnImageName": [f"{i + 1:06d}@{stack_name}" for i in range(n)],
        "rlnAngleRot": euler[:, 0],
        "rlnAngleTilt": euler[:, 1],
        "rlnAnglePsi": euler[:, 2],
        "rlnOriginXAngst": shift_angstrom[:, 0],
        "rlnOriginYAngst": shift_angstrom[:, 1],
        "rlnDefocusU": ctf["defocus_u_angstrom"],
        "rlnDefocusV": ctf["defocus_v_angstrom"],
        "rlnDefocusAngle": ctf["defocus_angle_deg"],
        "rlnPhaseShift": ctf["phase_shift_deg"],
        "rlnCtfBfactor": np.zeros(n),
        "rlnOpticsGroup": np.ones(n, dtype=np.int64),
        "rlnRandomSubset": (np.arange(n) % 2 + 1).astype(np.int64),
        "rlnClassNumber": np.ones(n, dtype=np.int64),
    })
    with atomic_path(path) as tmp:
        starfile.write({"optics": optics, "particles": particles}, tmp, float_format="%.6f", overwrite=True)
