"""The Gaussian cloud: parameters only, in Ångström in the map frame (origin at the box centre).

Widths are bounded by a sigmoid to ``[width_min, width_max]`` Å and amplitudes pass through softplus, so the
raw (pre-activation) parameters are unconstrained. Densification and pruning live in
:mod:`gaussianem.training.strategy`, not here.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaussianem.io.ply import read_gaussians_ply, write_gaussians_ply

log = logging.getLogger(__name__)


def amplitude_activation(raw: Tensor) -> Tensor:
    """Raw amplitude parameter -> amplitude (softplus)."""
    return F.softplus(raw)


def amplitude_inverse(amplitude: Tensor) -> Tensor:
    """Amplitude (> 0) -> raw parameter (inverse softplus, stable for large values)."""
    a = amplitude.clamp_min(1e-8)
    return torch.where(a > 20, a, torch.log(torch.expm1(a)))


def width_activation(raw: Tensor, width_min: float, width_max: float) -> Tensor:
    """Raw width parameter -> width in Å bounded to [width_min, width_max] by a sigmoid."""
    return width_min + (width_max - width_min) * torch.sigmoid(raw)


def width_inverse(width: Tensor, width_min: float, width_max: float) -> Tensor:
    """Width in Å -> raw parameter (logit), clipped inside the open interval."""
    t = ((width - width_min) / (width_max - width_min)).clamp(1e-4, 1 - 1e-4)
    return torch.logit(t)


class GaussianCloud(nn.Module):
    """Isotropic 3D Gaussians: positions (G, 3) Å as (x, y, z), widths (G,) Å, amplitudes (G,)."""

    def __init__(
        self,
        positions: Tensor,
        widths: Tensor,
        amplitudes: Tensor,
        width_min: float,
        width_max: float,
    ) -> None:
        super().__init__()
        if not (0 < width_min < width_max):
            raise ValueError(f"width bounds must satisfy 0 < min < max, got {width_min}, {width_max}")
        self.width_min = float(width_min)
        self.width_max = float(width_max)
        self.positions = nn.Parameter(positions.detach().clone())
        self.width_raw = nn.Parameter(width_inverse(widths.detach().to(positions.dtype), width_min, width_max))
        self.amplitude_raw = nn.Parameter(amplitude_inverse(amplitudes.detach().to(positions.dtype)))

    @property
    def n(self) -> int:
        return self.positions.shape[0]

    @property
    def widths(self) -> Tensor:
        return width_activation(self.width_raw, self.width_min, self.width_max)

    @property
    def amplitudes(self) -> Tensor:
        return amplitude_activation(self.amplitude_raw)

    def physical(self) -> tuple[Tensor, Tensor, Tensor]:
        """(positions (G, 3), widths (G,), amplitudes (G,)) in physical units."""
        return self.positions, self.widths, self.amplitudes

    def subset(self, keep: Tensor) -> GaussianCloud:
        """A new cloud holding the Gaussians selected by a boolean mask or index tensor."""
        with torch.no_grad():
            return GaussianCloud(self.positions[keep], self.widths[keep], self.amplitudes[keep],
                                 self.width_min, self.width_max)

    def to_ply(self, path: str | Path) -> None:
        """Write a binary PLY with vertex properties x, y, z (Å), sigma (Å), amplitude; written atomically."""
        pos, wid, amp = (t.detach().cpu().double().numpy() for t in self.physical())
        write_gaussians_ply(path, pos, wid, amp, self.width_min, self.width_max)

    @classmethod
    def from_ply(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> GaussianCloud:
        pos, wid, amp, bounds = read_gaussians_ply(path)
        wmin, wmax = bounds if bounds is not None else (float(wid.min()) * 0.999, float(wid.max()) * 1.001 + 1e-6)
        t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
        return cls(t(pos), t(wid), t(amp), wmin, wmax)


def automatic_threshold(volume: np.ndarray, mass_fraction: float = 0.9) -> float:
    """Contour level whose enclosed voxels hold ``mass_fraction`` of the map's positive density."""
    v = np.sort(volume[volume > 0].ravel())[::-1]
    if v.size == 0:
        raise ValueError("the map has no positive density: cannot choose a contour level")
    cum = np.cumsum(v, dtype=np.float64)
    idx = int(np.searchsorted(cum, mass_fraction * cum[-1]))
    return float(v[min(idx, v.size - 1)])


def cloud_from_map(
    volume: np.ndarray,
    pixel_size_angstrom: float,
    threshold: float | None = None,
    interval: int | None = None,
    width_bounds_voxels: tuple[float, float] = (0.5, 1.0),
    max_gaussians: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> GaussianCloud:
    """Sample Gaussians from a map (D, D, D) ``[z, y, x]``: one per grid point above the contour level.

    The sampling interval is 1 voxel (2 for boxes over 256) unless given. Width bounds are in units of the
    sampling interval (voxels × interval: Gaussians spaced further apart are wider, so the cloud stays smooth);
    widths start at the middle of the bounds; amplitudes are scaled so the summed cloud reproduces the map's
    density. When ``max_gaussians`` is set and exceeded, the densest points are kept.
    """
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"the map must be a cube, got shape {volume.shape}")
    d = volume.shape[0]
    interval = interval or (2 if d > 256 else 1)
    thr = automatic_threshold(volume) if threshold is None else float(threshold)
    sub = volume[::interval, ::interval, ::interval]
    zyx = np.argwhere(sub > thr) * interval
    if len(zyx) == 0:
        raise ValueError(f"no voxel of the map lies above the contour level {thr:g}")
    values = volume[zyx[:, 0], zyx[:, 1], zyx[:, 2]].astype(np.float64)
    if max_gaussians is not None and len(values) > max_gaussians:
        order = np.argsort(values)[::-1][:max_gaussians]
        zyx, values = zyx[order], values[order]
    positions = (zyx[:, ::-1] - d // 2) * pixel_size_angstrom
    wmin, wmax = (w * interval * pixel_size_angstrom for w in width_bounds_voxels)
    sigma = 0.5 * (wmin + wmax)
    sigma_vox = sigma / pixel_size_angstrom
    amplitudes = values * interval**3 / ((2 * math.pi) ** 1.5 * sigma_vox**3)
    log.info("initial cloud: %d Gaussians above contour %.4g (interval %d)", len(values), thr, interval)
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return GaussianCloud(t(positions), torch.full((len(values),), sigma, dtype=dtype), t(amplitudes), wmin, wmax)
