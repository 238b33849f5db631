import numpy as np
import torch

from gaussianem.gaussians import GaussianCloud, cloud_from_map
from gaussianem.physics.fsc import fsc, fsc_auc
from gaussianem.physics.projection import voxelize_gaussians


def test_ply_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(50, 3, generator=g) * 10
    wid = 1.0 + torch.rand(50, generator=g)
    amp = torch.rand(50, generator=g) + 0.1
    cloud = GaussianCloud(pos, wid, amp, 0.9, 2.1)
    cloud.to_ply(tmp_path / "g.ply")
    back = GaussianCloud.from_ply(tmp_path / "g.ply")
    assert back.width_min == 0.9 and back.width_max == 2.1
    for a, b in zip(cloud.physical(), back.physical(), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*"))


def test_width_bounds_hold_for_any_raw_value():
    cloud = GaussianCloud(torch.zeros(3, 3), torch.tensor([1.0, 1.5, 1.9]), torch.ones(3), 1.0, 2.0)
    with torch.no_grad():
        cloud.width_raw.copy_(torch.tensor([-100.0, 0.0, 100.0]))
    w = cloud.widths
    assert (w >= 1.0).all() and (w <= 2.0).all()
    assert (cloud.amplitudes > 0).all()


def _smooth_map(seed: int) -> np.ndarray:
    """A 32³ map (1.5 Å voxels) made of 30 broad Gaussians (σ 3 Å)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(30, 3, generator=g, dtype=torch.float64) * 6
    return voxelize_gaussians(pos, torch.full((30,), 3.0, dtype=torch.float64), torch.ones(30, dtype=torch.float64),
                              32, 1.5).numpy()


def test_cloud_from_map_reproduces_the_map():
    # a smooth map made of broad Gaussians; the sampled cloud voxelised again must correlate well with it
    vol = _smooth_map(1)
    cloud = cloud_from_map(vol, 1.5, dtype=torch.float64)
    assert cloud.widths.min() >= 0.75 - 1e-9 and cloud.widths.max() <= 1.5 + 1e-9
    back = voxelize_gaussians(*cloud.physical(), 32, 1.5).detach()
    mass_ratio = back.sum().item() / vol[vol > 0].sum()
    assert 0.8 < mass_ratio < 1.1
    assert fsc_auc(fsc(torch.as_tensor(vol), back)) > 0.35
    assert np.isfinite(back.numpy()).all()


def test_atomic_outputs_get_umask_permissions(tmp_path):
    import os

    from gaussianem.io.writes import atomic_path

    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~mask


def test_cloud_from_map_at_interval_two_stays_smooth():
    """Every second voxel: ~8x fewer Gaussians, widths doubled with the spacing, the map still reproduced."""
    vol = _smooth_map(2)
    fine = cloud_from_map(vol, 1.5, dtype=torch.float64)
    coarse = cloud_from_map(vol, 1.5, interval=2, dtype=torch.float64)
    assert 5 < fine.n / coarse.n < 11
    assert coarse.width_min == 2 * fine.width_min and coarse.width_max == 2 * fine.width_max
    back = voxelize_gaussians(*coarse.physical(), 32, 1.5).detach().numpy()
    assert 0.8 < back.sum() / vol[vol > 0].sum() < 1.1
    inside = vol > 0.2 * vol.max()
    assert np.corrcoef(back[inside], vol[inside])[0, 1] > 0.95
    # the same spacing with interval-1 widths leaves holes between the Gaussians: clearly worse
    narrow = GaussianCloud(coarse.positions, torch.full((coarse.n,), fine.widths[0].item(), dtype=torch.float64),
                           coarse.amplitudes * (coarse.widths[0] / fine.widths[0]) ** 3, fine.width_min, fine.width_max)
    holes = voxelize_gaussians(*narrow.physical(), 32, 1.5).detach().numpy()
    assert np.corrcoef(holes[inside], vol[inside])[0, 1] < np.corrcoef(back[inside], vol[inside])[0, 1] - 0.02
