"""A pixel-size mismatch between the consensus map and the particles, told by the pose check.

When the map's voxel size and the particles' pixel size differ by more than ``MISMATCH`` and the pose check
fails, the check is repeated on the same sample under two hypotheses: the particles are at the map's voxel size
(their pixel size, CTF sampling and shifts in pixels rescaled), or the map is at the particles' pixel size. If one
passes the check and correlates far better (``BETTER``), preprocess stops and names the remedy (``--input-apix``
when the particles' pixel size came from the MRC headers, the star/cs metadata or the map header otherwise).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator

from gaussianem.errors import InputError
from gaussianem.preprocess.config import PreprocessConfig
from gaussianem.preprocess.consensus import initial_cloud
from gaussianem.preprocess.geometry import Geometry, plan_geometry
from gaussianem.preprocess.pose_check import check_sample
from gaussianem.preprocess.readers import SourceData

log = logging.getLogger(__name__)

MISMATCH = 0.03  # relative difference of the two pixel sizes that makes a failed pose check suspect them
BETTER = 2.0  # the rescaled reading must correlate at least this many times better (and by 0.1)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No INFO lines while an alternative reading is tried (its cloud, contour and check are not the dataset's)."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _particles_at(src: SourceData, cfg: PreprocessConfig, ratio: float) -> tuple[SourceData, Geometry] | None:
    """Hypothesis 1: the particles' pixel sizes are ``ratio`` times larger (shifts, kept in pixels, scale too)."""
    alt = dataclasses.replace(src, pixel_size=src.pixel_size * ratio, shift_angstrom=src.shift_angstrom * ratio)
    try:
        return alt, plan_geometry(src.images.box_sizes, alt.pixel_size, cfg.box, None)
    except InputError:
        return None


def _alternatives(src: SourceData, geometry: Geometry, cfg: PreprocessConfig, voxel: float) -> dict[str, float]:
    """|NCC| of the pose check (None when it fails) under each hypothesis: "particles" (they are at the map's
    voxel size), "map" (the map is at the particles' pixel size)."""
    apix = geometry.original_pixel_size
    plain = dataclasses.replace(cfg, invert=None)
    out: dict[str, float] = {}
    with _quiet():
        moved = _particles_at(src, cfg, voxel / apix)
        if moved is not None:
            cloud, _ = initial_cloud(cfg, moved[1])
            check = check_sample(moved[0], moved[1], cloud, plain, quiet=True)
            out["particles"] = abs(check["ncc_as_is"]) if check["warning"] is None else 0.0
        cloud, _ = initial_cloud(cfg, geometry, voxel_override=apix)
        check = check_sample(src, geometry, cloud, plain, quiet=True)
        out["map"] = abs(check["ncc_as_is"]) if check["warning"] is None else 0.0
    return out


def _remedy(src: SourceData, hypothesis: str, map_voxel: float, particle_apix: float) -> str:
    where = {"MRC headers": "the stacks' MRC headers", "--input-apix": "--input-apix",
             "metadata": src.path.name}[src.pixel_size_from]
    if hypothesis == "map":
        return (f"the map fits when read at {particle_apix:.4g} Å/voxel: correct the voxel size in its header "
                f"(e.g. ChimeraX: volume #1 voxelSize {particle_apix:.4g}; save map.mrc)")
    fix = (f"correct the pixel size in {src.path.name}" if src.pixel_size_from == "metadata"
           else f"give --input-apix {map_voxel:.4g}")
    return f"the particles fit at {map_voxel:.4g} Å/px, not the {particle_apix:.4g} Å/px of {where}: {fix}"


def check_pixel_size(src: SourceData, geometry: Geometry, cfg: PreprocessConfig, map_info: dict, check: dict
                     ) -> dict | None:
    """After a failed pose check with mismatched pixel sizes: refuse (InputError) when either hypothesis
    (module docstring) fits far better. Returns the numbers tried (for the manifest) or None."""
    voxel, apix = float(map_info["voxel_size_angstrom"]), geometry.original_pixel_size
    if check["warning"] is None or abs(voxel - apix) <= MISMATCH * apix:
        return None
    log.info("pose check failed with the map at %.4g Å/voxel and the particles at %.4g Å/px: trying them at one "
             "pixel size", voxel, apix)
    ncc = abs(check["ncc_as_is"])
    tried = _alternatives(src, geometry, cfg, voxel)
    best = max(tried, key=tried.get)
    result = {"map_voxel_angstrom": voxel, "particle_pixel_angstrom": apix, "ncc_as_given": ncc,
              **{f"ncc_if_{k}_wrong": v for k, v in tried.items()}}
    if tried[best] >= max(BETTER * ncc, ncc + 0.1):
        raise InputError(f"pixel-size mismatch between the map ({voxel:.4g} Å/voxel) and the particles "
                         f"({apix:.4g} Å/px): pose-check NCC {tried[best]:.3f} at one pixel size vs {ncc:.3f} as "
                         f"given; {_remedy(src, best, voxel, apix)}")
    log.info("neither pixel size fits better (NCC %s vs %.3f as given)",
             ", ".join(f"{v:.3f}" for v in tried.values()), ncc)
    return result
