"""The Gaussian projector against closed forms and an independent voxel-rotation reference."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from gaussianem.physics.projection import project_gaussians, project_gaussians_dense, voxelize_gaussians
from gaussianem.physics.rotation import euler_relion_to_matrix, random_rotations


def random_cloud(n, box, apix, seed, dtype=torch.float64, sigma_px=(1.0, 3.0)):
    g = torch.Generator().manual_seed(seed)
    # inside a sphere of radius box/4 so nothing leaves the box after rotation and shift
    d = torch.randn(n, 3, generator=g, dtype=dtype)
    d = d / d.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=g, dtype=dtype) ** (1 / 3)
    pos = d * (box / 4) * apix
    sig = (sigma_px[0] + (sigma_px[1] - sigma_px[0]) * torch.rand(n, generator=g, dtype=dtype)) * apix
    amp = 0.5 + torch.rand(n, generator=g, dtype=dtype)
    return pos, sig, amp


def reference_projection(volume, rotation, shift_angstrom, apix):
    """image(q) = sum_z map(A^T (q_x + o_x, q_y + o_y, z)) * apix, by cubic-spline interpolation (scipy)."""
    d = volume.shape[0]
    c = (np.arange(d) - d // 2) * apix
    qy, qx, z = np.meshgrid(c, c, c, indexing="ij")  # output pixel (y, x), integration variable z
    pts = np.stack([qx + shift_angstrom[0], qy + shift_angstrom[1], z], -1)  # image-frame points (x, y, z)
    r = pts @ rotation  # rows: A^T p  == p @ A
    idx = r / apix + d // 2  # (x, y, z) voxel indices
    vals = map_coordinates(volume, [idx[..., 2].ravel(), idx[..., 1].ravel(), idx[..., 0].ravel()], order=3,
                           mode="constant", cval=0.0)
    return vals.reshape(d, d, d).sum(-1) * apix


def test_single_gaussian_closed_form():
    apix, box = 1.3, 48
    pos = torch.tensor([[4.1, -2.7, 6.3]], dtype=torch.float64)
    sig = torch.tensor([2.2], dtype=torch.float64)
    amp = torch.tensor([1.7], dtype=torch.float64)
    rot = euler_relion_to_matrix(torch.tensor([[23.0, 71.0, -144.0]], dtype=torch.float64))
    shift = torch.tensor([[1.5, -0.8]], dtype=torch.float64)
    img = project_gaussians(pos, sig, amp, rot, shift, box, apix)[0].numpy()
    p = (rot[0] @ pos[0]).numpy()[:2] - shift[0].numpy()
    c = (np.arange(box) - box // 2) * apix
    yy, xx = np.meshgrid(c, c, indexing="ij")
    ref = 1.7 * math.sqrt(2 * math.pi) * 2.2 * np.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 2.2**2))
    assert np.linalg.norm(img - ref) / np.linalg.norm(ref) < 1e-6
    assert np.abs(img - ref).max() < 1e-12


def test_matches_voxel_rotation_reference():
    box, apix, n = 64, 1.0, 600
    pos, sig, amp = random_cloud(n, box, apix, seed=0)
    vol = voxelize_gaussians(pos, sig, amp, box, apix).numpy()
    rots = random_rotations(20, torch.Generator().manual_seed(1))
    shifts = torch.randn(20, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2.5
    imgs = project_gaussians(pos, sig, amp, rots, shifts, box, apix).numpy()
    errs = []
    for b in range(20):
        ref = reference_projection(vol, rots[b].numpy(), shifts[b].numpy(), apix)
        errs.append(np.linalg.norm(imgs[b] - ref) / np.linalg.norm(ref))
    assert max(errs) < 1e-2, errs


def test_voxelize_closed_form():
    pos = torch.tensor([[2.0, -3.0, 5.0]], dtype=torch.float64)
    vol = voxelize_gaussians(pos, torch.tensor([1.5], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64),
                             20, 1.0)
    c = np.arange(20) - 10
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    ref = 2.0 * np.exp(-((x - 2) ** 2 + (y + 3) ** 2 + (z - 5) ** 2) / (2 * 1.5**2))
    assert np.abs(vol.numpy() - ref).max() < 1e-12
    # the x axis of positions is the last array axis
    assert np.unravel_index(vol.numpy().argmax(), vol.shape) == (15, 7, 12)


def test_separable_equals_dense_and_chunking():
    box, apix = 24, 1.5
    pos, sig, amp = random_cloud(37, box, apix, seed=3)
    rots = random_rotations(4, torch.Generator().manual_seed(4))
    shifts = torch.randn(4, 2, dtype=torch.float64)
    a = project_gaussians(pos, sig, amp, rots, shifts, box, apix)
    b = project_gaussians_dense(pos, sig, amp, rots, shifts, box, apix)
    c = project_gaussians(pos, sig, amp, rots, shifts, box, apix, chunk_size=5)
    assert torch.allclose(a, b, atol=1e-12)
    assert torch.allclose(a, c, atol=1e-12)


def test_per_image_clouds_broadcast():
    box, apix = 16, 2.0
    pos, sig, amp = random_cloud(10, box, apix, seed=5)
    rots = random_rotations(3, torch.Generator().manual_seed(6))
    per = project_gaussians(pos.expand(3, -1, -1), sig.expand(3, -1), amp.expand(3, -1), rots, None, box, apix)
    shared = project_gaussians(pos, sig, amp, rots, None, box, apix)
    assert torch.allclose(per, shared, atol=1e-12)


def test_gradcheck_positions_widths_amplitudes():
    box, apix = 12, 2.0
    pos, sig, amp = random_cloud(5, box, apix, seed=7)
    rots = random_rotations(2, torch.Generator().manual_seed(8))
    shifts = torch.randn(2, 2, dtype=torch.float64)
    pos.requires_grad_(True)
    sig.requires_grad_(True)
    amp.requires_grad_(True)

    def f(p, s, a):
        return project_gaussians(p, s, a, rots, shifts, box, apix, chunk_size=2)

    assert torch.autograd.gradcheck(f, (pos, sig, amp), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_follow_inputs(device, dtype):
    box, apix = 64, 1.0
    pos, sig, amp = random_cloud(500, box, apix, seed=9)
    rots = random_rotations(8, torch.Generator().manual_seed(10))
    shifts = torch.randn(8, 2, dtype=torch.float64)
    ref = project_gaussians(pos, sig, amp, rots, shifts, box, apix)
    out = project_gaussians(*(t.to(device, dtype) for t in (pos, sig, amp, rots, shifts)), box, apix)
    assert out.device.type == device.type and out.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (torch.linalg.norm(out.double().cpu() - ref) / torch.linalg.norm(ref)).item() < tol
    vol_ref = voxelize_gaussians(pos, sig, amp, 32, 2.0)
    vol = voxelize_gaussians(*(t.to(device, dtype) for t in (pos, sig, amp)), 32, 2.0)
    assert (torch.linalg.norm(vol.double().cpu() - vol_ref) / torch.linalg.norm(vol_ref)).item() < tol


def test_compiled_renderer_matches_eager_forward_and_gradients(device):
    if device.type != "cuda":
        pytest.skip("the compiled renderer is the CUDA default; CPU uses the eager one")
    box, apix = 64, 1.0
    pos, sig, amp = (t.float().to(device) for t in random_cloud(700, box, apix, seed=11))
    rots = random_rotations(16, torch.Generator().manual_seed(12)).float().to(device)
    shifts = torch.randn(16, 2).to(device)
    target = torch.randn(16, box, box, device=device)
    grads = []
    for compiled in (False, True):
        p, s, a = (t.clone().requires_grad_(True) for t in (pos, sig, amp))
        img = project_gaussians(p.expand(16, -1, -1), s.expand(16, -1), a.expand(16, -1), rots, shifts, box, apix,
                                chunk_size=300, compiled=compiled)
        ((img - target) ** 2).mean().backward()
        grads.append((img.detach(), p.grad, s.grad, a.grad))
    for e, c in zip(grads[0], grads[1], strict=True):
        assert (torch.linalg.norm(e - c) / torch.linalg.norm(e)).item() < 1e-5
