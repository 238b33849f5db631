"""The consensus map: its frame (origin in the user's coordinates) and the initial Gaussians sampled from it on
the working grid."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud, automatic_threshold, cloud_from_map, map_background
from gaussianem.io.mrc import map_origin_angstrom, read_volume
from gaussianem.preprocess.cloud_size import plan_cloud
from gaussianem.preprocess.config import PreprocessConfig
from gaussianem.preprocess.geometry import Geometry, resample_map

log = logging.getLogger(__name__)


def _read_map(cfg: PreprocessConfig, geometry: Geometry) -> tuple[np.ndarray, float]:
    """The consensus map (D, D, D) and its voxel size in Å (the particles' when the header gives none)."""
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
    return volume, voxel


def initial_cloud(cfg: PreprocessConfig, geometry: Geometry, voxel_override: float | None = None
                  ) -> tuple[GaussianCloud, dict]:
    """Initial Gaussians from the consensus map above ``--threshold`` (automatic contour when absent), with the
    default cloud size of :mod:`.cloud_size`. ``voxel_override`` reads the map at another voxel size (the pixel
    check's alternative)."""
    volume, voxel = _read_map(cfg, geometry)
    header_voxel = voxel
    voxel = voxel_override or voxel
    particle_apix = geometry.original_pixel_size
    if voxel_override is None and abs(voxel - particle_apix) > 0.01 * particle_apix:
        log.warning("%s: the map's voxel size %.4g Å differs from the particles' pixel size %.4g Å by %.1f %%: the "
                    "map is resampled by its own voxel size to the working grid (%.4g Å/px); check both headers if "
                    "this is not what you meant", cfg.map_path, voxel, particle_apix,
                    100 * abs(voxel - particle_apix) / particle_apix, geometry.pixel_size)
    background = map_background(volume)
    if background:
        log.info("%s: solvent level %.4g (median of the box faces) taken as zero density", cfg.map_path, background)
    work, work_voxel = resample_map(volume - np.float32(background), voxel, geometry)
    threshold = None if cfg.threshold is None else cfg.threshold - background
    if threshold is None:
        try:
            threshold = automatic_threshold(work)
        except ValueError as exc:
            raise InputError(f"{cfg.map_path}: {exc}") from None
        log.info("automatic contour level %.4g (90%% of the density above the solvent)", threshold + background)
    plan = plan_cloud(work, work_voxel, threshold, cfg.gaussian_interval, cfg.max_gaussians)
    try:
        cloud = cloud_from_map(work, work_voxel, threshold, interval=plan.interval, max_gaussians=plan.max_gaussians)
    except ValueError as exc:
        raise InputError(f"{cfg.map_path}: {exc}") from exc
    origin = map_origin_angstrom(cfg.map_path, header_voxel)
    info = {"path": str(Path(cfg.map_path).resolve()), "box_size": volume.shape[0], "voxel_size_angstrom": voxel,
            "origin_angstrom": list(origin), "threshold": float(threshold + background), "n_gaussians": cloud.n,
            "gaussian_interval": plan.interval, "cloud_size": plan.record, "background": background,
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
