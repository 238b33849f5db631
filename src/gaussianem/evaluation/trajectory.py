"""A trajectory of volumes (``analyze``'s ``motionK/`` or ``pcK/``) against a simulation's ground-truth volumes.

Which ground-truth volume each end of the trajectory matches (the highest masked FSC-AUC), and whether the
trajectory's change from its first to its last volume is the change between those two ground-truth volumes
(the correlation of the two difference maps, low-passed). Issue 17's acceptance: "a trajectory whose end volumes
match the motion's ends".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import Tensor

from gaussianem.evaluation.metrics import fsc_auc_pair, match_box, spherical_mask


def _masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """Pearson correlation of two maps (D, D, D) inside ``mask`` (weights); None where either is constant."""
    w = mask / mask.sum()
    a = a - (a * w).sum()
    b = b - (b * w).sum()
    energy_a, energy_b = (a * a * w).sum(), (b * b * w).sum()
    if min(energy_a, energy_b) <= 1e-30:
        return None
    return float((a * b * w).sum() / np.sqrt(energy_a * energy_b))


def fsc_auc_against(volume: Tensor, references: Sequence[Tensor], mask: Tensor) -> list[float]:
    """The masked FSC-AUC of one volume (D, D, D) against each reference volume (D, D, D)."""
    return [fsc_auc_pair(volume, r, mask) for r in references]


def trajectory_against_truth(trajectory: Sequence[Tensor | np.ndarray], truth: Sequence[Tensor | np.ndarray],
                             lowpass_voxels: float = 1.0) -> dict:
    """Score a trajectory's ends against ground-truth volumes.

    Args:
        trajectory: T >= 2 volumes (D, D, D) ``[z, y, x]``, first to last.
        truth: the ground-truth volumes (D', D', D'), D' <= D with the same physical extent (the trajectory is
            Fourier-cropped to D').
        lowpass_voxels: σ (voxels) of the Gaussian low-pass of the difference maps.

    Returns:
        ``fsc_auc_first`` / ``fsc_auc_last`` (len(truth),) the masked FSC-AUC of each end against every truth
        volume; ``match_first`` / ``match_last`` the best-matching truth indices; ``change_correlation`` the
        masked correlation of (last − first) with (truth[match_last] − truth[match_first]) after the low-pass (None
        when either difference is zero, e.g. both ends match the same volume); ``progress`` (T,) each trajectory
        volume's change from the first, projected on the truth's unit change (the matched ends' difference map), in
        units of that change: 0 at the first volume and near 1 at the last for a trajectory that spans the motion.
    """
    if len(trajectory) < 2 or not truth:
        raise ValueError("trajectory_against_truth needs at least two trajectory volumes and one truth volume")
    ref = [torch.as_tensor(np.asarray(v), dtype=torch.float64) for v in truth]
    box = int(ref[0].shape[-1])
    traj = [match_box(torch.as_tensor(np.asarray(v), dtype=torch.float64), box) for v in trajectory]
    mask = spherical_mask(box)
    ends = {"first": traj[0], "last": traj[-1]}
    out: dict = {}
    for name, vol in ends.items():
        scores = fsc_auc_against(vol, ref, mask)
        out[f"fsc_auc_{name}"] = scores
        out[f"match_{name}"] = int(np.argmax(scores))
    m = mask.numpy()
    smooth = [gaussian_filter(v.numpy(), lowpass_voxels) for v in traj]
    truth_change = (gaussian_filter(ref[out["match_last"]].numpy(), lowpass_voxels)
                    - gaussian_filter(ref[out["match_first"]].numpy(), lowpass_voxels))
    out["change_correlation"] = _masked_correlation(smooth[-1] - smooth[0], truth_change, m)
    energy = float((truth_change * truth_change * m).sum())
    out["progress"] = ([float(((s - smooth[0]) * truth_change * m).sum() / energy) for s in smooth]
                       if energy > 0 else None)
    return out
