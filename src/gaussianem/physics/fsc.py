"""Fourier shell correlation in 1-voxel shells and FSC-AUC as CryoBench defines it."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def fsc(vol1: Tensor, vol2: Tensor, mask: Tensor | None = None) -> Tensor:
    """FSC of two cubic volumes (D, D, D) in 1-voxel shells 0..D/2-1 -> (D//2,).

    Shell k holds the Fourier voxels whose radius (in voxels) rounds to k. An optional real-space mask
    multiplies both volumes first.
    """
    if vol1.shape != vol2.shape or vol1.ndim != 3:
        raise ValueError(f"fsc needs two volumes of one cubic shape, got {tuple(vol1.shape)}, {tuple(vol2.shape)}")
    vol1 = vol1.to(torch.float64)
    vol2 = vol2.to(torch.float64)
    if mask is not None:
        vol1, vol2 = vol1 * mask, vol2 * mask
    size = vol1.shape[-1]
    f1 = torch.fft.rfftn(vol1)
    f2 = torch.fft.rfftn(vol2)
    k = torch.fft.fftfreq(size, d=1.0 / size, device=vol1.device, dtype=torch.float64)
    kr = torch.fft.rfftfreq(size, d=1.0 / size, device=vol1.device, dtype=torch.float64)
    kz, ky, kx = torch.meshgrid(k, k, kr, indexing="ij")
    shell = torch.round(torch.sqrt(kz**2 + ky**2 + kx**2)).long()
    # the rfft half-space counts the kx > 0 plane once, which is the other half's conjugate: weight it twice
    weight = torch.full_like(kx, 2.0)
    weight[..., 0] = 1.0
    if size % 2 == 0:
        weight[..., -1] = 1.0
    n = size // 2
    keep = shell < n
    shell, weight = shell[keep], weight[keep]
    cross = (f1 * f2.conj()).real[keep] * weight
    p1 = (f1.abs() ** 2)[keep] * weight
    p2 = (f2.abs() ** 2)[keep] * weight
    num = torch.zeros(n, dtype=torch.float64, device=vol1.device).index_add_(0, shell, cross)
    d1 = torch.zeros(n, dtype=torch.float64, device=vol1.device).index_add_(0, shell, p1)
    d2 = torch.zeros(n, dtype=torch.float64, device=vol1.device).index_add_(0, shell, p2)
    return num / torch.sqrt(d1 * d2).clamp_min(1e-30)


def fsc_frequencies(box_size: int) -> np.ndarray:
    """Shell frequencies in 1/pixel: ``arange(D//2) / D``."""
    return np.arange(box_size // 2) / box_size


def fsc_auc(curve: Tensor | np.ndarray, box_size: int | None = None) -> float:
    """Area under |FSC| over frequency ``arange(D/2)/D`` by the trapezoidal rule (max ≈ 0.5), as CryoBench."""
    c = np.abs(np.asarray(curve.detach().cpu() if isinstance(curve, Tensor) else curve, dtype=np.float64))
    size = box_size if box_size is not None else 2 * len(c)
    return float(_trapezoid(c, fsc_frequencies(size)[: len(c)]))


def fsc_resolution(curve: Tensor | np.ndarray, box_size: int, pixel_size_angstrom: float,
                   threshold: float = 0.5) -> float:
    """Resolution (Å) where the FSC first falls below ``threshold`` (linear interpolation between shells).

    Returns the Nyquist resolution 2·pixel_size when it never does.
    """
    c = np.asarray(curve.detach().cpu() if isinstance(curve, Tensor) else curve, dtype=np.float64)
    freq = fsc_frequencies(box_size)[: len(c)]
    below = np.nonzero(c < threshold)[0]
    below = below[below > 0]
    if len(below) == 0:
        return 2.0 * pixel_size_angstrom
    i = below[0]
    t = (c[i - 1] - threshold) / max(c[i - 1] - c[i], 1e-12)
    f = freq[i - 1] + t * (freq[i] - freq[i - 1])
    return pixel_size_angstrom / max(f, 1e-12)


def fsc_crossing(curve: Tensor | np.ndarray, box_size: int, pixel_size_angstrom: float,
                 threshold: float = 0.5) -> tuple[float | None, str]:
    """Where an FSC curve (D//2,) crosses ``threshold``, said honestly -> (resolution Å or None, text).

    None with "stays above 0.5 up to Nyquist (8.0 Å)" when it never falls below, or "below 0.5 from the first
    shell (40.0 Å)" when shell 1 is already below; otherwise the interpolated resolution and "0.5 @ 12.3 Å".
    """
    c = np.asarray(curve.detach().cpu() if isinstance(curve, Tensor) else curve, dtype=np.float64)
    nyquist = 2.0 * pixel_size_angstrom
    below = np.nonzero(c[1:] < threshold)[0]
    if len(below) == 0:
        return None, f"stays above {threshold:g} up to Nyquist ({nyquist:.1f} Å)"
    if below[0] == 0:
        first = box_size * pixel_size_angstrom
        return None, f"below {threshold:g} from the first shell ({first:.1f} Å)"
    res = fsc_resolution(c, box_size, pixel_size_angstrom, threshold)
    return res, f"{threshold:g} @ {res:.1f} Å"
