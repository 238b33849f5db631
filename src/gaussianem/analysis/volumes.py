"""Latent points -> Gaussian clouds -> volumes on a grid, with the frame kept right.

Frames. Gaussians live in Å with the origin at the centre of the working box. The consensus map the user
refined sits, in ChimeraX/PDB coordinates, with its voxel 0 at the MRC header origin (0 for RELION maps), so
the box centre is at ``centre = map_origin + (D//2)·apix``. Every file we write lives in that user frame:

* a volume of box D' and voxel a' gets the header origin ``centre - (D'//2)·a'`` (voxel ``i`` <-> Gaussian-frame
  coordinate ``(i - D'//2)·a'``, the package convention), so all our maps overlay the consensus map;
* pseudo-atomic models are written at ``gaussian_position + centre``; a user's atomic model maps to the Gaussian
  frame by ``x - centre``.

``centre`` comes from the run's config: ``map_origin_angstrom`` (if the training config or dataset recorded the
consensus map's origin; default (0, 0, 0)) plus half the working box.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from gaussianem.errors import InputError
from gaussianem.physics.projection import voxelize_gaussians

log = logging.getLogger(__name__)


class DecoderLike(Protocol):
    """What analysis needs of a trained model."""

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z (B, zdim) -> positions (B, G, 3) Å, widths (B, G) Å, amplitudes (B, G)."""
        ...


def config_value(config: dict[str, Any], key: str, default: Any = None) -> Any:
    """Look ``key`` up at the top of the config, then in nested sections (first match, breadth first)."""
    queue: list[dict] = [config]
    while queue:
        d = queue.pop(0)
        if key in d and d[key] is not None:
            return d[key]
        queue.extend(v for v in d.values() if isinstance(v, dict))
    return default


