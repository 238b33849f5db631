"""The writer: one chunked pass over the particles (tqdm bar) into the dataset folder.

Each chunk is read, checked for finiteness, resampled to the working grid, flipped if the data are dark and
written into ``particles.mrcs`` by positioned writes, accumulating image statistics. Poses, CTF, source index, the
initial Gaussians and the manifest follow. Everything is written into a hidden temporary folder beside OUTDIR and
renamed into place at the end: an error leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gaussianem import __version__
from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud
from gaussianem.io.dataset import GAUSSIANS_INIT, MANIFEST, PARTICLES, SOURCE_INDEX, write_ctf, write_poses
from gaussianem.io.mrc import ImageStats, create_stack, write_stack_rows, write_stack_stats
from gaussianem.io.particles import ParticleImages
from gaussianem.io.staging import as_final, fsync_tree, install, staging_path
from gaussianem.io.writes import write_json_atomic
from gaussianem.preprocess.config import PreprocessConfig
from gaussianem.preprocess.consensus import map_frame
from gaussianem.preprocess.geometry import EXTREME, Geometry, read_resampled
from gaussianem.preprocess.readers import SourceData
from gaussianem.progress import bar_disabled

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 2**20  # raw image bytes per chunk by default


def _default_chunk(box: int) -> int:
    return max(16, CHUNK_BYTES // (box * box * 4))


def write_particles(src: SourceData, geometry: Geometry, path: Path, flip: bool, chunk: int | None
                    ) -> tuple[np.ndarray, dict]:
    """The chunked pass: every particle to the working grid into ``path``. Returns (finite (N,) bool, stats)."""
    n, d = src.n, geometry.box
    offset = create_stack(path, n, d, geometry.pixel_size)
    chunk = chunk or _default_chunk(int(src.images.box_sizes.max()))
    finite = np.ones(n, bool)
    stats = ImageStats()
    extreme: list[int] = []
    with open(path, "r+b") as f, tqdm(total=n, unit="particle", desc="preprocess", dynamic_ncols=True,
                                         disable=bar_disabled()) as bar:
        for start in range(0, n, chunk):
            rows = np.arange(start, min(n, start + chunk))
            imgs, ok = read_resampled(src, rows, geometry, extreme)
            if flip:
                np.negative(imgs, out=imgs)
            finite[rows] = ok
            stats.add(imgs[ok])
            write_stack_rows(f, offset, start, imgs)
            bar.update(len(rows))
    return finite, {**stats.result(), "extreme_rows": extreme}


def _compact(path: Path, keep: np.ndarray, geometry: Geometry, chunk: int) -> None:
    """Rewrite ``path`` keeping only the particles ``keep`` (indices), in chunks."""
    tmp = path.with_name(path.name + ".compact.mrcs")
    images = ParticleImages.from_stacks([path])
    offset = create_stack(tmp, len(keep), geometry.box, geometry.pixel_size)
    with open(tmp, "r+b") as f:
        for s in range(0, len(keep), chunk):
            write_stack_rows(f, offset, s, images.read(keep[s:s + chunk]))
    images.close()
    os.replace(tmp, path)


def prepare_outdir(outdir: Path, overwrite: bool) -> None:
    """Refuse an OUTDIR that is a file, or a non-empty folder without ``--overwrite``; create its parent."""
    if outdir.exists():
        if not outdir.is_dir():
            raise InputError(f"{outdir} exists and is not a folder")
        if any(outdir.iterdir()) and not overwrite:
            raise InputError(f"{outdir} exists and is not empty (use --overwrite to replace it)")
    outdir.parent.mkdir(parents=True, exist_ok=True)


def _manifest(cfg: PreprocessConfig, src: SourceData, geometry: Geometry, check: dict, map_info: dict,
              stats: dict, finite: np.ndarray) -> dict:
    """``dataset.json`` (the fields are listed in :mod:`gaussianem.io.dataset`)."""
    groups = [{"box_size": k[0], "pixel_size_angstrom": k[1], "resampled_box_size": v,
               "n_particles": int(((src.images.box_sizes == k[0]) & (src.pixel_size == k[1])).sum())}
              for k, v in geometry.resample.items()]
    return {
        "format": "gaussianem-dataset", "version": 1, "gaussianem_version": __version__,
        "n_particles": int(finite.sum()), "box_size": geometry.box, "pixel_size_angstrom": geometry.pixel_size,
        "original_box_size": geometry.original_box, "original_pixel_size_angstrom": geometry.original_pixel_size,
        "input_groups": groups, "contrast": check["decision"], "image_std": stats["std"],
        "image_mean": stats["mean"], "image_stats_over": "all particles",
        "source_path": str(src.path.resolve()), "source_kind": src.kind, "n_source_rows": src.n,
        **({"source_passthrough": src.passthrough} if src.passthrough else {}),
        "has_ctf": src.ctf is not None, "pose_check": check, "map": map_info, **map_frame(map_info, geometry),
        "dropped": {"n": int((~finite).sum()), "reason": stats.get("drop_reason", "non-finite pixels"),
                    "source_rows": np.nonzero(~finite)[0].tolist()[:10000]},
        "poses_file": str(Path(cfg.poses).resolve()) if cfg.poses else None,
        "ctf_file": str(Path(cfg.ctf).resolve()) if cfg.ctf else None,
        "command_line": cfg.command_line,
    }


def write_dataset(cfg: PreprocessConfig, src: SourceData, geometry: Geometry, cloud: GaussianCloud,
                  map_info: dict, check: dict) -> int:
    """Write the dataset folder OUTDIR atomically (module docstring); returns the number of particles kept."""
    outdir = Path(cfg.outdir)
    flip = check["decision"] == "inverted"
    tmp = staging_path(outdir)  # .OUTDIR.staging-PID: removed on failure, or by the next run if this one is killed
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
            stats["drop_reason"] = "non-finite or extreme pixels" if n_nonfinite else "extreme pixels"
        if n_bad and not cfg.drop_bad:
            raise InputError(f"{src.path}: {'; '.join(reasons)}; --drop-bad removes them")
        if n_bad:
            log.warning("dropping %s", "; ".join(reasons))
            _compact(tmp / PARTICLES, keep, geometry, cfg.chunk or _default_chunk(geometry.box))
        write_stack_stats(tmp / PARTICLES, stats)
        write_poses(tmp, src.rotation[keep], src.shift_angstrom[keep])
        if src.ctf is not None:
            write_ctf(tmp, {k: v[keep] for k, v in src.ctf.items()})
        np.save(tmp / SOURCE_INDEX, (keep if src.rows is None else src.rows[keep]).astype(np.int64))
        cloud.to_ply(tmp / GAUSSIANS_INIT)
        write_json_atomic(tmp / MANIFEST, _manifest(cfg, src, geometry, check, map_info, stats, finite))
        fsync_tree(tmp)
        install(tmp, outdir, overwrite=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        renamed = as_final(exc, tmp, outdir)  # name OUTDIR/..., not the staging folder
        if renamed is not exc:
            raise renamed from None
        raise
    finally:
        with contextlib.suppress(Exception):
            src.images.close()
    return len(keep)
