"""Triton kernels of the tile splat (:mod:`gaussianem.physics.splat`): binning helpers, forward, backward.

The forward and backward are torch custom operators (``gaussianem::splat_forward``, ``gaussianem::splat_backward``)
with a fake (shape-only) implementation and an autograd formula, so that ``torch.compile`` keeps them as opaque
calls in its graph and the training step, splat included, can be captured as one CUDA graph (the kernels' launch
grids depend only on tensor shapes: one program per work item of :func:`~gaussianem.physics.splat.work_items`).
Importing this module without Triton defines nothing but ``triton = None``.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # Triton is optional: CPU paths and CPU-only torch builds never need it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None
    tl = None

# ---- kernels -------------------------------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def _floor_i32(x):
        t = x.to(tl.int32)  # truncates toward zero
        return tl.where(t.to(tl.float32) > x, t - 1, t)

    @triton.jit
    def _bin_count_kernel(ux_ptr, uy_ptr, s_ptr, count_ptr, tx0_ptr, ty0_ptr, nx_ptr, n_total, box, tile, cutoff,
                          BLOCK: tl.constexpr):
        # the arithmetic of tile_ranges, per Gaussian: first tile, tiles along x, tiles in all (0 when outside)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n_total
        ux = tl.load(ux_ptr + offs, mask=m, other=0.0)
        uy = tl.load(uy_ptr + offs, mask=m, other=0.0)
        r = cutoff * tl.load(s_ptr + offs, mask=m, other=0.0)
        finite = (ux == ux) & (uy == uy) & (tl.abs(ux) < 1.0e30) & (tl.abs(uy) < 1.0e30) & (r == r) & (r < 1.0e30)
        ux = tl.where(finite, ux, 0.0)
        uy = tl.where(finite, uy, 0.0)
        r = tl.where(finite, r, 0.0)
        big = 1048576.0
        lo_x = -_floor_i32(tl.minimum(tl.maximum(r - ux, -big), big))  # ceil(ux - r)
        hi_x = _floor_i32(tl.minimum(tl.maximum(ux + r, -big), big))
        lo_y = -_floor_i32(tl.minimum(tl.maximum(r - uy, -big), big))
        hi_y = _floor_i32(tl.minimum(tl.maximum(uy + r, -big), big))
        last = box - 1
        valid = (lo_x <= hi_x) & (hi_x >= 0) & (lo_x <= last) & (lo_y <= hi_y) & (hi_y >= 0) & (lo_y <= last)
        valid = valid & finite & m
        tx0 = tl.minimum(tl.maximum(lo_x, 0), last) // tile
        tx1 = tl.minimum(tl.maximum(hi_x, 0), last) // tile
        ty0 = tl.minimum(tl.maximum(lo_y, 0), last) // tile
        ty1 = tl.minimum(tl.maximum(hi_y, 0), last) // tile
        nx = tx1 - tx0 + 1
        count = tl.where(valid, nx * (ty1 - ty0 + 1), 0)
        tl.store(count_ptr + offs, count, mask=m)
        tl.store(tx0_ptr + offs, tx0, mask=m)
        tl.store(ty0_ptr + offs, ty0, mask=m)
        tl.store(nx_ptr + offs, tl.maximum(nx, 1), mask=m)

    @triton.jit
    def _bin_emit_kernel(count_ptr, first_ptr, tx0_ptr, ty0_ptr, nx_ptr, keys_ptr, ids_ptr, n_total, n_per_image,
                         n_side, BLOCK: tl.constexpr, MAX_TILES: tl.constexpr):
        # each Gaussian writes its (image, tile) keys and its id at [first, first + count)
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n_total
        count = tl.load(count_ptr + offs, mask=m, other=0)
        first = tl.load(first_ptr + offs, mask=m, other=0)
        tx0 = tl.load(tx0_ptr + offs, mask=m, other=0)
        ty0 = tl.load(ty0_ptr + offs, mask=m, other=0)
        nx = tl.load(nx_ptr + offs, mask=m, other=1)
        slot = tl.arange(0, MAX_TILES)
        tx = tx0[:, None] + slot[None, :] % nx[:, None]
        ty = ty0[:, None] + slot[None, :] // nx[:, None]
        key = ((offs // n_per_image)[:, None] * n_side + ty) * n_side + tx
        dest = first[:, None] + slot[None, :]
        keep = m[:, None] & (slot[None, :] < count[:, None])
        tl.store(keys_ptr + dest, key, mask=keep)
        tl.store(ids_ptr + dest, offs[:, None] + slot[None, :] * 0, mask=keep)

    @triton.jit
    def _work_item(work_ptr, n_work, n_side):
        # this program's work item: (tile, first, end) of a piece of that tile's list -> image, tile row/column
        pid = tl.program_id(0)
        tid = tl.load(work_ptr + pid)
        start = tl.load(work_ptr + n_work + pid)
        end = tl.load(work_ptr + 2 * n_work + pid)
        per_image = n_side * n_side
        t = tid % per_image
        return tid // per_image, t // n_side, t % n_side, start, end

    @triton.jit
    def _gaussian_block(ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, j, end, px, py, STRIDE: tl.constexpr):
        # list entries j (masked at end): Gaussian ids, mask, 1/2σ², weights, pixel offsets from the centres. The
        # four attributes of Gaussian g are at ptr + g·STRIDE (STRIDE 4: one (N, 4) array, a Gaussian's four values
        # in one 16-byte piece of memory, fetched by the first of the four loads)
        m = j < end
        g = tl.load(ids_ptr + j, mask=m, other=0)
        o = g * STRIDE
        dx = px[None, :] - tl.load(ux_ptr + o, mask=m, other=0.0)[:, None]
        dy = py[None, :] - tl.load(uy_ptr + o, mask=m, other=0.0)[:, None]
        return g, m, tl.load(a_ptr + o, mask=m, other=0.0), tl.load(w_ptr + o, mask=m, other=0.0), dx, dy

    @triton.jit
    def _fwd_step(acc, ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, j, end, px, py, PRECISION: tl.constexpr,
                  STRIDE: tl.constexpr):
        # one block of list entries j added to the tile accumulator (TILE y, TILE x)
        g, m, a, w, dx, dy = _gaussian_block(ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, j, end, px, py, STRIDE)
        ex = tl.exp(-dx * dx * a[:, None])  # (BLOCK_G, TILE x)
        ey = tl.exp(-dy * dy * a[:, None]) * w[:, None]  # (BLOCK_G, TILE y)
        return acc + tl.dot(tl.trans(ey), ex, input_precision=PRECISION)

    @triton.jit
    def _splat_fwd_kernel(ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, work_ptr, n_work, out_ptr, box, n_side,
                          TILE: tl.constexpr, BLOCK_G: tl.constexpr, PRECISION: tl.constexpr, STAGES: tl.constexpr,
                          STRIDE: tl.constexpr):
        # program w sums the Gaussians [start, end) of its tile's list (one work item) and adds the partial tile to
        # the image (atomically: several programs may share a tile). STAGES > 0: the loop is software-pipelined
        # (the next blocks' gathers issued while this block computes)
        b, ty, tx, start, end = _work_item(work_ptr, n_work, n_side)
        offs = tl.arange(0, TILE)
        px = (tx * TILE + offs).to(tl.float32)
        py = (ty * TILE + offs).to(tl.float32)
        goffs = tl.arange(0, BLOCK_G)
        acc = tl.zeros((TILE, TILE), dtype=tl.float32)
        if STAGES > 0:
            for i in tl.range(start, end, BLOCK_G, num_stages=STAGES):
                acc = _fwd_step(acc, ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, i + goffs, end, px, py, PRECISION,
                                STRIDE)
        else:
            for i in range(start, end, BLOCK_G):
                acc = _fwd_step(acc, ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, i + goffs, end, px, py, PRECISION,
                                STRIDE)
        iy = ty * TILE + offs
        ix = tx * TILE + offs
        ptrs = out_ptr + b * box * box + iy[:, None] * box + ix[None, :]
        busy = (tl.zeros((TILE, TILE), dtype=tl.int32) + start) < end  # (a full-shape mask: Triton's interpreter too)
        tl.atomic_add(ptrs, acc, mask=(iy[:, None] < box) & (ix[None, :] < box) & busy, sem="relaxed")

    @triton.jit
    def _bwd_step(ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, j, end, px, py, gimg, gimg_t, grad_out_ptr,
                  PRECISION: tl.constexpr, STRIDE: tl.constexpr):
        # one block of list entries j: their gradient contributions from this tile, added atomically to the
        # (N, 4) gradient [ux, uy, 1/2σ², w]
        g, m, a, w, dx, dy = _gaussian_block(ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, j, end, px, py, STRIDE)
        ex = tl.exp(-dx * dx * a[:, None])
        ey = tl.exp(-dy * dy * a[:, None])
        p = tl.dot(ey, gimg, input_precision=PRECISION) * ex  # Σ_y ey·g, times ex: (BLOCK_G, TILE x)
        q = tl.dot(ex, gimg_t, input_precision=PRECISION) * ey  # Σ_x ex·g, times ey: (BLOCK_G, TILE y)
        s0 = tl.sum(p, 1)  # Σ g·ex·ey
        sx1 = tl.sum(p * dx, 1)
        sx2 = tl.sum(p * dx * dx, 1)
        sy1 = tl.sum(q * dy, 1)
        sy2 = tl.sum(q * dy * dy, 1)
        gp = grad_out_ptr + g * 4
        tl.atomic_add(gp, 2.0 * a * w * sx1, mask=m, sem="relaxed")
        tl.atomic_add(gp + 1, 2.0 * a * w * sy1, mask=m, sem="relaxed")
        tl.atomic_add(gp + 2, -w * (sx2 + sy2), mask=m, sem="relaxed")
        tl.atomic_add(gp + 3, s0, mask=m, sem="relaxed")

    @triton.jit
    def _splat_bwd_kernel(ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, work_ptr, n_work, grad_ptr, grad_out_ptr, box,
                          n_side, TILE: tl.constexpr, BLOCK_G: tl.constexpr, PRECISION: tl.constexpr,
                          STAGES: tl.constexpr, STRIDE: tl.constexpr):
        b, ty, tx, start, end = _work_item(work_ptr, n_work, n_side)
        offs = tl.arange(0, TILE)
        iy = ty * TILE + offs
        ix = tx * TILE + offs
        gimg = tl.load(grad_ptr + b * box * box + iy[:, None] * box + ix[None, :],
                       mask=(iy[:, None] < box) & (ix[None, :] < box), other=0.0)  # (TILE y, TILE x)
        gimg_t = tl.trans(gimg)
        px = ix.to(tl.float32)
        py = iy.to(tl.float32)
        goffs = tl.arange(0, BLOCK_G)
        if STAGES > 0:
            for i in tl.range(start, end, BLOCK_G, num_stages=STAGES):
                _bwd_step(ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, i + goffs, end, px, py, gimg, gimg_t,
                          grad_out_ptr, PRECISION, STRIDE)
        else:
            for i in range(start, end, BLOCK_G):
                _bwd_step(ux_ptr, uy_ptr, a_ptr, w_ptr, ids_ptr, i + goffs, end, px, py, gimg, gimg_t,
                          grad_out_ptr, PRECISION, STRIDE)


def bin_gaussians_triton(ux: Tensor, uy: Tensor, sigma_px: Tensor, box_size: int, tile: int,
                         cutoff_sigmas: float) -> tuple[Tensor, Tensor, int, int]:
    """:func:`bin_gaussians` with the per-Gaussian arithmetic and the expansion into (tile, Gaussian) pairs in two
    Triton kernels instead of ~30 torch ops (the sort stays torch's). Same result, element for element. Float32
    inputs (B, G) on CUDA (or Triton's interpreter). Two host syncs (total and longest per-Gaussian count, then the
    longest tile list)."""
    with torch.no_grad():
        batch, n = ux.shape
        n_side = -(-box_size // tile)
        n_tiles = batch * n_side * n_side
        dev = ux.device
        flat = [t.reshape(-1).contiguous().float() for t in (ux, uy, sigma_px.expand(batch, n))]
        n_total = batch * n
        count, tx0, ty0, nx = (torch.empty(n_total, dtype=torch.int32, device=dev) for _ in range(4))
        block = 256
        grid = (triton.cdiv(n_total, block),)
        _bin_count_kernel[grid](*flat, count, tx0, ty0, nx, n_total, box_size, tile, float(cutoff_sigmas),
                                BLOCK=block)
        total, most = (int(v) for v in torch.stack([count.sum(), count.max()]).tolist())
        if total == 0:
            return (torch.zeros(0, dtype=torch.int32, device=dev),
                    torch.zeros(n_tiles + 1, dtype=torch.int32, device=dev), n_side, 0)
        first = (torch.cumsum(count, 0, dtype=torch.int32) - count).contiguous()
        keys = torch.empty(total, dtype=torch.int32, device=dev)
        ids = torch.empty(total, dtype=torch.int32, device=dev)
        max_tiles = max(2, triton.next_power_of_2(most))
        block = max(16, 4096 // max_tiles)
        grid = (triton.cdiv(n_total, block),)
        _bin_emit_kernel[grid](count, first, tx0, ty0, nx, keys, ids, n_total, n, n_side, BLOCK=block,
                               MAX_TILES=max_tiles)
        key_sorted, order = torch.sort(keys, stable=True)
        ids = ids[order]
        starts = torch.searchsorted(key_sorted, torch.arange(n_tiles + 1, device=dev, dtype=key_sorted.dtype))
        return ids, starts.to(torch.int32), n_side, int(starts.diff().max())


# ---- custom operators ----------------------------------------------------------------------------------------------
if triton is not None:

    def _strided(ux: Tensor, uy: Tensor, inv2s2: Tensor, w: Tensor) -> tuple[list[Tensor], int]:
        """The four attribute arrays and their common element stride: 1 (four arrays) or 4 (the columns of one
        (N, 4) array); arrays of other or unequal strides are copied to contiguous ones."""
        arrays = [ux, uy, inv2s2, w]
        strides = {t.stride(0) for t in arrays if t.numel() > 1}
        if len(strides) > 1 or (strides and strides.pop() not in (1, 4)):
            arrays = [t.contiguous() for t in arrays]
        stride = arrays[0].stride(0) if arrays[0].numel() > 1 else 1
        return arrays, stride

    @torch.library.custom_op("gaussianem::splat_forward", mutates_args=())
    def splat_forward(ux: Tensor, uy: Tensor, inv2s2: Tensor, w: Tensor, ids: Tensor, work: Tensor, batch: int,
                      box: int, n_side: int, tile: int, block_g: int, precision: str, num_warps: int,
                      stages: int) -> Tensor:
        """Pixel-frame Gaussians ux, uy, inv2s2, w (B·G,) float32 (four arrays, or the columns of one (B·G, 4)
        array), sorted pair ids (P,) int32 and work items (3, W) int32 (tile, first, end) -> images (B, D, D)
        float32. One program per work item."""
        (ux, uy, inv2s2, w), stride = _strided(ux, uy, inv2s2, w)
        out = torch.zeros(batch, box, box, dtype=torch.float32, device=ux.device)
        n_work = work.shape[1]
        if n_work:
            _splat_fwd_kernel[(n_work,)](ux, uy, inv2s2, w, ids, work, n_work, out, box, n_side, TILE=tile,
                                         BLOCK_G=block_g, PRECISION=precision, STAGES=stages, STRIDE=stride,
                                         num_warps=num_warps)
        return out

    @splat_forward.register_fake
    def _(ux, uy, inv2s2, w, ids, work, batch, box, n_side, tile, block_g, precision, num_warps, stages):
        return ux.new_empty(batch, box, box)

    @torch.library.custom_op("gaussianem::splat_backward", mutates_args=())
    def splat_backward(grad: Tensor, ux: Tensor, uy: Tensor, inv2s2: Tensor, w: Tensor, ids: Tensor, work: Tensor,
                       box: int, n_side: int, tile: int, block_g: int, precision: str,
                       num_warps: int, stages: int) -> Tensor:
        """Gradients of :func:`splat_forward` wrt ux, uy, inv2s2, w, given the image gradient (B, D, D): one
        (B·G, 4) array, a column each."""
        (ux, uy, inv2s2, w), stride = _strided(ux, uy, inv2s2, w)
        grad = grad.contiguous().float()
        out = torch.zeros(ux.shape[0], 4, dtype=torch.float32, device=ux.device)
        n_work = work.shape[1]
        if n_work:
            _splat_bwd_kernel[(n_work,)](ux, uy, inv2s2, w, ids, work, n_work, grad, out, box, n_side, TILE=tile,
                                         BLOCK_G=block_g, PRECISION=precision, STAGES=stages, STRIDE=stride,
                                         num_warps=num_warps)
        return out

    @splat_backward.register_fake
    def _(grad, ux, uy, inv2s2, w, ids, work, box, n_side, tile, block_g, precision, num_warps, stages):
        return ux.new_empty(ux.shape[0], 4)

    def _setup(ctx, inputs, output):
        ux, uy, inv2s2, w, ids, work, _batch, box, n_side, tile, block_g, precision, num_warps, stages = inputs
        ctx.save_for_backward(ux, uy, inv2s2, w, ids, work)
        ctx.config = (box, n_side, tile, block_g, precision, num_warps, stages)

    def _backward(ctx, grad):
        ux, uy, inv2s2, w, ids, work = ctx.saved_tensors
        grads = splat_backward(grad, ux, uy, inv2s2, w, ids, work, *ctx.config)
        return (*grads.unbind(1), None, None, None, None, None, None, None, None, None, None)

    splat_forward.register_autograd(_backward, setup_context=_setup)
