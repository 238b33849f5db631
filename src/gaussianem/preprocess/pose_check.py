"""The pose/contrast check on a sample of particles: CTF-filtered projections of the initial Gaussians vs the
images (normalised cross-correlation in a soft circular mask) for both contrast signs, plus a baseline with the
poses shuffled within the sample. It decides whether the particles are flipped and warns when the poses look
no better than random.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import Tensor

from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud
from gaussianem.physics.ctf import CTFParams
from gaussianem.physics.forward import render_in_batches
from gaussianem.physics.fourier import soft_circular_mask
from gaussianem.preprocess.config import PreprocessConfig
from gaussianem.preprocess.geometry import Geometry, read_resampled
from gaussianem.preprocess.readers import SourceData

log = logging.getLogger(__name__)

NCC_NEAR_ZERO = 0.05  # |NCC| below this for both signs: poses/order/pixel size/map are suspect
SIGN_T = 5.0  # |t| of the mean NCC above which the contrast sign counts as clear
POSE_Z = 5.0  # z of (NCC − shuffled-pose NCC) below which the poses look no better than random


def _masked_ncc(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Normalised cross-correlation of (B, D, D) pairs inside a soft mask -> (B,)."""
    w = mask / mask.sum()
    am = (a * w).sum((-2, -1), keepdim=True)
    bm = (b * w).sum((-2, -1), keepdim=True)
    da, db = a - am, b - bm
    num = (w * da * db).sum((-2, -1))
    den = torch.sqrt((w * da * da).sum((-2, -1)) * (w * db * db).sum((-2, -1))).clamp_min(1e-30)
    return num / den


def render(cloud: GaussianCloud, rotation: Tensor, shift: Tensor, ctf: CTFParams | None, box: int,
           apix: float, batch: int = 64) -> Tensor:
    """CTF-filtered projections of a Gaussian cloud: rotation (B, 3, 3), shift (B, 2) Å -> (B, D, D)."""
    pos, sig, amp = (t.detach().to(rotation) for t in cloud.physical())
    return render_in_batches(pos, sig, amp, rotation, shift, ctf, box, apix, batch)


CHECK_BUDGET = 2e9  # particles × Gaussians × box above which the check renders a coarser copy of the cloud


def _check_cloud(cloud: GaussianCloud, n: int, box: int) -> GaussianCloud:
    """The cloud itself, or when rendering it for ``n`` particles is too costly, a coarser one: the Gaussians
    merged on a k-voxel grid (k = 2, 3, ...) with k× wider widths and summed mass (the same map, low-passed)."""
    pos, sig, amp = (t.detach().double() for t in cloud.physical())
    if n * cloud.n * box <= CHECK_BUDGET:
        return cloud
    step = float(sig.mean()) / 0.75  # ≈ one voxel of the map the cloud was sampled from
    for k in range(2, 9):
        key = torch.round(pos / (k * step)).long()
        uniq, inv = torch.unique(key, dim=0, return_inverse=True)
        if n * len(uniq) * box <= CHECK_BUDGET or k == 8:
            break
    mass = amp * sig**3
    m = torch.zeros(len(uniq), dtype=mass.dtype).index_add_(0, inv, mass)
    centre = torch.zeros(len(uniq), 3, dtype=pos.dtype).index_add_(0, inv, pos * mass[:, None]) / m[:, None]
    width = float(sig.mean()) * k
    log.info("pose check renders a %d-voxel coarse copy of the cloud (%d -> %d Gaussians)", k, cloud.n, len(uniq))
    return GaussianCloud(centre.float(), torch.full((len(uniq),), width), (m / width**3).float(),
                         width * 0.5, width * 2.0)


