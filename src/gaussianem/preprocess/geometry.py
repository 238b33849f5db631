"""The working grid: the output box and pixel size, and resampling of particles and map onto it.

Output pixel size ``--apix`` or ``apix₀ · D₀ / D'`` (D₀, apix₀ of the first particle's optics group); every group
is Fourier-cropped/padded to ``round(D_g · apix_g / apix_out)`` (even, within 1 % pixel-size error) and then
centre-cropped/padded in real space to ``D'``, so every output particle shares one pixel size. Shifts stay in Å.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gaussianem.errors import InputError
from gaussianem.physics.fourier import fourier_crop, fourier_pad
from gaussianem.preprocess.readers import SourceData

log = logging.getLogger(__name__)

PIXEL_TOLERANCE = 0.01  # relative pixel-size error allowed when resampling an optics group


@dataclass(frozen=True)
class Geometry:
    """Working grid: ``box`` × ``box`` at ``pixel_size``; per input group (box_g, apix_g) -> resampled box."""

    box: int
    pixel_size: float
    original_box: int
    original_pixel_size: float
    resample: dict[tuple[int, float], int]


def _even_box(exact: float) -> int:
    lo = 2 * math.floor(exact / 2)
    hi = lo + 2
    return max(2, lo if abs(lo - exact) <= abs(hi - exact) else hi)


def plan_geometry(box_sizes: np.ndarray, pixel_sizes: np.ndarray, box: int | None, apix: float | None) -> Geometry:
    """Choose the working box and pixel size and each input group's resampled box (see the module docstring)."""
    d0, a0 = int(box_sizes[0]), float(pixel_sizes[0])
    if box is not None:
        if box % 2:
            raise InputError(f"--box {box} is odd; the working box must be even")
        if box > d0:
            raise InputError(f"--box {box} is larger than the particles' box {d0}")
        if box < 8:
            raise InputError(f"--box {box} is too small (at least 8)")
    if apix is not None and not (apix > 0 and math.isfinite(apix)):
        raise InputError(f"--apix {apix} must be a positive pixel size in Å")
    apix_out = float(apix) if apix is not None else a0 * d0 / (box or d0)
    if apix is not None and apix_out < float(pixel_sizes.min()) * (1 - 1e-6):
        raise InputError(f"--apix {apix_out:g} is finer than every input pixel size ({float(pixel_sizes.min()):g} Å)")
    d_out = int(box) if box is not None else _even_box(d0 * a0 / apix_out)
    groups: dict[tuple[int, float], int] = {}
    pairs = np.unique(np.stack([box_sizes.astype(np.float64), pixel_sizes], 1), axis=0)
    for dg, ag in pairs:
        dg = int(dg)
        dr = _even_box(dg * ag / apix_out)
        err = abs(dg * ag / dr - apix_out) / apix_out
        if err > PIXEL_TOLERANCE:
            raise InputError(f"particles of box {dg} at {ag:g} Å/px cannot be resampled to {apix_out:g} Å/px within "
                             f"1% (best even box {dr} gives {dg * ag / dr:g} Å/px); choose --apix/--box to suit")
        groups[(dg, float(ag))] = dr
    if len(groups) > 1:
        log.info("%d input groups resampled to %g Å/px: %s", len(groups), apix_out,
                 ", ".join(f"{k[0]}px@{k[1]:g}Å→{v}" for k, v in groups.items()))
    return Geometry(d_out, apix_out, d0, a0, groups)


def centre_crop_or_pad(x: Tensor, size: int, ndim: int = 2, fill: Tensor | float = 0.0) -> Tensor:
    """Real-space crop/pad of the last ``ndim`` axes about the centre index D//2 (pad value ``fill``)."""
    big = x.shape[-1]
    if size == big:
        return x
    if size < big:
        s = big // 2 - size // 2
        sl = (Ellipsis,) + (slice(s, s + size),) * ndim
        return x[sl]
    out = torch.empty(x.shape[:-ndim] + (size,) * ndim, dtype=x.dtype, device=x.device)
    out[...] = fill if not isinstance(fill, Tensor) else fill.reshape(fill.shape + (1,) * ndim)
    s = size // 2 - big // 2
    out[(Ellipsis,) + (slice(s, s + big),) * ndim] = x
    return out


def resample_images(images: Tensor, resampled_box: int, box: int) -> Tensor:
    """(B, Dg, Dg) -> Fourier crop/pad to ``resampled_box`` -> real-space centre crop/pad to ``box`` (B, D', D')."""
    d = images.shape[-1]
    if resampled_box < d:
        images = fourier_crop(images, resampled_box)
    elif resampled_box > d:
        images = fourier_pad(images, resampled_box)
    if box > resampled_box:
        return centre_crop_or_pad(images, box, fill=images.mean(dim=(-2, -1)))
    return centre_crop_or_pad(images, box)


def resample_map(volume: np.ndarray, voxel: float, geometry: Geometry) -> tuple[np.ndarray, float]:
    """Consensus map -> (map on the working box (D', D', D'), its voxel size ≈ working pixel size)."""
    dm = volume.shape[0]
    dr = _even_box(dm * voxel / geometry.pixel_size)
    v = torch.as_tensor(volume, dtype=torch.float64)
    if dr < dm:
        v = fourier_crop(v, dr, ndim=3)
    elif dr > dm:
        v = fourier_pad(v, dr, ndim=3)
    new_voxel = dm * voxel / dr
    if abs(new_voxel - geometry.pixel_size) / geometry.pixel_size > PIXEL_TOLERANCE:
        log.warning("map voxel after resampling is %.4g Å vs working pixel %.4g Å (Gaussians stay in Å)",
                    new_voxel, geometry.pixel_size)
    v = centre_crop_or_pad(v, geometry.box, ndim=3)
    return v.numpy().astype(np.float32), new_voxel


EXTREME = 1e4  # a pixel further than this many robust standard deviations from its image's median is extreme


def extreme_images(raw: np.ndarray) -> np.ndarray:
    """(B,) bool: images holding a pixel beyond ``EXTREME`` x their robust std (1.4826 MAD) from their median."""
    flat = raw.reshape(len(raw), -1).astype(np.float64)
    med = np.median(flat, axis=1, keepdims=True)
    dev = np.abs(flat - med)
    robust = 1.4826 * np.median(dev, axis=1)
    return (robust > 0) & (dev.max(axis=1) > EXTREME * robust)


def read_resampled(src: SourceData, rows: np.ndarray, geometry: Geometry, extreme: list | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Read particles ``rows`` and bring them to the working grid -> (images (B, D', D') float32, usable (B,) bool:
    finite and without extreme pixels). The rows with extreme pixels are appended to ``extreme``."""
    out = np.empty((len(rows), geometry.box, geometry.box), np.float32)
    finite = np.ones(len(rows), bool)
    boxes, apix = src.images.box_sizes[rows], src.pixel_size[rows]
    keys = np.stack([boxes.astype(np.float64), apix], 1)
    for key in np.unique(keys, axis=0):
        sel = np.nonzero((keys == key).all(1))[0]
        raw = src.images.read(rows[sel])
        ok = np.isfinite(raw).all(axis=(1, 2))
        hot = np.zeros_like(ok)
        hot[ok] = extreme_images(raw[ok])
        if extreme is not None:
            extreme.extend(rows[sel][hot].tolist())
        ok &= ~hot
        finite[sel] = ok
        raw[~ok] = 0.0
        dr = geometry.resample[(int(key[0]), float(key[1]))]
        out[sel] = resample_images(torch.from_numpy(raw), dr, geometry.box).numpy()
    return out, finite
