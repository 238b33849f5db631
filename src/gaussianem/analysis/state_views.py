"""What the report shows of each state (a k-means class or a trajectory point): labelled orthogonal projections
of its volume over the consensus outline, and statistics that tell states apart.

Statistics of a state against the consensus (the base cloud and its volume on the same grid):

- ``rms_displacement_angstrom``: RMS over Gaussians of the distance from the base position;
  ``p99_displacement_angstrom``: its 99th percentile (a moving domain shows here even when it is small);
- ``amplitude_change_percent``: total amplitude relative to the base cloud's, in percent (a subunit fading
  shows here); ``faded_fraction``: Gaussians below half their base amplitude;
- ``fsc_at_frequency``: FSC of the state's volume with the consensus volume at ``frequency_per_angstrom``
  (half of Nyquist, stated with the number); ``fsc_0.5_text``: where that FSC falls below 0.5, said honestly.
"""

from __future__ import annotations

import numpy as np

from gaussianem.analysis.volumes import VolumeGrid
from gaussianem.physics.fsc import fsc_crossing

AXES = (("z", "x", "y"), ("y", "x", "z"), ("x", "y", "z"))  # (viewing axis, horizontal, vertical) per panel


def projections(volume: np.ndarray) -> np.ndarray:
    """Sum projections (3, D, D) of a volume ``[z, y, x]``: along z -> [y, x], along y -> [z, x], along x ->
    [z, y] (rows = the vertical axis of :data:`AXES`)."""
    return np.stack([volume.sum(axis=0), volume.sum(axis=1), volume.sum(axis=2)]).astype(np.float32)


def half_nyquist_shell(box_size: int) -> int:
    """The FSC shell at half of Nyquist (frequency D/4 / D = 1/(4·apix))."""
    return max(1, box_size // 4)


def state_statistics(positions: np.ndarray, amplitudes: np.ndarray, base_positions: np.ndarray,
                     base_amplitudes: np.ndarray, fsc_curve: np.ndarray | None, grid: VolumeGrid) -> dict:
    """One state's numbers against the consensus (see the module docstring).

    Args:
        positions: (G, 3) Å; amplitudes: (G,); base_positions: (G, 3); base_amplitudes: (G,);
        fsc_curve: (D//2,) FSC of the state's volume with the consensus volume, or None.
    """
    d = np.linalg.norm(np.asarray(positions) - np.asarray(base_positions), axis=1)
    base_total = float(np.sum(base_amplitudes)) or 1.0
    stats = {
        "rms_displacement_angstrom": float(np.sqrt(np.mean(d ** 2))),
        "p99_displacement_angstrom": float(np.percentile(d, 99)),
        "amplitude_change_percent": 100.0 * (float(np.sum(amplitudes)) / base_total - 1.0),
        "faded_fraction": float(np.mean(np.asarray(amplitudes) < 0.5 * np.asarray(base_amplitudes))),
    }
    if fsc_curve is not None:
        shell = half_nyquist_shell(grid.box_size)
        stats["frequency_per_angstrom"] = shell / (grid.box_size * grid.pixel_size_angstrom)
        stats["fsc_at_frequency"] = float(fsc_curve[min(shell, len(fsc_curve) - 1)])
        res, text = fsc_crossing(fsc_curve, grid.box_size, grid.pixel_size_angstrom, 0.5)
        stats["fsc_0.5_angstrom"] = res
        stats["fsc_0.5_text"] = text
    return stats


def projection_figure(proj: np.ndarray, consensus: np.ndarray, grid: VolumeGrid, title: str,
                      vmax: np.ndarray | None = None) -> bytes:
    """Three labelled panels (views along z, y, x; axes in Å from the box centre) of a state's projections
    (3, D, D), with the consensus outline (orange contour at 30 % of its peak) on top -> PNG bytes.

    ``vmax`` (3,) fixes the grey scale per view (the consensus peaks), so fading reads as fading.
    """
    from gaussianem.analysis.latent import _figure_to_png, _plt

    plt = _plt()
    half = 0.5 * grid.extent_angstrom
    ext = (-half, half, -half, half)
    vmax = consensus.reshape(3, -1).max(1) if vmax is None else vmax
    reach = _support_half_width(consensus, grid)
    fig, axes = plt.subplots(1, 3, figsize=(7.8, 2.9))
    for i, ax in enumerate(axes):
        view, h, v = AXES[i]
        ax.imshow(proj[i], origin="lower", cmap="gray_r", extent=ext, vmin=0.0, vmax=float(vmax[i]) or 1.0,
                  interpolation="bilinear")
        if consensus[i].max() > 0:
            ax.contour(consensus[i], levels=[0.3 * float(consensus[i].max())], colors="#ee7733", linewidths=0.9,
                       extent=ext, origin="lower")
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        ax.set_title(f"view along {view}", fontsize=9)
        ax.set_xlabel(f"{h} (Å)", fontsize=8)
        ax.set_ylabel(f"{v} (Å)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _figure_to_png(fig, None)


def _support_half_width(consensus: np.ndarray, grid: VolumeGrid, fraction: float = 0.02) -> float:
    """Half-width (Å) of a square window around the box centre that holds every consensus projection's pixels
    above ``fraction`` of its peak, plus 15 % and two voxels (the pictures zoom onto the molecule)."""
    d, apix = grid.box_size, grid.pixel_size_angstrom
    reach = 0.0
    for p in consensus:
        if p.max() <= 0:
            continue
        rows, cols = np.nonzero(p > fraction * p.max())
        idx = np.concatenate([rows, cols])
        reach = max(reach, float(np.abs((idx - d // 2) * apix).max()))
    return float(min(0.5 * grid.extent_angstrom, 1.15 * reach + 2 * apix)) if reach else 0.5 * grid.extent_angstrom
