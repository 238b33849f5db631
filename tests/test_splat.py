"""Footprint (tile) projection: the truncated reference against the dense projector, the binning, the dispatcher,
and the Triton kernels (CUDA, or Triton's interpreter with TRITON_INTERPRET=1) against the reference."""

import os

import pytest
import torch

from gaussianem.physics.projection import project_gaussians, project_gaussians_dense, projected_centres
from gaussianem.physics.rotation import random_rotations
from gaussianem.physics.splat import (
    KERNEL_CONFIG_ENV,
    KernelConfig,
    bin_gaussians,
    bin_gaussians_static,
    bin_gaussians_triton,
    footprint_tiles_per_axis,
    kernel_config,
    pixel_frame,
    project_gaussians_splat,
    splat_gaussians,
    splat_reference,
    triton_available,
    truncation_error_bound,
    work_items,
)


def random_splat_inputs(batch, n, box, apix, seed, dtype=torch.float64, sigma_px=(0.5, 3.0), spread=0.6,
                        device="cpu"):
    """Centres spread over ±spread·D/2·√... so that some Gaussians sit partly or wholly outside the box."""
    g = torch.Generator().manual_seed(seed)
    centres = (torch.rand(batch, n, 2, generator=g, dtype=dtype) * 2 - 1) * spread * box * apix
    sig = (sigma_px[0] + (sigma_px[1] - sigma_px[0]) * torch.rand(batch, n, generator=g, dtype=dtype)) * apix
    amp = 0.5 + torch.rand(batch, n, generator=g, dtype=dtype)
    return centres.to(device), sig.to(device), amp.to(device)


def rel_err(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def dense_from_centres(centres, sig, amp, box, apix):
    """project_gaussians_dense with identity rotations: positions (x, y, 0) project to (x, y)."""
    batch = centres.shape[0]
    pos = torch.cat([centres, torch.zeros_like(centres[..., :1])], -1)
    rot = torch.eye(3, dtype=centres.dtype, device=centres.device).expand(batch, 3, 3)
    return project_gaussians_dense(pos, sig, amp, rot, None, box, apix)


def test_reference_equals_dense_with_large_cutoff():
    centres, sig, amp = random_splat_inputs(2, 60, 40, 1.2, seed=0)
    dense = dense_from_centres(centres, sig, amp, 40, 1.2)
    ref = splat_reference(centres, sig, amp, 40, 1.2, cutoff_sigmas=100.0)
    assert rel_err(ref, dense) < 1e-12


@pytest.mark.parametrize("cutoff", [4.0, 5.0])
def test_reference_truncation_within_bound(cutoff):
    centres, sig, amp = random_splat_inputs(2, 80, 48, 1.0, seed=1)
    dense = dense_from_centres(centres, sig, amp, 48, 1.0)
    ref = splat_reference(centres, sig, amp, 48, 1.0, cutoff_sigmas=cutoff)
    # every skipped value is below exp(-c²/2) × its Gaussian's peak; bound the sum by all peaks
    peaks = (amp * sig * (2 * torch.pi) ** 0.5).sum(1)
    assert float((ref - dense).abs().amax((1, 2)).div(peaks).max()) <= truncation_error_bound(cutoff)
    assert rel_err(ref, dense) < 1e-4 if cutoff >= 5 else True
    assert (ref - dense).abs().max() > 0  # the truncation does skip pixels


def test_reference_gradcheck_float64():
    centres, sig, amp = random_splat_inputs(2, 5, 20, 1.0, seed=2, sigma_px=(0.8, 2.0), spread=0.5)
    for t in (centres, sig, amp):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c, s, a: splat_reference(c, s, a, 20, 1.0, 3.0, tile=16),
                                    (centres, sig, amp), eps=1e-6, atol=1e-7)


