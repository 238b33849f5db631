"""Contrast transfer function, RELION's definition, positive at low frequency.

``CTF(s) = -sin(χ)`` with ``χ = -π λ Δf(θ) s² + (π/2) Cs λ³ s⁴ - φ - atan(w / √(1-w²))`` where ``Δf(θ) =
(ΔU+ΔV)/2 + (ΔU-ΔV)/2 · cos(2(θ - θ_ast))`` (positive = underfocus), θ the azimuth of the frequency vector
(atan2(fy, fx)), φ the phase shift and w the amplitude contrast; multiplied by ``exp(-B s²/4)``.
At s = 0 it equals sin(φ + atan(w/√(1-w²))) > 0: white particles, as in RELION's stacks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gaussianem.physics.fourier import rfft2_frequencies


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
    params: dict[str, Tensor],
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """CTF on the rfft2 grid for a batch: params holds (B,) tensors named as in ``ctf.npz``
    (defocus_u_angstrom, defocus_v_angstrom, defocus_angle_deg, voltage_kv, cs_mm, amplitude_contrast and
    optionally phase_shift_deg, bfactor, scale). Returns (B, D, D//2+1)."""
    fy, fx = rfft2_frequencies(box_size, pixel_size_angstrom, device=device, dtype=dtype)
    return ctf_values(
        fy, fx,
        params["defocus_u_angstrom"], params["defocus_v_angstrom"], params["defocus_angle_deg"],
        params["voltage_kv"], params["cs_mm"], params["amplitude_contrast"],
        params.get("phase_shift_deg"), params.get("bfactor"), params.get("scale"),
    )
