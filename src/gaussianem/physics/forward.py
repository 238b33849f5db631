"""The forward model: a Gaussian cloud rendered as particle images, projected and then filtered by the CTF.

Every place that turns Gaussians into images that are compared with particles (training, the homogeneous fit,
preprocess's contrast check, the simulator) calls :func:`render_images`; the projection itself and the CTF are
in :mod:`gaussianem.physics.projection` and :mod:`gaussianem.physics.ctf`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gaussianem.physics.ctf import CTFParams, ctf_values
from gaussianem.physics.fourier import apply_filter_rfft2, rfft2_frequencies
from gaussianem.physics.projection import project_gaussians


def apply_ctf(images: Tensor, ctf: CTFParams | None, pixel_size_angstrom: float,
              frequencies: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Images (B, D, D) filtered by each one's CTF in Fourier space; unchanged when ``ctf`` is None.

    ``frequencies``: the rfft2 grid (fy, fx) in 1/Å from :func:`rfft2_frequencies`, when the caller caches it.
    ``ctf`` may also be named (B,) tensors as in ``ctf.npz``.
    """
    if ctf is None:
        return images
    if not isinstance(ctf, CTFParams):
        ctf = CTFParams.from_mapping(ctf, device=images.device, dtype=images.dtype)
    if frequencies is None:
        frequencies = rfft2_frequencies(images.shape[-1], pixel_size_angstrom, device=images.device,
                                        dtype=images.dtype)
    fy, fx = frequencies
    return apply_filter_rfft2(images, ctf_values(fy, fx, *ctf))


def render_images(
    positions: Tensor,
    widths: Tensor | float,
    amplitudes: Tensor,
    rotations: Tensor,
    shifts_angstrom: Tensor | None,
    ctf: CTFParams | None,
    box_size: int,
    pixel_size_angstrom: float,
    chunk_size: int | None = None,
    frequencies: tuple[Tensor, Tensor] | None = None,
    projector: Callable[..., Tensor] = project_gaussians,
) -> Tensor:
    """CTF-filtered projections (B, D, D) ``[b, y, x]`` of Gaussian clouds.

    Args:
        positions: (G, 3) shared or (B, G, 3) per-image centres in Å (map frame, origin at the box centre).
        widths: (G,) or (B, G) standard deviations in Å (or one float for projectors of one width).
        amplitudes: (G,) or (B, G) peak densities.
        rotations: (B, 3, 3) RELION matrices ``A``; shifts_angstrom: (B, 2) RELION origins in Å, or None.
        ctf: each particle's CTF parameters (B,), or None for plain projections.
        chunk_size: Gaussians per chunk of the projection (None: automatic).
        frequencies: a cached rfft2 grid (fy, fx) for the CTF.
        projector: the projection function (:func:`project_gaussians`, or a fast path with its signature).
    """
    kwargs = {} if chunk_size is None else {"chunk_size": chunk_size}
    images = projector(positions, widths, amplitudes, rotations, shifts_angstrom, box_size, pixel_size_angstrom,
                       **kwargs)
    return apply_ctf(images, ctf, pixel_size_angstrom, frequencies)


def render_in_batches(positions: Tensor, widths: Tensor, amplitudes: Tensor, rotations: Tensor, shifts_angstrom: Tensor,
                      ctf: CTFParams | None, box_size: int, pixel_size_angstrom: float, batch: int = 64) -> Tensor:
    """:func:`render_images` of one shared cloud (G, ·) for many poses (N, ·), ``batch`` images at a time."""
    out = []
    for s in range(0, len(rotations), batch):
        sl = slice(s, s + batch)
        out.append(render_images(positions, widths, amplitudes, rotations[sl], shifts_angstrom[sl],
                                 None if ctf is None else ctf.select(sl), box_size, pixel_size_angstrom))
    return torch.cat(out) if out else rotations.new_zeros(0, box_size, box_size)