@torch.no_grad()
def pose_check(images: np.ndarray, rotation: np.ndarray, shift_angstrom: np.ndarray,
               ctf: dict[str, np.ndarray] | None, cloud: GaussianCloud, box: int, apix: float,
               user_invert: bool | None, seed: int = 0, device: str | torch.device = "cpu", quiet: bool = False
               ) -> dict:
    """Correlate CTF-filtered projections of ``cloud`` with ``images`` (B, D, D) as stored (not flipped).

    Returns the manifest's ``pose_check``: n_sampled, ncc_as_is, ncc_inverted (= −ncc_as_is),
    ncc_shuffled_poses (baseline: poses/CTFs permuted within the sample), z_pose, t_sign, decision ("as-is" |
    "inverted"), user_choice, warning. Raises InputError when the user's choice contradicts a clear sign.
    ``quiet``: log nothing (an alternative reading of the map, tried by :mod:`.pixel_check`).
    """
    dev = torch.device(device)
    dt = torch.float32
    cloud = _check_cloud(cloud, len(images), box)
    n = len(images)
    imgs = torch.as_tensor(images, dtype=dt, device=dev)
    rot = torch.as_tensor(rotation, dtype=dt, device=dev)
    sh = torch.as_tensor(shift_angstrom, dtype=dt, device=dev)
    c = None if ctf is None else CTFParams.from_mapping(ctf, device=dev, dtype=dt)
    mask = soft_circular_mask(box, device=dev, dtype=dt)
    ncc = _masked_ncc(imgs, render(cloud, rot, sh, c, box, apix), mask)
    gen = np.random.default_rng(seed)
    # a derangement (one cycle through a random order): particle i gets the pose and CTF of another particle
    perm = np.empty(n, np.int64)
    cyc = gen.permutation(n)
    perm[cyc] = np.roll(cyc, 1)
    pidx = torch.as_tensor(perm, device=dev)
    c_sh = None if c is None else c.select(pidx)
    ncc_shuf = _masked_ncc(imgs, render(cloud, rot[pidx], sh[pidx], c_sh, box, apix), mask)
    ncc = ncc.cpu().numpy()
    ncc_shuf = ncc_shuf.cpu().numpy()
    mean = float(ncc.mean())
    sd = float(ncc.std(ddof=1)) if n > 1 else 0.0
    t_sign = mean / (sd / math.sqrt(n) + 1e-12)
    sgn = 1.0 if mean >= 0 else -1.0
    gain = sgn * (ncc - ncc_shuf)
    gsd = float(gain.std(ddof=1)) if n > 1 else 0.0
    z_pose = float(gain.mean()) / (gsd / math.sqrt(n) + 1e-12)
    shuffled = float(ncc_shuf.mean())
    sign_clear = abs(t_sign) >= SIGN_T and abs(mean) >= 0.01
    data_says = "as-is" if mean > 0 else "inverted"
    user = None if user_invert is None else ("inverted" if user_invert else "as-is")
    if user is not None and sign_clear and user != data_says:
        flag = "--invert" if user_invert else "--no-invert"
        raise InputError(
            f"{flag} contradicts the data: CTF-filtered projections of the map correlate with the images "
            f"{'as they are' if data_says == 'as-is' else 'inverted'} (NCC {mean:+.3f} as-is over {n} particles, "
            f"t = {t_sign:.1f}); drop {flag} or check the map and poses")
    decision = user or (data_says if sign_clear else "as-is")
    warning = None
    if abs(mean) < NCC_NEAR_ZERO or z_pose < POSE_Z or abs(mean) - abs(shuffled) < 0.2 * abs(mean):
        warning = (f"the images barely match projections of the map with their poses (NCC {mean:+.3f} as-is, "
                   f"{shuffled:+.3f} with poses shuffled, z = {z_pose:.1f}): check the poses, the particle order, "
                   "the pixel size, the map and its handedness")
        if not quiet:
            log.warning("!" * 100)
            log.warning("POSE CHECK: %s", warning)
            log.warning("!" * 100)
    if user is None and not sign_clear and not quiet:
        log.warning("the contrast sign is unclear (NCC %+.3f, t = %.1f): keeping the images as they are; "
                    "use --invert if the particles are dark", mean, t_sign)
    if not quiet:
        log.info("pose check on %d particles: NCC %+.3f as-is, %+.3f inverted, %+.3f with shuffled poses -> %s",
                 n, mean, -mean, shuffled, decision)
    return {"n_sampled": n, "ncc_as_is": mean, "ncc_inverted": -mean, "ncc_shuffled_poses": shuffled,
            "z_pose": z_pose, "t_sign": t_sign, "decision": decision, "user_choice": user, "warning": warning}


def _sample_rows(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def check_sample(src: SourceData, geometry: Geometry, cloud: GaussianCloud, cfg: PreprocessConfig,
                 quiet: bool = False) -> dict:
    """:func:`pose_check` on ``--n-check`` particles drawn at random (those with finite pixels), on the working grid."""
    rows = _sample_rows(src.n, cfg.n_check, cfg.seed)
    sample, ok = read_resampled(src, rows, geometry)
    rows, sample = rows[ok], sample[ok]
    if len(rows) == 0:
        raise InputError(f"{src.path}: every sampled particle holds non-finite pixels")
    ctf_s = None if src.ctf is None else {k: v[rows] for k, v in src.ctf.items()}
    return pose_check(sample, src.rotation[rows], src.shift_angstrom[rows], ctf_s, cloud, geometry.box,
                      geometry.pixel_size, cfg.invert, cfg.seed, cfg.device, quiet)
