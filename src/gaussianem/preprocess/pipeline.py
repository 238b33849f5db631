"""The ``preprocess`` orchestration: read, plan the grid, sample the initial Gaussians, check poses and contrast,
write the dataset (see the package docstring for the steps)."""

from __future__ import annotations

import logging
from pathlib import Path

from gaussianem.errors import InputError
from gaussianem.io.files import existing_file
from gaussianem.preprocess.cloud_size import warn_training_cost
from gaussianem.preprocess.config import PreprocessConfig
from gaussianem.preprocess.consensus import initial_cloud
from gaussianem.preprocess.geometry import plan_geometry
from gaussianem.preprocess.pixel_check import check_pixel_size
from gaussianem.preprocess.pose_check import check_sample
from gaussianem.preprocess.readers import check_source, load_source
from gaussianem.preprocess.subset import keep_rows
from gaussianem.preprocess.writer import prepare_outdir, write_dataset

log = logging.getLogger(__name__)


def _check_options(cfg: PreprocessConfig) -> None:
    for flag, value in (("--chunk", cfg.chunk), ("--gaussian-interval", cfg.gaussian_interval),
                        ("--max-gaussians", cfg.max_gaussians)):
        if value is not None and value < 1:
            raise InputError(f"{flag} {value} must be positive")
    existing_file(cfg.map_path)


def preprocess(cfg: PreprocessConfig) -> Path:
    """Run the whole pipeline (package docstring) and return the dataset folder."""
    outdir = Path(cfg.outdir)
    prepare_outdir(outdir, cfg.overwrite)
    _check_options(cfg)
    src = keep_rows(load_source(cfg), cfg.ind)
    check_source(src)
    geometry = plan_geometry(src.images.box_sizes, src.pixel_size, cfg.box, cfg.apix)
    log.info("working grid: box %d at %.4g Å/px (input box %d at %.4g Å/px)", geometry.box, geometry.pixel_size,
             geometry.original_box, geometry.original_pixel_size)
    cloud, map_info = initial_cloud(cfg, geometry)
    check = check_sample(src, geometry, cloud, cfg)
    pixel = check_pixel_size(src, geometry, cfg, map_info, check)
    if pixel is not None:
        check["pixel_size_check"] = pixel
    map_info["cloud_size"]["warnings"] = warn_training_cost(cloud.n, geometry.box, src.n, cfg.device)
    n_kept = write_dataset(cfg, src, geometry, cloud, map_info, check)
    log.info("dataset written to %s: %d particles, box %d, %.4g Å/px, contrast %s", outdir, n_kept,
             geometry.box, geometry.pixel_size, check["decision"])
    return outdir