def test_reference_shared_widths_and_amplitudes():
    centres, sig, amp = random_splat_inputs(3, 30, 32, 1.0, seed=3)
    a = splat_reference(centres, sig[0], amp[0], 32, 1.0)
    b = splat_reference(centres, sig[0].expand(3, -1), amp[0].expand(3, -1), 32, 1.0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bins_reproduce_reference():
    """The sorted per-tile lists, evaluated in plain torch, give the reference image."""
    box, apix, tile = 40, 1.0, 16  # 40 is not a multiple of the tile
    centres, sig, amp = random_splat_inputs(2, 70, box, apix, seed=4)
    ux, uy, inv2s2, w = pixel_frame(centres, sig, amp, box, apix)
    ids, starts, n_side, longest = bin_gaussians(ux, uy, sig / apix, box, tile, 5.0)
    assert n_side == 3 and starts.shape == (2 * 9 + 1,) and int(starts[-1]) == ids.numel()
    assert longest == int(starts.diff().max())
    img = torch.zeros(2, n_side * tile, n_side * tile, dtype=torch.float64)
    pix = torch.arange(tile, dtype=torch.float64)
    flat = [t.reshape(-1) for t in (ux, uy, inv2s2, w)]
    for t in range(2 * n_side * n_side):
        b, rest = divmod(t, n_side * n_side)
        ty, tx = divmod(rest, n_side)
        sel = ids[starts[t]:starts[t + 1]].long()
        assert (sel // 70 == b).all() and (sel.diff() > 0).all()
        cx, cy, a, ww = (f[sel] for f in flat)
        ex = torch.exp(-((tx * tile + pix) - cx[:, None]) ** 2 * a[:, None])
        ey = torch.exp(-((ty * tile + pix) - cy[:, None]) ** 2 * a[:, None]) * ww[:, None]
        img[b, ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile] = ey.T @ ex
    ref = splat_reference(centres, sig, amp, box, apix, 5.0, tile)
    torch.testing.assert_close(img[:, :box, :box], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tile", [16, 32])
def test_static_bins_equal_exact_bins(tile):
    """The fixed-capacity binning (no host sync) lists the same (tile, Gaussian) pairs in the same order as the
    exact one; its unused slots sort after them."""
    box, apix = 72, 1.3
    centres, sig, amp = random_splat_inputs(3, 200, box, apix, seed=7, dtype=torch.float32)
    ux, uy, _, _ = pixel_frame(centres, sig, amp, box, apix)
    s_px = sig / apix
    ux[1, :3] = float("nan")
    ids, starts, n_side, _ = bin_gaussians(ux, uy, s_px, box, tile, 5.0)
    per_axis = footprint_tiles_per_axis(float(s_px.max()), tile, 5.0)
    ids_s, starts_s, n_side_s = bin_gaussians_static(ux, uy, s_px, box, tile, 5.0, per_axis)
    assert n_side_s == n_side and ids_s.numel() == 3 * 200 * min(per_axis, n_side) ** 2
    assert torch.equal(starts_s, starts)
    assert torch.equal(ids_s[:ids.numel()], ids)


def test_footprint_capacity_is_an_upper_bound():
    g = torch.Generator().manual_seed(8)
    for tile in (16, 32):
        for s in (0.3, 1.0, 2.5, 7.0):
            u = torch.rand(20000, generator=g, dtype=torch.float64) * 200 - 50
            r = 5.0 * s
            lo, hi = torch.ceil(u - r), torch.floor(u + r)
            n = torch.div(hi, tile, rounding_mode="floor") - torch.div(lo, tile, rounding_mode="floor") + 1
            assert int(n.max()) <= footprint_tiles_per_axis(s, tile, 5.0)


def test_work_items_cover_every_list_once():
    starts = torch.tensor([0, 5, 5, 40, 41, 100])
    items = work_items(starts, 16, 5 + 100 // 16)
    tile, first, end = items.long()
    covered = torch.zeros(100, dtype=torch.long)
    for t, a, b in zip(tile.tolist(), first.tolist(), end.tolist(), strict=True):
        assert b - a <= 16
        if b > a:
            assert starts[t] <= a and b <= starts[t + 1]
            covered[a:b] += 1
    assert torch.equal(covered, torch.ones(100, dtype=torch.long))


def test_dispatcher_falls_back_to_dense_on_cpu():
    box, apix = 32, 1.5
    g = torch.Generator().manual_seed(5)
    pos = torch.randn(50, 3, generator=g, dtype=torch.float64) * 8
    sig = torch.full((50,), 1.5, dtype=torch.float64)
    amp = torch.rand(50, generator=g, dtype=torch.float64)
    rot = random_rotations(3, torch.Generator().manual_seed(6)).to(torch.float64)
    shifts = torch.randn(3, 2, generator=g, dtype=torch.float64)
    a = project_gaussians_splat(pos, sig, amp, rot, shifts, box, apix)
    b = project_gaussians(pos, sig, amp, rot, shifts, box, apix)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---- the Triton kernels -----------------------------------------------------------------------------------------
def kernel_device():
    if triton_available("cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if triton_available("cpu") and os.environ.get("TRITON_INTERPRET", "0") == "1":
        return torch.device("cpu")
    return None


needs_kernel = pytest.mark.skipif(kernel_device() is None, reason="needs CUDA + Triton (or TRITON_INTERPRET=1)")


def precisions():
    dev = kernel_device()
    return ["ieee", "tf32x3"] if dev is not None and dev.type == "cuda" else ["ieee"]


def _kernel_case(batch, n, box, apix, seed, shared, tile=16, block_g=16, cutoff=5.0, precision="ieee", chunk=256,
                 binning="torch", max_sigma_px=None, stages=0, num_warps=4, packed=1):
    dev = kernel_device()
    centres, sig, amp = random_splat_inputs(batch, n, box, apix, seed, device=dev)
    if shared:
        sig, amp = sig[0].clone(), amp[0].clone()
    c32, s32, a32 = (t.float().requires_grad_(True) for t in (centres, sig, amp))
    c64, s64, a64 = (t.double().requires_grad_(True) for t in (centres, sig, amp))
    out = splat_gaussians(c32, s32, a32, box, apix, cutoff, tile, block_g, precision, chunk=chunk, binning=binning,
                          max_sigma_px=max_sigma_px, stages=stages, num_warps=num_warps, packed=packed)
    ref = splat_reference(c64, s64, a64, box, apix, cutoff, tile)
    assert out.dtype == torch.float32 and out.shape == (batch, box, box)
    assert rel_err(out.double(), ref) < 1e-4, rel_err(out.double(), ref)
    r = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed + 100), dtype=torch.float64).to(dev)
    g32 = torch.autograd.grad((out * r.float()).sum(), (c32, s32, a32))
    g64 = torch.autograd.grad((ref * r).sum(), (c64, s64, a64))
    for name, a, b in zip(("centres", "widths", "amplitudes"), g32, g64, strict=True):
        assert rel_err(a.double(), b) < 1e-4, (name, rel_err(a.double(), b))
    return out, ref


@pytest.mark.cuda
@needs_kernel
@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("chunk", [16, 256])
def test_kernel_matches_reference(shared, chunk):
    # box 72 (not a multiple of 16), centres up to ±0.6·D Å·… so some are partly or wholly outside, widths 0.5–3 px;
    # chunk 16 splits every tile's list over several programs (atomic partial tiles)
    for precision in precisions():
        _kernel_case(3, 400, 72, 1.3, seed=10, shared=shared, precision=precision, chunk=chunk)


@pytest.mark.cuda
@needs_kernel
@pytest.mark.parametrize("block_g, num_warps, stages, packed",
                         [(16, 2, 0, 1), (64, 4, 0, 1), (32, 4, 2, 1), (64, 8, 3, 1), (32, 4, 0, 0), (64, 4, 2, 0)])
def test_kernel_launch_settings_match_reference(block_g, num_warps, stages, packed):
    # the launch settings benchmarks/speed/splat_tune.py times (pipelined loops, both layouts of the Gaussians'
    # values) compute the same images and gradients
    for precision in precisions():
        _kernel_case(2, 300, 64, 1.2, seed=15, shared=False, block_g=block_g, precision=precision, chunk=64,
                     binning="static", max_sigma_px=3.0, stages=stages, num_warps=num_warps, packed=packed)


def test_kernel_config_from_the_environment(monkeypatch):
    monkeypatch.setenv(KERNEL_CONFIG_ENV, "block_g=64, num_warps=8,precision=ieee,stages=2")
    assert kernel_config() == KernelConfig(block_g=64, num_warps=8, chunk=256, precision="ieee", stages=2,
                                           packed=KernelConfig().packed)
    monkeypatch.setenv(KERNEL_CONFIG_ENV, "")
    assert kernel_config() == KernelConfig()
    monkeypatch.setenv(KERNEL_CONFIG_ENV, "blocks=64")
    with pytest.raises(ValueError, match="cannot read"):
        kernel_config()


@pytest.mark.cuda
@needs_kernel
def test_kernel_tile32_block32():
    for precision in precisions():
        _kernel_case(2, 300, 64, 1.0, seed=11, shared=False, tile=32, block_g=32, precision=precision, chunk=64)


@pytest.mark.cuda
@needs_kernel
def test_kernel_matches_dense_projector_with_rotations():
    dev = kernel_device()
    box, apix, n = 64, 1.1, 500
    g = torch.Generator().manual_seed(12)
    pos = (torch.randn(n, 3, generator=g) * 14).to(dev)
    sig = ((0.5 + 2.5 * torch.rand(n, generator=g)) * apix).to(dev)
    amp = (0.5 + torch.rand(4, n, generator=g)).to(dev)
    rot = random_rotations(4, torch.Generator().manual_seed(13)).float().to(dev)
    shifts = (torch.randn(4, 2, generator=g) * 3).to(dev)
    params = [t.clone().requires_grad_(True) for t in (pos, sig, amp)]
    out = project_gaussians_splat(*params, rot, shifts, box, apix, use_kernel=True)
    params64 = [t.double().requires_grad_(True) for t in (pos, sig, amp)]
    dense = project_gaussians_dense(*params64, rot.double(), shifts.double(), box, apix)
    assert rel_err(out.double(), dense) < 1e-4
    r = torch.randn(dense.shape, generator=torch.Generator().manual_seed(14), dtype=torch.float64).to(dev)
    g32 = torch.autograd.grad((out * r.float()).sum(), params)
    g64 = torch.autograd.grad((dense * r).sum(), params64)
    for a, b in zip(g32, g64, strict=True):
        assert rel_err(a.double(), b) < 1e-4


@pytest.mark.cuda
@needs_kernel
def test_kernel_all_outside_and_centres_helper():
    dev = kernel_device()
    centres = torch.full((2, 10, 2), 500.0, device=dev, requires_grad=True)
    sig = torch.ones(10, device=dev, requires_grad=True)
    amp = torch.ones(2, 10, device=dev, requires_grad=True)
    out = splat_gaussians(centres, sig, amp, 32, 1.0)
    assert torch.count_nonzero(out) == 0
    out.sum().backward()
    assert torch.count_nonzero(centres.grad) == 0
    # projected_centres feeds the kernel directly
    pos = torch.zeros(1, 3, device=dev)
    rot = torch.eye(3, device=dev)[None]
    c = projected_centres(pos, rot, None)
    img = splat_gaussians(c, torch.ones(1, device=dev), torch.ones(1, 1, device=dev), 32, 1.0)
    assert int(img[0].argmax()) == 16 * 32 + 16


@pytest.mark.cuda
@needs_kernel
@pytest.mark.parametrize("tile", [16, 32])
def test_triton_binning_equals_torch_binning(tile):
    dev = kernel_device()
    centres, sig, amp = random_splat_inputs(3, 500, 72, 1.3, seed=20, device=dev, dtype=torch.float32)
    ux, uy, _, _ = pixel_frame(centres, sig, amp, 72, 1.3)
    s_px = sig / 1.3
    s_px[0, :5] = 40.0  # a few very wide Gaussians: many tiles each
    ux[1, :3] = float("nan")
    a = bin_gaussians(ux, uy, s_px, 72, tile, 5.0)
    b = bin_gaussians_triton(ux, uy, s_px, 72, tile, 5.0)
    assert a[2:] == b[2:]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.cuda
@needs_kernel
def test_kernel_with_triton_binning():
    _kernel_case(2, 300, 64, 1.0, seed=21, shared=False, chunk=64, binning="triton")


@pytest.mark.cuda
@needs_kernel
@pytest.mark.parametrize("chunk", [16, 256])
def test_kernel_with_static_binning(chunk):
    for precision in precisions():
        _kernel_case(3, 400, 72, 1.3, seed=22, shared=False, precision=precision, chunk=chunk, binning="static",
                     max_sigma_px=3.0)


@pytest.mark.skipif(not (torch.cuda.is_available() and triton_available("cuda")), reason="needs CUDA + Triton")
def test_static_splat_compiles_and_captures_in_a_cuda_graph():
    """With an upper bound of the widths, the splat (binning, kernels, backward) is compiled without graph breaks
    and replayed from a CUDA graph with the eager result."""
    dev = torch.device("cuda")
    box, apix = 64, 1.2
    centres, sig, amp = random_splat_inputs(4, 600, box, apix, seed=23, dtype=torch.float32, device=dev)
    params = [t.clone().requires_grad_(True) for t in (centres, sig, amp)]

    def loss(c, s, a):
        return (splat_gaussians(c, s, a, box, apix, max_sigma_px=3.0) ** 2).sum()

    ref = torch.autograd.grad(loss(*params), params)
    compiled = torch.compile(loss, fullgraph=True)
    static = [t.detach().clone().requires_grad_(True) for t in params]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            torch.autograd.grad(compiled(*static), static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        grads = torch.autograd.grad(compiled(*static), static)
    graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(grads, ref, strict=True):
        assert rel_err(a, b) < 1e-5
