"""Footprint projection ("splatting") of isotropic 2-D Gaussians into images, by tiles.

The dense separable projector (:func:`gaussianem.physics.projection.project_gaussians`) evaluates every Gaussian
on every pixel: 2·B·G·D² multiply-adds. A Gaussian of width σ ≤ a few pixels touches only a few tiles. Here the
image is cut into ``tile`` × ``tile`` pixel tiles; a Gaussian is evaluated on every pixel of each tile that its
square footprint ``|x - p_x| ≤ c·σ, |y - p_y| ≤ c·σ`` overlaps (c = ``cutoff_sigmas``), and on no other pixel.

Truncation bound: a pixel a Gaussian skips lies more than c·σ from its centre along x or y, so each skipped
value is below ``exp(-c²/2)`` times that Gaussian's peak ``a·√(2π)·σ`` (:func:`truncation_error_bound`; c = 5:
3.7e-6, c = 4: 3.4e-4).

Pieces:
* :func:`splat_reference`: plain torch, the dense (B, G, D, D) sum masked to the same tiles (any device, small
  sizes; equals the dense projector when the cutoff is large);
* :func:`splat_gaussians`: the Triton kernels (forward and backward, a ``torch.autograd.Function``), Gaussians
  binned to tiles per image with torch ops (sort by tile id, cumulative counts) as 3DGS rasterisers do;
* :func:`project_gaussians_splat`: drop-in for ``project_gaussians`` that uses the kernel on CUDA when Triton is
  installed and the dense separable projector elsewhere.

Conventions as :mod:`gaussianem.physics.projection`: centres (B, G, 2) Å as (x, y) in the image frame (after
:func:`projected_centres`), pixel ``i`` at ``(i - D//2) · pixel_size``, images ``[b, y, x]``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from gaussianem.physics.projection import project_gaussians, projected_centres
from gaussianem.physics.splat_kernels import triton

if triton is not None:
    from gaussianem.physics.splat_kernels import bin_gaussians_triton, splat_forward
else:  # pragma: no cover - depends on the install
    bin_gaussians_triton = splat_forward = None

DEFAULT_CUTOFF_SIGMAS = 5.0
DEFAULT_TILE = 16
_SQRT_2PI = math.sqrt(2 * math.pi)


@dataclass(frozen=True)
class KernelConfig:
    """Launch settings of the tile kernels (speed only: every setting computes the same images to float32
    rounding). ``block_g``: list entries per inner step; ``num_warps``: warps per program; ``chunk``: list entries
    per program; ``precision``: ``tl.dot`` input precision (None: :func:`default_precision`); ``stages``: software
    pipelining depth of the inner loop (0: none); ``packed``: 1 hands the kernels each Gaussian's four pixel-frame
    values side by side (one (B·G, 4) array: one memory sector per gathered Gaussian instead of four), 0 as four
    arrays."""

    block_g: int = 64
    num_warps: int = 2
    chunk: int = 256
    precision: str | None = None
    stages: int = 2
    packed: int = 0


KERNEL_CONFIG_ENV = "GAUSSIANEM_SPLAT_KERNEL"


def kernel_config() -> KernelConfig:
    """The kernels' launch settings: :class:`KernelConfig`'s defaults, overridden by ``$GAUSSIANEM_SPLAT_KERNEL``
    (``"block_g=64,num_warps=4,chunk=512,precision=ieee,stages=2"``; for tuning runs,
    benchmarks/speed/splat_tune.py)."""
    text = os.environ.get(KERNEL_CONFIG_ENV, "").strip()
    if not text:
        return KernelConfig()
    values: dict = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in KernelConfig.__dataclass_fields__ or not value:
            raise ValueError(f"${KERNEL_CONFIG_ENV}: cannot read {item!r} (fields: "
                             f"{', '.join(KernelConfig.__dataclass_fields__)})")
        values[key] = value.strip() if key == "precision" else int(value)
    return KernelConfig(**values)


def truncation_error_bound(cutoff_sigmas: float) -> float:
    """Upper bound of one skipped pixel value relative to its Gaussian's peak: ``exp(-c²/2)``."""
    return math.exp(-0.5 * cutoff_sigmas**2)


def triton_available(device: torch.device | str | None = None) -> bool:
    """Whether the Triton kernels can run for tensors on ``device`` (CUDA with Triton, or Triton's interpreter)."""
    if triton is None:
        return False
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True
    dev = torch.device(device) if device is not None else None
    return dev is not None and dev.type == "cuda" and torch.cuda.is_available()


