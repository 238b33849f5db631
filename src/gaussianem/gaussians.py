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


# --amplitude-change linear: the softplus sharpness of the factor's floor at zero (the factor is within 0.07 of
# max(1 + Δa, 0) everywhere, and 1 + 5e-6 at Δa = 0)
LINEAR_FLOOR_BETA = 10.0


def linear_amplitude_factor(delta: Tensor, mode: str = "linear") -> Tensor:
    """A decoded amplitude change Δa (...) -> the factor on the base amplitude (...), linear in Δa down to zero:
    "linear" softplus(β(1 + Δa)) / β (smoothly floored at zero, β = LINEAR_FLOOR_BETA), "clamp" max(1 + Δa, 0),
    "signed" 1 + Δa (not floored). Unlike softplus(raw + Δa), a fitted cloud's small amplitudes then fade linearly
    and are gone at Δa = -1."""
    if mode == "signed":
        return 1.0 + delta
    if mode == "clamp":
        return torch.relu(1.0 + delta)
    if mode == "linear":
        return F.softplus(1.0 + delta, beta=LINEAR_FLOOR_BETA)
    raise ValueError(f"no linear amplitude factor {mode!r}")


def changed_amplitude(raw: Tensor, delta: Tensor, mode: str = "log") -> Tensor:
    """Raw base amplitudes (...) and a decoded change Δa (broadcastable) -> the amplitudes: softplus(raw + Δa) for
    "log", softplus(raw) × :func:`linear_amplitude_factor` for the linear modes (``--amplitude-change``)."""
    if mode == "log":
        return amplitude_activation(raw + delta)
    return amplitude_activation(raw) * linear_amplitude_factor(delta, mode)


def amplitude_log_gain(delta: Tensor, mode: str = "log") -> Tensor:
    """A decoded amplitude change Δa (...) -> the log of its gain factor where it is a gain, 0 elsewhere (...): Δa⁺
    for "log" (softplus(raw + Δa): a factor exp(Δa) on small amplitudes), log(1 + Δa⁺) for the linear modes, so
    that the gain penalty prices a doubling the same in every mode."""
    gain = torch.relu(delta)
    return gain if mode == "log" else torch.log1p(gain)


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


BACKGROUND_NEGLIGIBLE = 0.01  # |background| below this fraction of the map's peak above it: taken as 0


def map_background(volume: np.ndarray) -> float:
    """The solvent level of a map (D, D, D): the median of its six faces, or 0 when that is negligible (below
    ``BACKGROUND_NEGLIGIBLE`` of the peak above it), as in a map whose solvent is already at 0."""
    faces = np.concatenate([volume[[0, -1]].ravel(), volume[:, [0, -1]].ravel(), volume[:, :, [0, -1]].ravel()])
    bg = float(np.median(faces))
    peak = float(volume.max()) - bg
    return 0.0 if peak <= 0 or abs(bg) <= BACKGROUND_NEGLIGIBLE * peak else bg


def automatic_threshold(volume: np.ndarray, mass_fraction: float = 0.9) -> float:
    """Contour level whose enclosed voxels hold ``mass_fraction`` of the map's density above its background.

    The background is :func:`map_background` (a map with solvent at −1 or a mean-subtracted map is measured from
    its solvent level). When the level falls on a plateau of equal values (a binary 0/1 mask), it is moved halfway
    to the next lower value, so that the plateau lies above it (voxels are kept when ``value > level``).
    """
    bg = map_background(volume)
    v = np.sort(volume[volume > bg].ravel() - bg)[::-1]
    if v.size == 0:
        raise ValueError("the map has no density above its background: cannot choose a contour level")
    cum = np.cumsum(v, dtype=np.float64)
    level = float(v[min(int(np.searchsorted(cum, mass_fraction * cum[-1])), v.size - 1)])
    if np.count_nonzero(v == level) > 1:
        lower = v[v < level]
        level = 0.5 * (level + (float(lower[0]) if lower.size else 0.0))
    return level + bg


def _fractional_grid(volume: np.ndarray, spacing: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Points of a grid of ``spacing`` voxels through the centre voxel of ``volume`` (D, D, D) whose trilinear
    value exceeds ``threshold`` -> (zyx voxel coordinates (n, 3) float, values (n,))."""
    from scipy.ndimage import map_coordinates

    d = volume.shape[0]
    c = d // 2
    axis = c + spacing * np.arange(-math.floor(c / spacing), math.floor((d - 1 - c) / spacing) + 1)
    yy, xx = (a.ravel() for a in np.meshgrid(axis, axis, indexing="ij"))
    points, values = [], []
    for z in axis:  # one plane at a time: a box-512 grid never sits in memory at once
        coords = np.stack([np.full_like(yy, z), yy, xx])
        v = map_coordinates(volume, coords, order=1, mode="nearest")
        keep = v > threshold
        points.append(coords[:, keep].T)
        values.append(v[keep].astype(np.float64))
    return np.concatenate(points), np.concatenate(values)


def cloud_from_map(
    volume: np.ndarray,
    pixel_size_angstrom: float,
    threshold: float | None = None,
    interval: float | None = None,
    width_bounds_voxels: tuple[float, float] = (0.5, 1.0),
    max_gaussians: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> GaussianCloud:
    """Sample Gaussians from a map (D, D, D) ``[z, y, x]``: one per grid point above the contour level.

    The sampling interval is 1 voxel (2 for boxes over 256) unless given; a fractional interval samples a grid of
    that spacing through the centre voxel D//2 with trilinear values. Width bounds are in units of the
    sampling interval (voxels × interval: Gaussians spaced further apart are wider, so the cloud stays smooth);
    widths start at the middle of the bounds; amplitudes are scaled so the summed cloud reproduces the map's
    density. When ``max_gaussians`` is set and exceeded, the densest points are kept.
    """
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise ValueError(f"the map must be a cube, got shape {volume.shape}")
    d = volume.shape[0]
    interval = interval or (2 if d > 256 else 1)
    thr = automatic_threshold(volume) if threshold is None else float(threshold)
    if float(interval).is_integer():
        interval = int(interval)
        zyx = np.argwhere(volume[::interval, ::interval, ::interval] > thr) * interval
        values = volume[zyx[:, 0], zyx[:, 1], zyx[:, 2]].astype(np.float64)
    else:
        zyx, values = _fractional_grid(volume, float(interval), thr)
    if len(zyx) == 0:
        raise ValueError(f"no voxel of the map lies above the contour level {thr:g}")
    if max_gaussians is not None and len(values) > max_gaussians:
        order = np.argsort(values)[::-1][:max_gaussians]
        zyx, values = zyx[order], values[order]
    positions = (zyx[:, ::-1] - d // 2) * pixel_size_angstrom
    wmin, wmax = (w * interval * pixel_size_angstrom for w in width_bounds_voxels)
    sigma = 0.5 * (wmin + wmax)
    sigma_vox = sigma / pixel_size_angstrom
    amplitudes = values * interval**3 / ((2 * math.pi) ** 1.5 * sigma_vox**3)
    log.info("initial cloud: %d Gaussians above contour %.4g (interval %.4g)", len(values), thr, interval)
    t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return GaussianCloud(t(positions), torch.full((len(values),), sigma, dtype=dtype), t(amplitudes), wmin, wmax)
