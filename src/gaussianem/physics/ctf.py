"""Contrast transfer function, RELION's definition, positive at low frequency.

``CTF(s) = -sin(χ)`` with ``χ = -π λ Δf(θ) s² + (π/2) Cs λ³ s⁴ - φ - atan(w / √(1-w²))`` where ``Δf(θ) =
(ΔU+ΔV)/2 + (ΔU-ΔV)/2 · cos(2(θ - θ_ast))`` (positive = underfocus), θ the azimuth of the frequency vector
(atan2(fy, fx)), φ the phase shift and w the amplitude contrast; multiplied by ``exp(-B s²/4)``.
At s = 0 it equals sin(φ + atan(w/√(1-w²))) > 0: white particles, as in RELION's stacks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gaussianem.physics.fourier import rfft2_frequencies


class CTFParams(NamedTuple):
    """Per-particle CTF parameters, each a (B,) tensor; the one form they take from reading to rendering.

    The field order is the argument order of :func:`ctf_values` (``ctf_values(fy, fx, *params)``) and the
    column order of the packed (B, 7 + k) form the training loader moves (:meth:`packed`). ``bfactor`` (Å²) and
    ``scale`` are optional and written to ``ctf.npz`` only when the input has them.
    """

    defocus_u_angstrom: Tensor
    defocus_v_angstrom: Tensor
    defocus_angle_deg: Tensor
    voltage_kv: Tensor
    cs_mm: Tensor
    amplitude_contrast: Tensor
    phase_shift_deg: Tensor | None = None
    bfactor: Tensor | None = None
    scale: Tensor | None = None

    @classmethod
    def from_mapping(cls, fields: Mapping[str, np.ndarray | Tensor], index: np.ndarray | Tensor | slice | None = None,
                     device=None, dtype: torch.dtype = torch.float32) -> CTFParams:
        """From named (N,) arrays (``ctf.npz``, a star/cs reader's dict), optionally the rows ``index``."""
        missing = [k for k in cls._fields if k not in cls._field_defaults and k not in fields]
        if missing:
            raise ValueError(f"CTF parameters lack {missing}")

        def tensor(v):
            v = v if index is None else v[index]
            return torch.as_tensor(np.asarray(v) if not isinstance(v, Tensor) else v, dtype=dtype, device=device)

        return cls(**{k: tensor(fields[k]) for k in cls._fields if k in fields})

    @classmethod
    def from_packed(cls, packed: Tensor) -> CTFParams:
        """(B, 7 + k) columns in field order (the first k optional fields present) -> CTFParams."""
        return cls(*packed.unbind(1))

    def packed(self) -> Tensor:
        """(B, 7 + k): the required fields, then the optional fields up to the first one that is absent."""
        columns = []
        for v in self:
            if v is None:
                break
            columns.append(v)
        return torch.stack(columns, 1)

    def select(self, index: Tensor | slice) -> CTFParams:
        """The rows ``index`` of every field."""
        return CTFParams(*(None if v is None else v[index] for v in self))




# the fields ``ctf.npz`` always has, and those it has only when the input did, in packed-column order
CTF_FIELDS: tuple[str, ...] = CTFParams._fields[:7]
OPTIONAL_CTF_FIELDS: tuple[str, ...] = CTFParams._fields[7:]


def electron_wavelength_angstrom(voltage_kv: Tensor | float) -> Tensor | float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    if isinstance(v, Tensor):
        return 12.2642598 / torch.sqrt(v * (1 + v * 0.978466e-6))
    return 12.2642598 / math.sqrt(v * (1 + v * 0.978466e-6))


def ctf_values(
    fy: Tensor,
    fx: Tensor,
    defocus_u_angstrom: Tensor,
    defocus_v_angstrom: Tensor,
    defocus_angle_deg: Tensor,
    voltage_kv: Tensor,
    cs_mm: Tensor,
    amplitude_contrast: Tensor,
    phase_shift_deg: Tensor | None = None,
    bfactor: Tensor | None = None,
    scale: Tensor | None = None,
) -> Tensor:
    """CTF at frequencies (fy, fx) in 1/Å (any shape S) for a batch of parameters (B,) -> (B, *S).

    ``bfactor`` (Å²) multiplies by the envelope exp(-B s²/4), ``scale`` by a constant (RELION's
    rlnCtfScalefactor); both optional."""
    def col(t):
        t = torch.as_tensor(t, dtype=fx.dtype, device=fx.device)
        return t.reshape(-1, *([1] * fx.ndim))

    du, dv, ang = col(defocus_u_angstrom), col(defocus_v_angstrom), torch.deg2rad(col(defocus_angle_deg))
    lam = electron_wavelength_angstrom(col(voltage_kv))
    cs = col(cs_mm) * 1e7
    w = col(amplitude_contrast)
    s2 = fx**2 + fy**2
    theta = torch.atan2(fy, fx)
    defocus = 0.5 * (du + dv) + 0.5 * (du - dv) * torch.cos(2 * (theta - ang))
    chi = torch.pi * lam * defocus * s2 - 0.5 * torch.pi * cs * lam**3 * s2**2
    chi = chi + torch.atan(w / torch.sqrt(1 - w**2))
    if phase_shift_deg is not None:
        chi = chi + torch.deg2rad(col(phase_shift_deg))
    ctf = torch.sin(chi)
    if bfactor is not None:
        ctf = ctf * torch.exp(-col(bfactor) * s2 / 4)
    if scale is not None:
        ctf = ctf * col(scale)
    return ctf


def ctf_rfft2(
    box_size: int,
    pixel_size_angstrom: float,
    params: CTFParams | Mapping[str, Tensor],
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """CTF on the rfft2 grid for a batch of parameters (each (B,)) -> (B, D, D//2+1).

    ``params`` is a :class:`CTFParams`, or named (B,) tensors as in ``ctf.npz`` (turned into one here)."""
    if not isinstance(params, CTFParams):
        params = CTFParams.from_mapping(params, device=device, dtype=dtype)
    fy, fx = rfft2_frequencies(box_size, pixel_size_angstrom, device=device, dtype=dtype)
    return ctf_values(fy, fx, *params)