# ---- shared geometry --------------------------------------------------------------------------------------------
def _broadcast_bg(x: Tensor, batch: int) -> Tensor:
    return (x if x.ndim == 2 else x[None]).expand(batch, -1)


def pixel_frame(centres: Tensor, widths: Tensor, amplitudes: Tensor, box_size: int,
                pixel_size_angstrom: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Å quantities -> pixel-frame quantities, all (B, G) and differentiable.

    Returns ``ux, uy`` (centres in pixel indices: ``c / pixel_size + D//2``), ``inv2s2 = 1 / (2 σ_px²)`` and the
    peak weight ``w = a·√(2π)·σ`` (σ in Å, as the dense projector)."""
    batch = centres.shape[0]
    sig = _broadcast_bg(widths, batch)
    amp = _broadcast_bg(amplitudes, batch)
    half = box_size // 2
    ux = centres[..., 0] / pixel_size_angstrom + half
    uy = centres[..., 1] / pixel_size_angstrom + half
    s_px = sig / pixel_size_angstrom
    return ux, uy, 0.5 / s_px**2, amp * sig * _SQRT_2PI


def tile_ranges(ux: Tensor, uy: Tensor, sigma_px: Tensor, box_size: int, tile: int,
                cutoff_sigmas: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The tiles each Gaussian's footprint overlaps (no gradient): tx0, tx1, ty0, ty1 (B, G) int64, inclusive,
    and valid (B, G) bool (False when the footprint misses the image)."""
    with torch.no_grad():
        r = cutoff_sigmas * sigma_px
        lo_x, hi_x = torch.ceil(ux - r), torch.floor(ux + r)
        lo_y, hi_y = torch.ceil(uy - r), torch.floor(uy + r)
        last = box_size - 1
        valid = (lo_x <= hi_x) & (hi_x >= 0) & (lo_x <= last) & (lo_y <= hi_y) & (hi_y >= 0) & (lo_y <= last)
        valid &= torch.isfinite(ux) & torch.isfinite(uy)
        clamp = lambda v: torch.nan_to_num(v, nan=0.0).clamp(0, last).long() // tile  # noqa: E731
        return clamp(lo_x), clamp(hi_x), clamp(lo_y), clamp(hi_y), valid


def _sigma_px(widths: Tensor, batch: int, pixel_size_angstrom: float) -> Tensor:
    return _broadcast_bg(widths, batch).detach() / pixel_size_angstrom


# ---- plain reference --------------------------------------------------------------------------------------------
def splat_reference(centres: Tensor, widths: Tensor, amplitudes: Tensor, box_size: int, pixel_size_angstrom: float,
                    cutoff_sigmas: float = DEFAULT_CUTOFF_SIGMAS, tile: int = DEFAULT_TILE) -> Tensor:
    """Plain-torch truncated-footprint projection (any device, differentiable by autograd).

    centres (B, G, 2) Å, widths (G,) or (B, G) Å, amplitudes (G,) or (B, G) -> images (B, D, D). Each Gaussian
    contributes on the pixels of the tiles its footprint overlaps, exactly as the Triton kernel. Materialises
    (B, G, D, D): small sizes only."""
    batch, d = centres.shape[0], box_size
    ux, uy, inv2s2, w = pixel_frame(centres, widths, amplitudes, box_size, pixel_size_angstrom)
    tx0, tx1, ty0, ty1, valid = tile_ranges(ux, uy, _sigma_px(widths, batch, pixel_size_angstrom), box_size, tile,
                                            cutoff_sigmas)
    idx = torch.arange(d, device=centres.device, dtype=centres.dtype)
    pix_tile = torch.arange(d, device=centres.device) // tile
    in_x = (pix_tile >= tx0[..., None]) & (pix_tile <= tx1[..., None])  # (B, G, D)
    in_y = (pix_tile >= ty0[..., None]) & (pix_tile <= ty1[..., None])
    mask = (in_y[..., :, None] & in_x[..., None, :]) & valid[..., None, None]  # (B, G, D, D)
    dx = idx - ux[..., None]
    dy = idx - uy[..., None]
    ex = torch.exp(-dx**2 * inv2s2[..., None])
    ey = torch.exp(-dy**2 * inv2s2[..., None]) * w[..., None]
    vals = ey[..., :, None] * ex[..., None, :]
    return torch.where(mask, vals, torch.zeros((), dtype=vals.dtype, device=vals.device)).sum(1)


# ---- binning ------------------------------------------------------------------------------------------------------
def bin_gaussians(ux: Tensor, uy: Tensor, sigma_px: Tensor, box_size: int, tile: int,
                  cutoff_sigmas: float) -> tuple[Tensor, Tensor, int, int]:
    """Per image, the list of Gaussians overlapping each tile (no gradient).

    ux, uy, sigma_px (B, G) -> (gaussian ids (P,) int32 as flat ``b·G + g``, grouped by tile and ascending
    within a tile; tile starts (B·T² + 1,) int32 with T = ceil(D / tile) tiles a side; T; the longest tile list).
    Two host syncs (P, then the longest list)."""
    with torch.no_grad():
        batch, n = ux.shape
        n_side = -(-box_size // tile)
        tx0, tx1, ty0, ty1, valid = tile_ranges(ux, uy, sigma_px, box_size, tile, cutoff_sigmas)
        nx = (tx1 - tx0 + 1).flatten()
        ny = (ty1 - ty0 + 1).flatten()
        count = torch.where(valid.flatten(), nx * ny, torch.zeros_like(nx))
        total = int(count.sum())
        dev = ux.device
        n_tiles = batch * n_side * n_side
        if total == 0:
            return (torch.zeros(0, dtype=torch.int32, device=dev),
                    torch.zeros(n_tiles + 1, dtype=torch.int32, device=dev), n_side, 0)
        flat = torch.arange(batch * n, device=dev)
        gid = torch.repeat_interleave(flat, count, output_size=total)
        first = torch.cumsum(count, 0) - count
        slot = torch.arange(total, device=dev) - first[gid]
        nxg = nx[gid]
        tx = tx0.flatten()[gid] + slot % nxg
        ty = ty0.flatten()[gid] + slot // nxg
        key = (((gid // n) * n_side + ty) * n_side + tx).to(torch.int32)  # B·T² < 2³¹
        key_sorted, order = torch.sort(key, stable=True)
        ids = gid[order].to(torch.int32)
        # tile t's list is [starts[t], starts[t+1]): a binary search of the sorted keys (a histogram of 2,048
        # bins by atomics was 0.22 ms of GPU time at B = 32, G = 60k on an H200)
        starts = torch.searchsorted(key_sorted, torch.arange(n_tiles + 1, device=dev, dtype=key_sorted.dtype))
        return ids, starts.to(torch.int32), n_side, int(starts.diff().max())



def footprint_tiles_per_axis(max_sigma_px: float, tile: int, cutoff_sigmas: float) -> int:
    """The most tiles along x (or y) that a footprint ``±c·σ`` with σ ≤ ``max_sigma_px`` can overlap: its pixel
    span ``hi - lo ≤ 2cσ`` covers at most ``floor(2cσ / tile) + 2`` tiles."""
    return int(math.floor(2 * cutoff_sigmas * max_sigma_px / tile)) + 2


def bin_gaussians_static(ux: Tensor, uy: Tensor, sigma_px: Tensor, box_size: int, tile: int, cutoff_sigmas: float,
                         per_axis: int) -> tuple[Tensor, Tensor, int]:
    """:func:`bin_gaussians` with static shapes and no host sync (capturable in a CUDA graph).

    Every (image, Gaussian) gets ``per_axis²`` slots (:func:`footprint_tiles_per_axis` of the largest width);
    the slots its footprint does not use get the key ``B·T²`` and sort after every real pair. Returns (ids
    (B·G·per_axis²,) int32 — the first ``starts[-1]`` grouped by tile, ascending within a tile, as
    :func:`bin_gaussians` —, tile starts (B·T² + 1,) int32, T). A footprint wider than ``per_axis`` tiles loses
    its far tiles: pass a ``per_axis`` from an upper bound of the widths."""
    with torch.no_grad():
        batch, n = ux.shape
        n_side = -(-box_size // tile)
        per_axis = max(1, min(int(per_axis), n_side))
        dev = ux.device
        n_tiles = batch * n_side * n_side
        tx0, tx1, ty0, ty1, valid = tile_ranges(ux, uy, sigma_px, box_size, tile, cutoff_sigmas)
        slot = torch.arange(per_axis, device=dev)
        tx = tx0[..., None, None] + slot  # (B, G, 1, A)
        ty = ty0[..., None, None] + slot[:, None]  # (B, G, A, 1)
        used = valid[..., None, None] & (tx <= tx1[..., None, None]) & (ty <= ty1[..., None, None])
        image = torch.arange(batch, device=dev)[:, None, None, None]
        # 16-bit keys where the tile ids fit: the radix sort makes two passes over the keys instead of four
        key_dtype = torch.int16 if n_tiles <= torch.iinfo(torch.int16).max else torch.int32
        key = torch.where(used, (image * n_side + ty) * n_side + tx, n_tiles).to(key_dtype).reshape(-1)
        key_sorted, order = torch.sort(key, stable=True)
        ids = torch.div(order, per_axis * per_axis, rounding_mode="floor").to(torch.int32)
        starts = torch.searchsorted(key_sorted, torch.arange(n_tiles + 1, device=dev, dtype=key_sorted.dtype))
        return ids, starts.to(torch.int32), n_side


def work_items(starts: Tensor, chunk: int, n_items: int) -> Tensor:
    """Tile lists cut into pieces of at most ``chunk`` entries: (3, n_items) int32 rows (tile, first, end).

    ``starts`` (n_tiles + 1,) from a binning; ``n_items`` ≥ Σ ceil(len / chunk) (e.g. ``n_tiles + P // chunk``
    for P list entries); items past the real ones are empty (first = end). Static shapes, no host sync."""
    with torch.no_grad():
        starts = starts.long()
        n_tiles = starts.numel() - 1
        length = starts.diff()
        pieces = torch.div(length + chunk - 1, chunk, rounding_mode="floor")
        last = torch.cumsum(pieces, 0)
        item = torch.arange(n_items, device=starts.device)
        tile = torch.searchsorted(last, item, right=True).clamp_max(n_tiles - 1)
        first = starts[tile] + (item - (last[tile] - pieces[tile])) * chunk
        end = torch.minimum(starts[tile + 1], first + chunk)
        end = torch.where(item < last[-1], end, first)
        return torch.stack([tile, first, end]).to(torch.int32).contiguous()


def default_precision(device: torch.device) -> str:
    """``tl.dot`` input precision: "tf32x3" (three TF32 products, float32 accuracy) on Ampere and newer, else
    "ieee" (float32 FMAs); the interpreter gets "ieee"."""
    if device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0):
        return "tf32x3"
    return "ieee"


def splat_gaussians(centres: Tensor, widths: Tensor, amplitudes: Tensor, box_size: int, pixel_size_angstrom: float,
                    cutoff_sigmas: float = DEFAULT_CUTOFF_SIGMAS, tile: int = DEFAULT_TILE, block_g: int | None = None,
                    precision: str | None = None, num_warps: int | None = None, chunk: int | None = None,
                    binning: str | None = None, max_sigma_px: float | None = None,
                    stages: int | None = None, packed: int | None = None) -> Tensor:
    """Footprint projection by the Triton kernels (CUDA, or Triton's interpreter): same maths as
    :func:`splat_reference`, float32 inside, differentiable wrt centres, widths and amplitudes.

    centres (B, G, 2) Å, widths (G,) or (B, G) Å, amplitudes (G,) or (B, G) -> images (B, D, D) in the centres'
    dtype. ``tile`` and ``block_g`` (Gaussians per inner step) are powers of two ≥ 16; ``precision`` is the
    ``tl.dot`` input precision (None: :func:`default_precision`); ``num_warps``: Triton warps per program;
    ``chunk``: list entries per program (a tile's list is split over ceil(n / chunk) work items, which balances
    the dense centre of the image against its empty edges; partial tiles are added atomically, so the float32
    summation order, and the last bits of the image, may differ between runs).

    ``binning``: "static" (:func:`bin_gaussians_static`: fixed shapes from ``max_sigma_px``, an upper bound of the
    widths in pixels, no host sync, capturable in a CUDA graph; the default when ``max_sigma_px`` is given),
    "torch" (:func:`bin_gaussians`, exact pair count, two host syncs; the default otherwise) or "triton"
    (:func:`bin_gaussians_triton`, the same lists as "torch")."""
    if triton is None:
        raise RuntimeError("splat_gaussians needs Triton; use project_gaussians_splat for a fallback")
    given = {"block_g": block_g, "num_warps": num_warps, "chunk": chunk, "precision": precision, "stages": stages,
             "packed": packed}
    cfg = replace(kernel_config(), **{k: v for k, v in given.items() if v is not None})
    block_g, num_warps, chunk, precision, stages, packed = (getattr(cfg, k) for k in given)
    if tile < 16 or tile & (tile - 1) or block_g < 16 or block_g & (block_g - 1):
        raise ValueError(f"tile ({tile}) and block_g ({block_g}) must be powers of two >= 16")
    binning = binning or ("torch" if max_sigma_px is None else "static")
    if binning not in ("torch", "triton", "static"):
        raise ValueError(f"binning must be 'static', 'torch' or 'triton', not {binning!r}")
    chunk = max(block_g, -(-chunk // block_g) * block_g)
    batch = centres.shape[0]
    ux, uy, inv2s2, w = pixel_frame(centres.float(), widths.float(), amplitudes.float(), box_size,
                                    pixel_size_angstrom)
    s_px = _sigma_px(widths.float(), batch, pixel_size_angstrom)
    if binning == "static":
        if max_sigma_px is None:  # one host read; pass max_sigma_px for a capturable call
            max_sigma_px = float(s_px.max()) if s_px.numel() else 1.0
        per_axis = footprint_tiles_per_axis(max_sigma_px, tile, cutoff_sigmas)
        ids, starts, n_side = bin_gaussians_static(ux.detach(), uy.detach(), s_px, box_size, tile, cutoff_sigmas,
                                                   per_axis)
    else:
        binner = bin_gaussians_triton if binning == "triton" else bin_gaussians
        ids, starts, n_side, _ = binner(ux.detach(), uy.detach(), s_px, box_size, tile, cutoff_sigmas)
    work = work_items(starts, chunk, starts.numel() - 1 + ids.numel() // chunk)
    precision = precision or default_precision(centres.device)
    if packed:  # the columns of one (B·G, 4) array (autograd splits the kernel's (B·G, 4) gradient back)
        flat = list(torch.stack([t.reshape(-1) for t in (ux, uy, inv2s2, w)], 1).unbind(1))
    else:
        flat = [t.reshape(-1).contiguous() for t in (ux, uy, inv2s2, w)]
    img = splat_forward(*flat, ids, work, batch, box_size, n_side, tile, block_g, precision, num_warps, stages)
    return img.to(centres.dtype)


def project_gaussians_splat(positions: Tensor, sigmas: Tensor, amplitudes: Tensor, rotations: Tensor,
                            shifts_angstrom: Tensor | None, box_size: int, pixel_size_angstrom: float,
                            cutoff_sigmas: float = DEFAULT_CUTOFF_SIGMAS, tile: int = DEFAULT_TILE,
                            use_kernel: bool | None = None, max_sigma_angstrom: float | None = None,
                            chunk_size: int | None = None) -> Tensor:
    """Drop-in for :func:`~gaussianem.physics.projection.project_gaussians` (same arguments and result).

    ``use_kernel=None``: the Triton splat on CUDA float32/bfloat16/float16 inputs when Triton is installed, the
    dense separable projector otherwise (CPU, float64, no Triton; ``chunk_size`` is its chunk). ``True`` forces
    the kernel (error if it cannot run), ``False`` the dense projector. ``max_sigma_angstrom``: an upper bound of
    the widths (e.g. the cloud's ``width_max``): static binning, no host sync (a CUDA graph can hold the call)."""
    if use_kernel is None:
        use_kernel = splat_kernel_usable(positions)
    if not use_kernel:
        return project_gaussians(positions, sigmas, amplitudes, rotations, shifts_angstrom, box_size,
                                 pixel_size_angstrom, chunk_size)
    centres = projected_centres(positions, rotations, shifts_angstrom)
    max_px = None if max_sigma_angstrom is None else max_sigma_angstrom / pixel_size_angstrom
    return splat_gaussians(centres, sigmas, amplitudes, box_size, pixel_size_angstrom, cutoff_sigmas, tile,
                           max_sigma_px=max_px)


def splat_kernel_usable(positions: Tensor) -> bool:
    """Whether :func:`project_gaussians_splat` would use the kernel for these positions: CUDA, not float64,
    Triton installed."""
    return positions.device.type == "cuda" and positions.dtype != torch.float64 and triton_available(
        positions.device)


def splat_flops(n_pairs: int, tile: int = DEFAULT_TILE, training: bool = True) -> float:
    """Arithmetic of the tile kernels for ``n_pairs`` (Gaussian, tile) pairs: forward 2·T exponentials' arguments
    (≈ 3 FLOP each) plus the T×T outer product (2·T² FLOP); the backward adds two T×T×1 products (4·T²) and the
    reductions (≈ 10·T). Exponentials counted as one FLOP."""
    fwd = n_pairs * (2 * tile * 4 + 2 * tile * tile)
    bwd = n_pairs * (2 * tile * 4 + 4 * tile * tile + 10 * tile)
    return float(fwd + (bwd if training else 0))


def dense_projection_flops(batch: int, n_gaussians: int, box_size: int, training: bool = True) -> float:
    """FLOPs of the dense separable projector: the (B, D, G) × (B, G, D) product, 2·B·G·D² forward, 3× when
    training (two more products in the backward); the (B, G, D) exponentials are ignored."""
    fwd = 2.0 * batch * n_gaussians * box_size * box_size
    return fwd * (3 if training else 1)