@dataclass(frozen=True)
class VolumeGrid:
    """A cubic sampling grid: box D, voxel size, and where the Gaussian-frame origin sits in the user frame."""

    box_size: int
    pixel_size_angstrom: float
    centre_angstrom: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def origin_angstrom(self) -> tuple[float, float, float]:
        """MRC header origin (x, y, z) Å: the user-frame coordinate of voxel 0."""
        h = (self.box_size // 2) * self.pixel_size_angstrom
        return tuple(float(c - h) for c in self.centre_angstrom)  # type: ignore[return-value]

    @property
    def extent_angstrom(self) -> float:
        return self.box_size * self.pixel_size_angstrom


def working_grid(config: dict[str, Any]) -> VolumeGrid:
    """The training (working) grid of a run, from its config (``box_size``, ``pixel_size_angstrom``)."""
    box = config_value(config, "box_size")
    apix = config_value(config, "pixel_size_angstrom")
    if box is None or apix is None:
        raise InputError("the run's config.yaml lacks box_size / pixel_size_angstrom: cannot place volumes")
    box, apix = int(box), float(apix)
    origin = config_value(config, "map_origin_angstrom", (0.0, 0.0, 0.0))
    centre = tuple(float(o) + (box // 2) * apix for o in origin)
    return VolumeGrid(box, apix, centre)  # type: ignore[arg-type]


def output_grid(working: VolumeGrid, box: int | None = None, apix: float | None = None) -> VolumeGrid:
    """The grid volumes are written on: the working grid, or ``--box``/``--apix`` (one given keeps the extent).

    Raises InputError for non-positive values.
    """
    if box is not None and box <= 0:
        raise InputError(f"--box must be positive, got {box}")
    if apix is not None and apix <= 0:
        raise InputError(f"--apix must be positive, got {apix}")
    if box is None and apix is None:
        return working
    if apix is None:
        apix = working.extent_angstrom / box
    if box is None:
        box = int(round(working.extent_angstrom / apix / 2)) * 2
    return VolumeGrid(int(box), float(apix), working.centre_angstrom)


def state_names(n: int, prefix: str = "vol", suffix: str = ".mrc") -> list[str]:
    """``prefix_000.suffix`` ...: zero-padded so that a plain and a natural sort give the request order."""
    width = max(3, len(str(max(n - 1, 0))))
    return [f"{prefix}_{i:0{width}d}{suffix}" for i in range(n)]


def decode_batches(
    model: DecoderLike, z: np.ndarray, batch_size: int = 64, device: torch.device | str = "cpu",
    progress: bool = False, desc: str = "decode",
) -> Iterator[tuple[slice, np.ndarray, np.ndarray, np.ndarray]]:
    """Decode z (N, zdim) in chunks -> yields (rows, positions (b, G, 3), widths (b, G), amplitudes (b, G)) numpy."""
    from tqdm.auto import tqdm

    from gaussianem.progress import bar_disabled

    n = len(z)
    dtype = _model_dtype(model)
    bar = tqdm(total=n, desc=desc, unit="pt", disable=bar_disabled(progress), leave=False)
    with torch.no_grad():
        # the Gaussian embedding does not depend on z: compute it once when the model lets us pass it in
        kwargs = {}
        if callable(getattr(model, "embed", None)) and "embedding" in inspect.signature(model.decode).parameters:
            kwargs["embedding"] = model.embed()
        for start in range(0, n, batch_size):
            rows = slice(start, min(n, start + batch_size))
            zt = torch.as_tensor(np.asarray(z[rows]), dtype=dtype, device=device)
            pos, wid, amp = model.decode(zt, **kwargs)
            bar.update(rows.stop - rows.start)
            yield rows, pos.detach().cpu().double().numpy(), wid.detach().cpu().double().numpy(), \
                amp.detach().cpu().double().numpy()
    bar.close()


def decode_points(
    model: DecoderLike, z: np.ndarray, batch_size: int = 64, device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode a few latent points (N, zdim) -> positions (N, G, 3), widths (N, G), amplitudes (N, G)."""
    parts = list(decode_batches(model, np.atleast_2d(z), batch_size, device))
    return tuple(np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))  # type: ignore[return-value]


def render_volume(
    positions: np.ndarray, widths: np.ndarray, amplitudes: np.ndarray, grid: VolumeGrid,
    device: torch.device | str = "cpu", tile: int = 32, cutoff_sigmas: float = 5.0,
) -> np.ndarray:
    """One cloud (G, 3), (G,), (G,) in the Gaussian frame -> float32 volume (D, D, D) ``[z, y, x]`` on ``grid``.

    Boxes larger than ``tile`` are rendered tile by tile with :func:`voxelize_gaussians`, each tile from the
    Gaussians within ``cutoff_sigmas`` σ of it (contributions beyond 5σ are below 4e-6 of a Gaussian's peak):
    the cost falls from O(D³·G) to about O(D³·G / tiles) with the same values.
    """
    d, apix = grid.box_size, grid.pixel_size_angstrom
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
    if d <= tile or len(positions) == 0:
        vol = voxelize_gaussians(t(positions), t(widths), t(amplitudes), d, apix)
        return vol.cpu().numpy().astype(np.float32)
    pos, wid, amp = (np.asarray(a, np.float64) for a in (positions, widths, amplitudes))
    reach = cutoff_sigmas * wid  # (G,)
    out = np.zeros((d, d, d), np.float32)
    starts = list(range(0, d, tile))
    with single_cpu_thread(device):
        _render_tiles(out, pos, wid, amp, reach, starts, tile, d, apix, t)
    return out


@contextlib.contextmanager
def single_cpu_thread(device: torch.device | str) -> Iterator[None]:
    """One intra-op torch thread for loops of small CPU ops (on a busy machine, OpenMP barriers between small ops
    cost far more than the parallelism gains); restored afterwards. No effect for CUDA devices."""
    if torch.device(device).type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _render_tiles(out, pos, wid, amp, reach, starts, tile, d, apix, t) -> None:
    for z0 in starts:
        for y0 in starts:
            for x0 in starts:
                lo = np.array([x0, y0, z0])
                size = np.minimum(tile, d - lo)
                # tile voxels lo..lo+size-1 on axes (x, y, z); a local box of `tile` centred at index lo + tile//2
                centre = (lo + tile // 2 - d // 2) * apix
                first = (lo - d // 2) * apix
                last = (lo + size - 1 - d // 2) * apix
                near = np.all((pos + reach[:, None] >= first) & (pos - reach[:, None] <= last), axis=1)
                if not near.any():
                    continue
                v = voxelize_gaussians(t(pos[near] - centre), t(wid[near]), t(amp[near]), tile, apix)
                out[z0:z0 + size[2], y0:y0 + size[1], x0:x0 + size[0]] = \
                    v[: size[2], : size[1], : size[0]].cpu().numpy()


def base_cloud_arrays(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's base (consensus) cloud -> positions (G, 3), widths (G,), amplitudes (G,) numpy float64."""
    cloud = model.base_cloud
    pos, wid, amp = cloud.physical() if hasattr(cloud, "physical") else cloud
    return tuple(torch.as_tensor(t).detach().cpu().double().numpy() for t in (pos, wid, amp))  # type: ignore


def _model_dtype(model: Any) -> torch.dtype:
    try:
        return next(model.parameters()).dtype  # type: ignore[union-attr]
    except (AttributeError, StopIteration, TypeError):
        return torch.float32
