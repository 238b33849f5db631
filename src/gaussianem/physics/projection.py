"""Projection of isotropic 3D Gaussians to particle images, and voxelisation into volumes.

A Gaussian ``a · exp(-|r - μ|² / 2σ²)`` (Å, map frame) projects along z after rotation by RELION's ``A`` to the
2-D Gaussian ``a √(2π) σ · exp(-|q - p|² / 2σ²)`` centred at ``p = (A μ)_{x,y} - origin``. Pixel values are
point samples at pixel centres ``(i - D//2) · pixel_size``. The image is separable:
``I[b] = G_yᵀ · diag(w) · G_x`` with ``G_x[k, x] = exp(-(x - p_kx)² / 2σ_k²)`` — a batched matrix product.
"""

from __future__ import annotations

import functools
import math
import os

import torch
from torch import Tensor

from gaussianem.physics.fourier import grid_coordinates

_CHUNK_BYTES = 256 * 2**20
_CHUNK_BYTES_CUDA = 2 * 2**30


def _auto_chunk(n_gaussians: int, batch: int, box_size: int, element_size: int, n_buffers: int = 4,
                budget: int = _CHUNK_BYTES) -> int:
    per_gaussian = max(batch, 1) * box_size * element_size * n_buffers
    return max(1, min(n_gaussians, budget // per_gaussian))


def projected_centres(positions: Tensor, rotations: Tensor, shifts_angstrom: Tensor | None) -> Tensor:
    """Image-plane centres ``(A μ)_{x,y} - origin`` in Å.

    positions (G, 3) or (B, G, 3); rotations (B, 3, 3); shifts_angstrom (B, 2) or None -> (B, G, 2).
    """
    pos = positions if positions.ndim == 3 else positions[None]
    a2 = rotations[:, None, :2, :]  # (B, 1, 2, 3)
    # three multiply-adds, not a (B, G, 3) × (B, 3, 2) batched product: elementwise kernels that torch.compile
    # fuses with the projection's other (B, G) work (a K = 3 bmm in float32, forward and backward, was ~8 % of a
    # training step's GPU time at G = 60,000)
    p = pos[..., None, 0] * a2[..., 0] + pos[..., None, 1] * a2[..., 1] + pos[..., None, 2] * a2[..., 2]
    if shifts_angstrom is not None:
        p = p - shifts_angstrom[:, None, :]
    return p


def project_gaussians(
    positions: Tensor,
    sigmas: Tensor,
    amplitudes: Tensor,
    rotations: Tensor,
    shifts_angstrom: Tensor | None,
    box_size: int,
    pixel_size_angstrom: float,
    chunk_size: int | None = None,
    compiled: bool | None = None,
) -> Tensor:
    """Render a batch of projections of Gaussian clouds (separable form, exact, differentiable).

    Args:
        positions: (G, 3) shared or (B, G, 3) per-image Gaussian centres (x, y, z) in Å.
        sigmas: (G,) or (B, G) standard deviations in Å.
        amplitudes: (G,) or (B, G) peak densities.
        rotations: (B, 3, 3) RELION matrices A.
        shifts_angstrom: (B, 2) RELION origins (x, y) in Å, or None.
        box_size: D; pixel_size_angstrom: pixel size of the rendered images.
        chunk_size: Gaussians per chunk (memory bound); None picks one that keeps buffers near 256 MiB (CPU)
            or 2 GiB (CUDA).
        compiled: use the torch.compile'd chunk renderer; None = on CUDA unless GAUSSIANEM_COMPILE=0.

    Returns:
        (B, D, D) images, ``[b, y, x]``.
    """
    batch = rotations.shape[0]
    n = positions.shape[-2]
    centres = projected_centres(positions, rotations, shifts_angstrom)  # (B, G, 2)
    coords = grid_coordinates(box_size, pixel_size_angstrom, positions.device, positions.dtype)
    sig = sigmas if sigmas.ndim == 2 else sigmas[None]
    amp = amplitudes if amplitudes.ndim == 2 else amplitudes[None]
    on_gpu = positions.device.type == "cuda"
    budget = _CHUNK_BYTES_CUDA if on_gpu else _CHUNK_BYTES
    chunk = chunk_size or _auto_chunk(n, batch, box_size, positions.element_size(), budget=budget)
    use_compiled = (on_gpu and _compile_enabled()) if compiled is None else compiled
    render = _compiled_render_chunk() if use_compiled else _render_chunk
    image = None
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        part = render(centres[:, sl], sig[:, sl], amp[:, sl], coords)
        image = part if image is None else image + part
    return image


def _render_chunk(centres: Tensor, sig: Tensor, amp: Tensor, coords: Tensor) -> Tensor:
    """One chunk of the separable render: centres (B, g, 2), sig/amp (B|1, g), coords (D,) -> (B, D, D)."""
    inv = (0.5 / sig**2)[..., None]  # (B|1, g, 1)
    gx = torch.exp(-((coords - centres[..., 0:1]) ** 2) * inv)  # (B, g, D)
    gy = torch.exp(-((coords - centres[..., 1:2]) ** 2) * inv)
    w = (amp * sig * math.sqrt(2 * math.pi))[..., None]
    return torch.matmul((gy * w).transpose(-1, -2), gx)  # (B, D, D)


def _compile_enabled() -> bool:
    return os.environ.get("GAUSSIANEM_COMPILE", "1") != "0"


@functools.cache
def _compiled_render_chunk():
    """:func:`_render_chunk` through torch.compile: the exponentials and their gradients fuse into a few
    kernels instead of a dozen passes over (B, g, D) buffers. Same function; tests compare it with the eager one."""
    return torch.compile(_render_chunk, dynamic=None)


def project_gaussians_dense(
    positions: Tensor,
    sigmas: Tensor,
    amplitudes: Tensor,
    rotations: Tensor,
    shifts_angstrom: Tensor | None,
    box_size: int,
    pixel_size_angstrom: float,
) -> Tensor:
    """Plain reference of :func:`project_gaussians`: the full (B, G, D, D) sum, no separability. Small sizes only."""
    centres = projected_centres(positions, rotations, shifts_angstrom)
    coords = grid_coordinates(box_size, pixel_size_angstrom, positions.device, positions.dtype)
    sig = sigmas if sigmas.ndim == 2 else sigmas[None]
    amp = amplitudes if amplitudes.ndim == 2 else amplitudes[None]
    dy = coords[None, None, :, None] - centres[..., 1, None, None]
    dx = coords[None, None, None, :] - centres[..., 0, None, None]
    g = torch.exp(-(dx**2 + dy**2) / (2 * sig[..., None, None] ** 2))
    return (g * (amp * sig * math.sqrt(2 * math.pi))[..., None, None]).sum(1)


def voxelize_gaussians(
    positions: Tensor,
    sigmas: Tensor,
    amplitudes: Tensor,
    box_size: int,
    pixel_size_angstrom: float,
    chunk_size: int | None = None,
) -> Tensor:
    """Sample a Gaussian cloud on a cubic grid: positions (G, 3) Å (x, y, z), sigmas (G,), amplitudes (G,)
    -> volume (D, D, D) ``[z, y, x]``, voxel ``i`` at ``(i - D//2) · pixel_size``. Separable, chunked."""
    n = positions.shape[0]
    coords = grid_coordinates(box_size, pixel_size_angstrom, positions.device, positions.dtype)
    d = box_size
    chunk = chunk_size or max(1, min(n, _CHUNK_BYTES // (d * d * positions.element_size() * 2)))
    volume = torch.zeros(d * d, d, dtype=positions.dtype, device=positions.device)
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)
        inv = (0.5 / sigmas[sl] ** 2)[:, None]
        gx = torch.exp(-((coords - positions[sl, 0:1]) ** 2) * inv)  # (g, D)
        gy = torch.exp(-((coords - positions[sl, 1:2]) ** 2) * inv)
        gz = torch.exp(-((coords - positions[sl, 2:3]) ** 2) * inv) * amplitudes[sl, None]
        zy = (gz[:, :, None] * gy[:, None, :]).reshape(gz.shape[0], d * d)  # (g, D*D)
        volume = volume + zy.T @ gx
    return volume.reshape(d, d, d)
