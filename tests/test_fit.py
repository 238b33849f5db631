"""Homogeneous fit: improves a low-passed initial cloud towards the truth; pruning, densification, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud, cloud_from_map
from gaussianem.io.dataset import (
    GAUSSIANS_INIT,
    MANIFEST,
    PARTICLES,
    load_dataset,
    write_ctf,
    write_poses,
)
from gaussianem.io.mrc import read_volume, write_volume
from gaussianem.io.writes import write_json_atomic
from gaussianem.physics.fourier import lowpass_volume
from gaussianem.physics.fsc import fsc, fsc_auc
from gaussianem.physics.projection import voxelize_gaussians
from gaussianem.physics.rotation import random_rotations
from gaussianem.training.config import FitConfig, StrategyConfig
from gaussianem.training.fit import fit_cloud, render_batch
from gaussianem.training.fit_outputs import map_origin_for_box
from gaussianem.training.strategy import DensifyPruneStrategy


def truth_cloud(box: int, apix: float, n: int = 40, seed: int = 0) -> GaussianCloud:
    """A compact random 'molecule': Gaussians of width ~1 px inside a sphere of radius box/5."""
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=g, dtype=torch.float64) ** (1 / 3)
    pos = d * (box / 5) * apix
    sig = torch.full((n,), 1.0 * apix, dtype=torch.float64)
    amp = 0.5 + torch.rand(n, generator=g, dtype=torch.float64)
    return GaussianCloud(pos, sig, amp, 0.5 * apix, 2.0 * apix)


def make_dataset(root: Path, n: int = 300, box: int = 24, apix: float = 2.0, snr: float = 1.0,
                 lowpass_angstrom: float = 10.0, seed: int = 0, image_scale: float = 37.0,
                 init_cloud: GaussianCloud | None = None) -> tuple[Path, np.ndarray]:
    """Write a dataset folder (io/dataset.py layout) from a known cloud; returns (root, ground-truth volume).

    Images carry an arbitrary ``image_scale`` relative to the cloud so the fit's amplitude scaling is exercised.
    The initial cloud is sampled from the low-passed truth (the 'consensus map', also written and recorded).
    """
    root.mkdir(parents=True, exist_ok=True)
    truth = truth_cloud(box, apix, seed=seed)
    pos, sig, amp = (t.detach() for t in truth.physical())
    gt = voxelize_gaussians(pos, sig, amp, box, apix).numpy()
    g = torch.Generator().manual_seed(seed + 1)
    rot = random_rotations(n, generator=g)
    shift = torch.randn(n, 2, generator=g, dtype=torch.float64) * apix
    ctf = {
        "defocus_u_angstrom": 10000 + 20000 * torch.rand(n, generator=g, dtype=torch.float64),
        "defocus_angle_deg": 180 * torch.rand(n, generator=g, dtype=torch.float64),
        "voltage_kv": torch.full((n,), 300.0, dtype=torch.float64),
        "cs_mm": torch.full((n,), 2.7, dtype=torch.float64),
        "amplitude_contrast": torch.full((n,), 0.1, dtype=torch.float64),
        "phase_shift_deg": torch.zeros(n, dtype=torch.float64),
    }
    ctf["defocus_v_angstrom"] = ctf["defocus_u_angstrom"] - 200
    clean = render_batch(pos, sig, amp * image_scale, rot, shift, ctf, box, apix)
    noise_std = math.sqrt(float(clean.var()) / snr)
    images = clean + noise_std * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    import mrcfile

    with mrcfile.new(root / PARTICLES, overwrite=True) as m:
        m.set_data(images.numpy().astype(np.float32))
        m.voxel_size = apix
    write_poses(root, rot.numpy(), shift.numpy())
    write_ctf(root, {k: v.numpy() for k, v in ctf.items()})
    lp = lowpass_volume(torch.as_tensor(gt), lowpass_angstrom, apix).numpy()
    write_volume(root / "consensus_map.mrc", lp, apix, (10.0, -4.0, 2.0))
    init = init_cloud if init_cloud is not None else cloud_from_map(lp, apix)
    init.to_ply(root / GAUSSIANS_INIT)
    write_json_atomic(root / MANIFEST, {
        "n_particles": n, "box_size": box, "pixel_size_angstrom": apix, "original_box_size": box,
        "original_pixel_size_angstrom": apix, "contrast": "as-is", "image_std": float(images.std()),
        "map": {"path": "consensus_map.mrc"},
    })
    return root, gt


def cloud_auc(cloud: GaussianCloud, gt: np.ndarray, box: int, apix: float) -> float:
    vol = voxelize_gaussians(*(t.detach().double().cpu() for t in cloud.physical()), box, apix)
    return fsc_auc(fsc(vol, torch.as_tensor(gt, dtype=torch.float64)))


QUICK = FitConfig(epochs=2, batch_size=16, lr=1e-1, lr_final=1e-2,
                  strategy=StrategyConfig(densify=False, prune=False))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root, gt = make_dataset(tmp_path_factory.mktemp("fitdata") / "ds")
    return root, gt


def test_fit_improves_fsc_against_truth(dataset_dir, device):
    root, gt = dataset_dir
    ds = load_dataset(root)
    init = GaussianCloud.from_ply(ds.gaussians_init)
    auc0 = cloud_auc(init, gt, 24, 2.0)
    result = fit_cloud(ds, init, QUICK, device=device, progress=False)
    auc1 = cloud_auc(result.cloud, gt, 24, 2.0)
    assert result.amplitude_scale > 0
    assert auc1 > auc0 + 0.04, (auc0, auc1)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    # amplitudes are in image units: the fitted cloud's mass matches the truth's times the image scale
    pos, sig, amp = (t.detach().double().cpu() for t in result.cloud.physical())
    mass = float((amp * sig**3).sum()) * (2 * math.pi) ** 1.5
    assert mass == pytest.approx(float(gt.sum()) * 2.0**3 * 37.0, rel=0.15)


def test_dark_particles_are_refused(tmp_path):
    root, _ = make_dataset(tmp_path / "dark", n=40, image_scale=-5.0)
    ds = load_dataset(root)
    with pytest.raises(InputError, match="anti-correlate"):
        fit_cloud(ds, GaussianCloud.from_ply(ds.gaussians_init), QUICK, progress=False)


def test_prune_removes_zero_amplitude_gaussians():
    cloud = truth_cloud(24, 2.0, n=30)
    with torch.no_grad():
        cloud.amplitude_raw[[3, 7, 11]] = -30.0  # softplus -> ~1e-13
    opt = torch.optim.Adam([cloud.amplitude_raw, cloud.width_raw], lr=1e-3)
    cloud.amplitude_raw.sum().backward()
    opt.step()  # creates Adam state that must follow the survivors
    before_pos = cloud.positions.detach().clone()
    before_state = opt.state[cloud.amplitude_raw]["exp_avg"].clone()
    strat = DensifyPruneStrategy(StrategyConfig(densify=False, prune_every=1, start_step=0), cloud.n)
    ev = strat.step(cloud, opt, step=1, total_steps=10)
    assert ev.pruned == 3 and cloud.n == 27
    keep = [i for i in range(30) if i not in (3, 7, 11)]
    assert torch.equal(cloud.positions.detach(), before_pos[keep])
    assert opt.param_groups[0]["params"][0] is cloud.amplitude_raw
    assert torch.equal(opt.state[cloud.amplitude_raw]["exp_avg"], before_state[keep])
    opt.step()  # the optimizer still works on the new parameters


def test_densify_adds_where_gradients_are_high():
    cloud = truth_cloud(24, 2.0, n=30)
    cloud.positions.requires_grad_(True)
    cfg = StrategyConfig(densify=True, prune=False, densify_every=5, start_step=0, grad_factor=3.0,
                         max_densify_fraction=0.5)
    strat = DensifyPruneStrategy(cfg, cloud.n)
    pull = torch.zeros(30, 3, dtype=torch.float64)
    pull[[2, 9]] = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cloud.width_raw[9] = 5.0  # wide: will be split; Gaussian 2 stays narrow: cloned
    mass0 = float((cloud.amplitudes * cloud.widths**3).sum().detach())
    old_pos = cloud.positions.detach().clone()
    wid = cloud.widths.detach().clone()
    for step in range(1, 6):
        cloud.positions.grad = pull + 0.01 * torch.randn(30, 3, generator=g, dtype=torch.float64)
        strat.after_backward(cloud)
        ev = strat.step(cloud, None, step, total_steps=100)
    assert (ev.cloned, ev.split) == (1, 1) and cloud.n == 32
    new = cloud.positions.detach()
    # the clone of 2 sits one width downhill (+x); the split children of 9 straddle it along z
    assert torch.allclose(new[30], old_pos[2] + torch.tensor([wid[2], 0, 0], dtype=torch.float64), atol=0.05)
    assert torch.allclose(new[2], old_pos[2])
    assert new[9, 2] < old_pos[9, 2] - 1.0 and new[31, 2] > old_pos[9, 2] + 1.0
    assert torch.allclose((new[9] + new[31]) / 2, old_pos[9], atol=1e-6)
    mass1 = float((cloud.amplitudes * cloud.widths**3).sum().detach())
    assert mass1 == pytest.approx(mass0, rel=1e-6)


def test_fit_densifies_into_missing_density(tmp_path):
    # the initial cloud lacks one lobe of the molecule: densification must grow Gaussians towards it
    box, apix = 24, 2.0
    truth = truth_cloud(box, apix)
    pos = truth.positions.detach()
    missing = pos[:, 0] > 4.0
    partial = truth.subset(~missing)
    root, gt = make_dataset(tmp_path / "ds", n=200, snr=10.0, init_cloud=partial)
    ds = load_dataset(root)
    cfg = FitConfig(epochs=1, batch_size=8, lr=5e-2, lr_final=5e-3,
                    strategy=StrategyConfig(densify=True, prune=False, densify_every=10, start_step=10,
                                            max_densify_fraction=0.2))
    result = fit_cloud(ds, GaussianCloud.from_ply(ds.gaussians_init), cfg, progress=False)
    added = result.cloud.positions.detach()[partial.n:]
    assert len(added) > 0
    # the new Gaussians lie mostly on the missing side
    assert float((added[:, 0] > pos[~missing, 0].mean()).float().mean()) > 0.7


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    root, _ = make_dataset(tmp_path / "ds", n=64)
    ds = load_dataset(root)
    cfg = FitConfig(epochs=2, batch_size=16, lr=2e-2, lr_final=1e-3, train_positions=True,
                    strategy=StrategyConfig(densify=True, prune_every=3, densify_every=3, start_step=2,
                                            grad_factor=1.5))
    full = fit_cloud(ds, GaussianCloud.from_ply(ds.gaussians_init), cfg, tmp_path / "a", progress=False)

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # killed after the first epoch's checkpoint
        fit_cloud(ds, GaussianCloud.from_ply(ds.gaussians_init), cfg, tmp_path / "b", progress=False,
                  epoch_callback=interrupt)
    resumed = fit_cloud(ds, GaussianCloud.from_ply(ds.gaussians_init), cfg, tmp_path / "b", resume=True,
                        progress=False)
    assert len(resumed.history) == 2
    assert resumed.cloud.n == full.cloud.n
    for a, b in zip(resumed.cloud.physical(), full.cloud.physical(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert resumed.history[1]["loss"] == pytest.approx(full.history[1]["loss"], rel=1e-6)
    with pytest.raises(InputError, match="nothing to resume"):
        fit_cloud(ds, GaussianCloud.from_ply(ds.gaussians_init), cfg, tmp_path / "c", resume=True, progress=False)


def test_cli_writes_outputs_placed_on_the_input_map(tmp_path, capsys):
    from gaussianem.cli import main

    root, gt = make_dataset(tmp_path / "ds", n=96)
    write_volume(tmp_path / "gt.mrc", gt, 2.0)
    out = tmp_path / "fit"
    rc = main(["fit", str(root), "-o", str(out), "--epochs", "1", "--batch-size", "16", "--lr", "0.02",
               "--no-progress", "--reference", str(tmp_path / "gt.mrc")])
    assert rc == 0
    assert "fit done" in capsys.readouterr().out
    for name in ("gaussians.ply", "consensus.mrc", "fsc.txt", "fsc.json", "fsc.png", "fsc_reference.json",
                 "fit.json", "fit_checkpoint.pt"):
        assert (out / name).is_file(), name
    vol, apix, origin = read_volume(out / "consensus.mrc")
    assert vol.shape == (24, 24, 24) and apix == pytest.approx(2.0)
    assert origin == pytest.approx((10.0, -4.0, 2.0))  # the input map's origin (same box and pixel size)
    summary = json.loads((out / "fit.json").read_text())
    ref = json.loads((out / "fsc_reference.json").read_text())
    assert summary["fsc_reference"]["fsc_auc"] == pytest.approx(ref["fsc_auc"])
    assert 0.3 < ref["fsc_auc"] <= 0.5 and len(ref["fsc"]) == 12
    assert summary["fsc_input_map"]["fsc_auc"] > 0.3
    # the fitted consensus is the voxelised PLY
    cloud = GaussianCloud.from_ply(out / "gaussians.ply")
    again = voxelize_gaussians(*(t.detach().double() for t in cloud.physical()), 24, 2.0).numpy()
    assert np.allclose(again, vol, rtol=1e-3, atol=1e-3 * np.abs(vol).max())
    # bad input: exit code 2, no traceback
    assert main(["fit", str(tmp_path / "nowhere")]) == 2
    assert main(["fit", str(root), "--epochs", "0"]) == 2


def test_origin_for_a_cropped_box():
    # a 128-voxel 1 Å map and a 64-voxel 2 Å working box share the centre: same origin
    assert map_origin_for_box((5.0, 6.0, 7.0), 128, 1.0, 64, 2.0) == pytest.approx((5.0, 6.0, 7.0))
    # a smaller physical box is offset by the difference of the centres
    assert map_origin_for_box((0.0, 0.0, 0.0), 100, 1.0, 32, 2.0) == pytest.approx((18.0, 18.0, 18.0))
