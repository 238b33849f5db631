"""``preprocess``: RELION / cryoSPARC / cryoDRGN inputs + a consensus map -> a GaussianEM dataset folder.

Pipeline (:func:`preprocess`):

1. read the source (:func:`load_source`): images (``idx@path`` over many stacks), poses as RELION ``A`` + origins
   in Å, CTF, per-particle pixel size; validate counts, columns, stacks, indices;
2. plan the working grid (:func:`plan_geometry`): output pixel size ``--apix`` or ``apix₀ · D₀ / D'`` (D₀, apix₀
   of the first particle's optics group); every group is Fourier-cropped/padded to
   ``round(D_g · apix_g / apix_out)`` (even, within 1 % pixel-size error) and then centre-cropped/padded in real
   space to ``D'``, so every output particle shares one pixel size. Shifts stay in Å;
3. initial Gaussians from the consensus map resampled to the working pixel size and box;
4. the pose/contrast check (:func:`pose_check`) on a sample of particles: CTF-filtered projections of the initial
   Gaussians vs the images (normalised cross-correlation in a soft circular mask) for both contrast signs, plus a
   baseline with the poses shuffled within the sample;
5. one chunked pass over the particles (tqdm bar): read, check finiteness, resample, flip if the data are dark,
   write into ``particles.mrcs`` by positioned writes (the file is created with ``mrcfile.new_mmap``), accumulate
   image statistics;
6. poses, CTF, source index, PLY, manifest. Everything is written into a hidden temporary folder beside OUTDIR
   and renamed into place at the end: an error leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from gaussianem import __version__
from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud, automatic_threshold, cloud_from_map
from gaussianem.io import cryodrgn, cryosparc, star
from gaussianem.io.dataset import (
    GAUSSIANS_INIT,
    MANIFEST,
    PARTICLES,
    SOURCE_INDEX,
    write_ctf,
    write_json_atomic,
    write_poses,
)
from gaussianem.io.mrc import header_origin_angstrom, read_volume
from gaussianem.io.checks import check_ctf
from gaussianem.io.particles import ParticleImages
from gaussianem.io.staging import fsync_tree, install, staging_path
from gaussianem.physics.ctf import CTFParams
from gaussianem.physics.forward import render_in_batches
from gaussianem.physics.fourier import fourier_crop, fourier_pad, soft_circular_mask

log = logging.getLogger(__name__)

PIXEL_TOLERANCE = 0.01  # relative pixel-size error allowed when resampling an optics group
NCC_NEAR_ZERO = 0.05  # |NCC| below this for both signs: poses/order/pixel size/map are suspect
SIGN_T = 5.0  # |t| of the mean NCC above which the contrast sign counts as clear
POSE_Z = 5.0  # z of (NCC − shuffled-pose NCC) below which the poses look no better than random
CHUNK_BYTES = 64 * 2**20  # raw image bytes per chunk by default


@dataclass(frozen=True)
class PreprocessConfig:
    """Arguments of ``gaussianem preprocess`` (see the command's help)."""

    particles: Path
    outdir: Path
    map_path: Path
    threshold: float | None = None
    gaussian_interval: int | None = None  # None: 1 voxel (2 for working boxes over 256)
    max_gaussians: int | None = None
    box: int | None = None
    apix: float | None = None
    poses: Path | None = None
    ctf: Path | None = None
    datadir: Path | None = None
    passthrough: list[Path] | None = None  # cryoSPARC: other .cs files joined to the particles by uid
    invert: bool | None = None  # None: decided from the data
    chunk: int | None = None
    drop_bad: bool = False
    overwrite: bool = False
    input_apix: float | None = None  # pixel size of a bare .mrcs/.txt stack without CTF and header pixel size
    n_check: int = 1000
    seed: int = 0
    device: str = "cpu"
    command_line: str = ""


@dataclass
class SourceData:
    """Everything read from the input, one row per input particle (N)."""

    kind: str
    path: Path
    images: ParticleImages
    pixel_size: np.ndarray  # (N,) Å
    rotation: np.ndarray  # (N, 3, 3) RELION A
    shift_angstrom: np.ndarray  # (N, 2) RELION origins in Å
    ctf: dict[str, np.ndarray] | None  # each (N,)
    passthrough: list[str] = field(default_factory=list)  # cryoSPARC files joined to the source by uid

    @property
    def n(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Geometry:
    """Working grid: ``box`` × ``box`` at ``pixel_size``; per input group (box_g, apix_g) -> resampled box."""

    box: int
    pixel_size: float
    original_box: int
    original_pixel_size: float
    resample: dict[tuple[int, float], int]


# ----------------------------------------------------------------------------------------------------------- inputs

def _check_count(what: dict[str, int], source: Path) -> None:
    if len(set(what.values())) > 1:
        raise InputError(f"{source}: count mismatch between " + ", ".join(f"{k} ({v})" for k, v in what.items()))


def _pixel_sizes_or_header(apix: np.ndarray | None, images: ParticleImages, fallback: float | None,
                           source: Path) -> np.ndarray:
    if apix is None:
        header = images.header_pixel_sizes
        if fallback is not None:
            apix = np.full(len(images), float(fallback))
        elif (header > 0).all():
            log.warning("%s: no pixel size in the metadata: using the stacks' MRC headers (%s Å)",
                        source, ", ".join(f"{v:g}" for v in np.unique(header)[:4]))
            apix = header.astype(np.float64)
        else:
            raise InputError(f"{source}: the pixel size is needed but absent (not in the metadata nor the stack "
                             "headers); give --input-apix")
    apix = np.asarray(apix, np.float64)
    if not (np.isfinite(apix).all() and (apix > 0).all()):
        raise InputError(f"{source}: invalid pixel size(s) {np.unique(apix[~(apix > 0)])[:3].tolist()}")
    return apix


def load_source(cfg: PreprocessConfig) -> SourceData:
    """Read a ``.star``, ``.cs``, or ``.mrcs``/``.mrc``/``.txt`` (+ ``--poses``/``--ctf``) input."""
    path = Path(cfg.particles)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    suffix = path.suffix.lower()
    datadir = Path(cfg.datadir) if cfg.datadir is not None else None
    if datadir is not None and not datadir.is_dir():
        raise InputError(f"--datadir {datadir} is not a folder")
    if cfg.passthrough and suffix != ".cs":
        raise InputError(f"--passthrough joins cryoSPARC .cs files; {path.name} is not one")
    for extra in cfg.passthrough or []:
        if not Path(extra).is_file():
            raise InputError(f"--passthrough: file not found: {extra}")
    if suffix in (".star", ".cs") and (cfg.poses is not None or cfg.ctf is not None):
        raise InputError(f"--poses/--ctf apply to .mrcs/.txt stacks; {path.name} carries its own poses and CTF")
    if suffix == ".star":
        st = star.read_star(path)
        df = st.merged()
        index, names = star.image_names(df, path)
        apix = star.pixel_size(df, path)
        images = ParticleImages.from_names(names, index, path, datadir)
        apix = _pixel_sizes_or_header(apix, images, cfg.input_apix, path)
        rotation, shift = star.poses(df, apix, path)
        return SourceData(f"relion-{st.version}", path, images, apix, rotation, shift, star.ctf(df, path))
    if suffix == ".cs":
        cs, joined = cryosparc.read_cs_with_passthrough(path, cfg.passthrough)
        index, names = cryosparc.blob_paths(cs, path)
        images = ParticleImages.from_names(names, index, path, datadir)
        apix = _pixel_sizes_or_header(cryosparc.pixel_size(cs), images, cfg.input_apix, path)
        rotation, shift = cryosparc.poses(cs, path)
        return SourceData("cryosparc", path, images, apix, rotation, shift, cryosparc.ctf(cs, path),
                          [str(Path(j).resolve()) for j in joined])
    if suffix in (".mrcs", ".mrc", ".txt"):
        files = cryodrgn.read_txt_list(path) if suffix == ".txt" else [path]
        images = ParticleImages.from_stacks(files)
        if cfg.poses is None:
            raise InputError(f"{path.name} is a bare stack: give its poses with --poses (cryoDRGN pose .pkl or "
                             "GaussianEM poses.npy)")
        ctf = apix = None
        if cfg.ctf is not None:
            ctf, ctf_box, ctf_apix = cryodrgn.read_ctf(cfg.ctf)
            _check_count({"images": len(images), f"CTF rows in {Path(cfg.ctf).name}": len(ctf_box)}, path)
            # the CTF file's (D, Apix) describe the same field of view as the stack, maybe at another sampling
            apix = ctf_apix * ctf_box / images.box_sizes
        apix = _pixel_sizes_or_header(apix, images, cfg.input_apix, path)
        rotation, shift = cryodrgn.read_poses(cfg.poses, images.box_sizes, apix, len(images))
        kind = "gaussianem-npy" if Path(cfg.poses).suffix == ".npy" else "cryodrgn"
        return SourceData(kind, path, images, apix, rotation, shift, ctf)
    raise InputError(f"{path}: unknown particle input (expected .star, .cs, .mrcs, .mrc or .txt)")


# --------------------------------------------------------------------------------------------------------- geometry

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


def map_origin_angstrom(path: str | Path, voxel: float) -> tuple[float, float, float]:
    """Where a map's voxel 0 sits in the user's (ChimeraX/PDB) frame, (x, y, z) Å: see
    :func:`gaussianem.io.mrc.header_origin_angstrom`."""
    try:
        with mrcfile.open(path, mode="r", header_only=True, permissive=True) as m:
            return header_origin_angstrom(m.header, voxel, path)
    except InputError:
        raise
    except Exception as exc:  # mrcfile raises ValueError/OSError with varied text on damaged headers
        raise InputError(f"{path}: not a readable MRC file ({exc})") from exc


def initial_cloud(cfg: PreprocessConfig, geometry: Geometry) -> tuple[GaussianCloud, dict]:
    """Initial Gaussians from the consensus map above ``--threshold`` (automatic contour when absent)."""
    volume, voxel, _ = read_volume(cfg.map_path)
    if len(set(volume.shape)) != 1:
        raise InputError(f"{cfg.map_path}: the map must be a cube, got shape {volume.shape}")
    if not voxel > 0:
        if volume.shape[0] == geometry.original_box:
            log.warning("%s: no voxel size in the header: assuming the particles' %g Å", cfg.map_path,
                        geometry.original_pixel_size)
            voxel = geometry.original_pixel_size
        else:
            raise InputError(f"{cfg.map_path}: the map's voxel size is needed but absent from its header")
    if not np.any(volume):
        raise InputError(f"{cfg.map_path}: the map is all-zero: no density to place Gaussians in")
    particle_apix = geometry.original_pixel_size
    if abs(voxel - particle_apix) > 0.01 * particle_apix:
        log.warning("%s: the map's voxel size %.4g Å differs from the particles' pixel size %.4g Å by %.1f %%: the "
                    "map is resampled by its own voxel size to the working grid (%.4g Å/px); check both headers if "
                    "this is not what you meant", cfg.map_path, voxel, particle_apix,
                    100 * abs(voxel - particle_apix) / particle_apix, geometry.pixel_size)
    work, work_voxel = resample_map(volume, voxel, geometry)
    threshold = cfg.threshold
    if threshold is None:
        try:
            threshold = automatic_threshold(work)
        except ValueError as exc:
            raise InputError(f"{cfg.map_path}: {exc}") from None
        log.info("automatic contour level %.4g (90%% of the positive density)", threshold)
    try:
        cloud = cloud_from_map(work, work_voxel, threshold, interval=cfg.gaussian_interval,
                               max_gaussians=cfg.max_gaussians)
    except ValueError as exc:
        raise InputError(f"{cfg.map_path}: {exc}") from exc
    origin = map_origin_angstrom(cfg.map_path, voxel)
    info = {"path": str(Path(cfg.map_path).resolve()), "box_size": volume.shape[0], "voxel_size_angstrom": voxel,
            "origin_angstrom": list(origin), "threshold": float(threshold), "n_gaussians": cloud.n,
            "gaussian_interval": cfg.gaussian_interval or (2 if work.shape[0] > 256 else 1),
            "resampled_voxel_size_angstrom": work_voxel}
    return cloud, info


def map_frame(map_info: dict, geometry: Geometry) -> dict:
    """The consensus map's frame for the manifest.

    ``map_origin_angstrom`` (x, y, z) Å of the map's voxel 0, ``map_box``, ``map_apix`` (Å) as read from the map;
    ``working_origin_angstrom``: the MRC origin of the working grid (``box_size`` × ``pixel_size_angstrom``)
    placed so that its voxel ``box_size//2`` (the Gaussians' origin) coincides with the map's voxel ``map_box//2``
    — the value ``TrainConfig.map_origin_angstrom`` and analysis take (analysis puts the frame centre at
    ``origin + (box_size//2)·pixel_size_angstrom``). The two origins are equal when the map and the working grid
    have the same half-extent.
    """
    origin, box, apix = map_info["origin_angstrom"], int(map_info["box_size"]), float(map_info["voxel_size_angstrom"])
    delta = (box // 2) * apix - (geometry.box // 2) * geometry.pixel_size
    return {"map_origin_angstrom": [float(o) for o in origin], "map_box": box, "map_apix": apix,
            "working_origin_angstrom": [float(o) + delta for o in origin]}


# ------------------------------------------------------------------------------------------------------- pose check

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
               user_invert: bool | None, seed: int = 0, device: str | torch.device = "cpu") -> dict:
    """Correlate CTF-filtered projections of ``cloud`` with ``images`` (B, D, D) as stored (not flipped).

    Returns the manifest's ``pose_check``: n_sampled, ncc_as_is, ncc_inverted (= −ncc_as_is),
    ncc_shuffled_poses (baseline: poses/CTFs permuted within the sample), z_pose, t_sign, decision ("as-is" |
    "inverted"), user_choice, warning. Raises InputError when the user's choice contradicts a clear sign.
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
        log.warning("!" * 100)
        log.warning("POSE CHECK: %s", warning)
        log.warning("!" * 100)
    if user is None and not sign_clear:
        log.warning("the contrast sign is unclear (NCC %+.3f, t = %.1f): keeping the images as they are; "
                    "use --invert if the particles are dark", mean, t_sign)
    log.info("pose check on %d particles: NCC %+.3f as-is, %+.3f inverted, %+.3f with shuffled poses -> %s",
             n, mean, -mean, shuffled, decision)
    return {"n_sampled": n, "ncc_as_is": mean, "ncc_inverted": -mean, "ncc_shuffled_poses": shuffled,
            "z_pose": z_pose, "t_sign": t_sign, "decision": decision, "user_choice": user, "warning": warning}


# ---------------------------------------------------------------------------------------------------- particle pass

EXTREME = 1e4  # a pixel further than this many robust standard deviations from its image's median is extreme


def extreme_images(raw: np.ndarray) -> np.ndarray:
    """(B,) bool: images holding a pixel beyond ``EXTREME`` x their robust std (1.4826 MAD) from their median."""
    flat = raw.reshape(len(raw), -1).astype(np.float64)
    med = np.median(flat, axis=1, keepdims=True)
    dev = np.abs(flat - med)
    robust = 1.4826 * np.median(dev, axis=1)
    return (robust > 0) & (dev.max(axis=1) > EXTREME * robust)


def _read_resampled(src: SourceData, rows: np.ndarray, geometry: Geometry, extreme: list | None = None
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


def _create_stack(path: Path, n: int, box: int, apix: float) -> int:
    """Create an (n, box, box) float32 MRC stack (header + sparse data) -> byte offset of the data."""
    with mrcfile.new_mmap(path, shape=(n, box, box), mrc_mode=2, overwrite=True) as m:
        m.set_image_stack()
        m.voxel_size = apix
        return int(m.header.nbytes) + int(m.header.nsymbt)


def _finish_stack(path: Path, stats: dict) -> None:
    with mrcfile.mmap(path, mode="r+") as m:  # header only is touched; the data pages stay unmapped
        m.header.dmin, m.header.dmax = stats["min"], stats["max"]
        m.header.dmean, m.header.rms = stats["mean"], stats["std"]


def _default_chunk(box: int) -> int:
    return max(16, CHUNK_BYTES // (box * box * 4))


def write_particles(src: SourceData, geometry: Geometry, path: Path, flip: bool, chunk: int | None
                    ) -> tuple[np.ndarray, dict]:
    """The chunked pass: every particle to the working grid into ``path``. Returns (finite (N,) bool, stats)."""
    n, d = src.n, geometry.box
    offset = _create_stack(path, n, d, geometry.pixel_size)
    chunk = chunk or _default_chunk(int(src.images.box_sizes.max()))
    finite = np.ones(n, bool)
    s1 = s2 = 0.0
    count = 0
    lo, hi = math.inf, -math.inf
    extreme: list[int] = []
    with open(path, "r+b") as f, tqdm(total=n, unit="particle", desc="preprocess", dynamic_ncols=True) as bar:
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk))
            imgs, ok = _read_resampled(src, rows, geometry, extreme)
            if flip:
                np.negative(imgs, out=imgs)
            finite[rows] = ok
            good = imgs[ok].astype(np.float64)
            if good.size:
                s1 += float(good.sum())
                s2 += float((good * good).sum())
                count += good.size
                lo, hi = min(lo, float(good.min())), max(hi, float(good.max()))
            f.seek(offset + start * d * d * 4)
            f.write(np.ascontiguousarray(imgs, dtype="<f4").tobytes())
            bar.update(len(rows))
    mean = s1 / max(count, 1)
    std = math.sqrt(max(s2 / max(count, 1) - mean * mean, 0.0))
    return finite, {"mean": mean, "std": std, "min": lo if count else 0.0, "max": hi if count else 0.0,
                    "extreme_rows": extreme}


def _compact(path: Path, keep: np.ndarray, geometry: Geometry, chunk: int) -> None:
    """Rewrite ``path`` keeping only the particles ``keep`` (indices), in chunks."""
    tmp = path.with_name(path.name + ".compact.mrcs")
    d = geometry.box
    images = ParticleImages.from_stacks([path])
    offset = _create_stack(tmp, len(keep), d, geometry.pixel_size)
    with open(tmp, "r+b") as f:
        for s in range(0, len(keep), chunk):
            block = images.read(keep[s:s + chunk])
            f.seek(offset + s * d * d * 4)
            f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())
    images.close()
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------------------ main

def _sample_rows(n: int, k: int, seed: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _prepare_outdir(outdir: Path, overwrite: bool) -> None:
    if outdir.exists():
        if not outdir.is_dir():
            raise InputError(f"{outdir} exists and is not a folder")
        if any(outdir.iterdir()) and not overwrite:
            raise InputError(f"{outdir} exists and is not empty (use --overwrite to replace it)")
    outdir.parent.mkdir(parents=True, exist_ok=True)


def preprocess(cfg: PreprocessConfig) -> Path:
    """Run the whole pipeline (module docstring) and return the dataset folder."""
    outdir = Path(cfg.outdir)
    _prepare_outdir(outdir, cfg.overwrite)
    for flag, value in (("--chunk", cfg.chunk), ("--gaussian-interval", cfg.gaussian_interval),
                        ("--max-gaussians", cfg.max_gaussians)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value} must be positive")
    if not Path(cfg.map_path).is_file():
        raise InputError(f"file not found: {cfg.map_path}")
    src = load_source(cfg)
    check_ctf(src.ctf, cfg.ctf or src.path)  # finite and physical, before any work
    counts = {"images": src.n, "poses": len(src.rotation)}
    if src.ctf is not None:
        counts["CTF rows"] = len(src.ctf["defocus_u_angstrom"])
    _check_count(counts, src.path)
    if src.ctf is not None and "bfactor" in src.ctf:
        b = src.ctf["bfactor"]
        if not np.isfinite(b).all():
            raise InputError(f"{src.path}: the CTF B-factors hold non-finite values")
        log.info("CTF B-factors from the input kept in ctf.npz (%.4g to %.4g Å²)", float(b.min()), float(b.max()))
    if src.ctf is not None and "scale" in src.ctf:
        sc = src.ctf["scale"]
        if not (np.isfinite(sc).all() and (sc > 0).all()):
            raise InputError(f"{src.path}: the CTF scale factors must be finite and positive")
        log.info("CTF scale factors from the input kept in ctf.npz (%.4g to %.4g)", float(sc.min()), float(sc.max()))
    if not np.isfinite(src.rotation).all() or not np.isfinite(src.shift_angstrom).all():
        raise InputError(f"{src.path}: poses hold non-finite values")
    geometry = plan_geometry(src.images.box_sizes, src.pixel_size, cfg.box, cfg.apix)
    log.info("working grid: box %d at %.4g Å/px (input box %d at %.4g Å/px)", geometry.box, geometry.pixel_size,
             geometry.original_box, geometry.original_pixel_size)
    cloud, map_info = initial_cloud(cfg, geometry)

    rows = _sample_rows(src.n, cfg.n_check, cfg.seed)
    sample, ok = _read_resampled(src, rows, geometry)
    rows, sample = rows[ok], sample[ok]
    if len(rows) == 0:
        raise InputError(f"{src.path}: every sampled particle holds non-finite pixels")
    ctf_s = None if src.ctf is None else {k: v[rows] for k, v in src.ctf.items()}
    check = pose_check(sample, src.rotation[rows], src.shift_angstrom[rows], ctf_s, cloud, geometry.box,
                       geometry.pixel_size, cfg.invert, cfg.seed, cfg.device)
    del sample
    flip = check["decision"] == "inverted"

    tmp = staging_path(outdir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        finite, stats = write_particles(src, geometry, tmp / PARTICLES, flip, cfg.chunk)
        n_bad = int((~finite).sum())
        keep = np.nonzero(finite)[0]
        hot = sorted(stats.pop("extreme_rows"))
        n_nonfinite = n_bad - len(hot)
        reasons = []
        if n_nonfinite:
            first = int(np.setdiff1d(np.nonzero(~finite)[0], hot)[0])
            reasons.append(f"{n_nonfinite} particle image(s) hold non-finite pixels (e.g. input row {first})")
        if hot:
            reasons.append(f"{len(hot)} particle image(s) hold extreme pixels, beyond {EXTREME:g} x the image's "
                           f"robust std (e.g. input row {hot[0]})")
        if n_bad and not cfg.drop_bad:
            raise InputError(f"{src.path}: {'; '.join(reasons)}; --drop-bad removes them")
        if n_bad:
            log.warning("dropping %s", "; ".join(reasons))
            _compact(tmp / PARTICLES, keep, geometry, cfg.chunk or _default_chunk(geometry.box))
        _finish_stack(tmp / PARTICLES, stats)
        write_poses(tmp, src.rotation[keep], src.shift_angstrom[keep])
        if src.ctf is not None:
            write_ctf(tmp, {k: v[keep] for k, v in src.ctf.items()})
        np.save(tmp / SOURCE_INDEX, keep.astype(np.int64))
        cloud.to_ply(tmp / GAUSSIANS_INIT)
        groups = [{"box_size": k[0], "pixel_size_angstrom": k[1], "resampled_box_size": v,
                   "n_particles": int(((src.images.box_sizes == k[0]) & (src.pixel_size == k[1])).sum())}
                  for k, v in geometry.resample.items()]
        manifest = {
            "format": "gaussianem-dataset", "version": 1, "gaussianem_version": __version__,
            "n_particles": len(keep), "box_size": geometry.box, "pixel_size_angstrom": geometry.pixel_size,
            "original_box_size": geometry.original_box, "original_pixel_size_angstrom": geometry.original_pixel_size,
            "input_groups": groups, "contrast": check["decision"], "image_std": stats["std"],
            "image_mean": stats["mean"], "image_stats_over": "all particles",
            "source_path": str(src.path.resolve()), "source_kind": src.kind, "n_source_rows": src.n,
            **({"source_passthrough": src.passthrough} if src.passthrough else {}),
            "has_ctf": src.ctf is not None, "pose_check": check, "map": map_info, **map_frame(map_info, geometry),
            "dropped": {"n": n_bad, "reason": "non-finite pixels" if not hot else
                        "non-finite or extreme pixels" if n_nonfinite else "extreme pixels",
                        "source_rows": np.nonzero(~finite)[0].tolist()[:10000]},
            "poses_file": str(Path(cfg.poses).resolve()) if cfg.poses else None,
            "ctf_file": str(Path(cfg.ctf).resolve()) if cfg.ctf else None,
            "command_line": cfg.command_line,
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        fsync_tree(tmp)
        install(tmp, outdir, overwrite=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        with contextlib.suppress(Exception):
            src.images.close()
    log.info("dataset written to %s: %d particles, box %d, %.4g Å/px, contrast %s", outdir, len(keep),
             geometry.box, geometry.pixel_size, check["decision"])
    return outdir
