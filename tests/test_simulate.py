"""Simulator (issue 4): forward-model equality through the written files, SNR, truth, volumes, presets, CLI."""

from __future__ import annotations

import json
import math

import mrcfile
import numpy as np
import pytest
import starfile
import torch

from gaussianem.cli import main as cli_main
from gaussianem.errors import InputError
from gaussianem.physics.ctf import ctf_rfft2
from gaussianem.physics.fourier import apply_filter_rfft2, lowpass_volume
from gaussianem.physics.projection import project_gaussians
from gaussianem.physics.rotation import euler_relion_to_matrix
from gaussianem.simulate.ensemble import build_ensemble
from gaussianem.simulate.presets import preset_dict
from gaussianem.simulate.simulator import simulate
from gaussianem.simulate.spec import load_spec, spec_from_dict
from gaussianem.simulate.structures import atom_sigma, sigma_from_resolution


def toy_spec(**overrides):
    d = preset_dict("toy")
    d.update({"n_particles": 48, "box": 32, "apix": 4.0, "volume_bins": 4, "chunk_size": 20, "seed": 3})
    d.update(overrides)
    return spec_from_dict(d)


def read_star_params(path):
    star = starfile.read(path, always_dict=True)
    optics, parts = star["optics"], star["particles"]
    og = optics.set_index("rlnOpticsGroup").loc[parts["rlnOpticsGroup"].to_numpy()]
    angles = torch.tensor(parts[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(), dtype=torch.float64)
    rot = euler_relion_to_matrix(angles)
    shift = torch.tensor(parts[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(), dtype=torch.float64)
    ctf = {
        "defocus_u_angstrom": parts["rlnDefocusU"].to_numpy(), "defocus_v_angstrom": parts["rlnDefocusV"].to_numpy(),
        "defocus_angle_deg": parts["rlnDefocusAngle"].to_numpy(), "phase_shift_deg": parts["rlnPhaseShift"].to_numpy(),
        "voltage_kv": og["rlnVoltage"].to_numpy(), "cs_mm": og["rlnSphericalAberration"].to_numpy(),
        "amplitude_contrast": og["rlnAmplitudeContrast"].to_numpy(),
    }
    ctf = {k: torch.tensor(np.asarray(v, np.float64)) for k, v in ctf.items()}
    return star, rot, shift, ctf


@pytest.mark.parametrize("contrast", ["white", "dark"])
def test_noise_free_particles_equal_forward_model(tmp_path, contrast):
    spec = toy_spec(snr=None, contrast=contrast)
    simulate(spec, tmp_path)
    star, rot, shift, ctf = read_star_params(tmp_path / "particles.star")
    parts, optics = star["particles"], star["optics"]
    assert len(parts) == spec.n_particles
    assert float(optics["rlnImagePixelSize"][0]) == spec.apix and int(optics["rlnImageSize"][0]) == spec.box
    names = parts["rlnImageName"].str.split("@")
    assert [int(s[0]) for s in names] == list(range(1, spec.n_particles + 1))
    assert set(s[1] for s in names) == {"particles.mrcs"}
    truth = np.load(tmp_path / "truth.npz")
    np.testing.assert_allclose(rot.numpy(), truth["rotation"], atol=1e-6)
    with mrcfile.open(tmp_path / "particles.mrcs") as m:
        images = torch.tensor(np.asarray(m.data, dtype=np.float64))
        assert m.voxel_size.x == pytest.approx(spec.apix)
    # the forward model of docs/DESIGN.md, in float64, from what the star file says
    ens = build_ensemble(spec)
    pos = ens.positions(truth["coordinate"], dtype=torch.float64)
    amp = ens.amplitudes(truth["state"], dtype=torch.float64)
    sig = torch.full((ens.n_atoms,), ens.sigma, dtype=torch.float64)
    ref = project_gaussians(pos, sig, amp, rot, shift, spec.box, spec.apix)
    ref = apply_filter_rfft2(ref, ctf_rfft2(spec.box, spec.apix, ctf, dtype=torch.float64))
    sign = -1.0 if contrast == "dark" else 1.0
    rel = (images - sign * ref).abs().max() / ref.abs().max()
    assert rel < 1e-3
    assert images.shape == (spec.n_particles, spec.box, spec.box)
    # not trivially zero: the particles differ from each other
    assert images.std(dim=0).mean() > 0.1 * images.std()


def test_measured_snr_matches_request(tmp_path):
    clean_spec = toy_spec(snr=None, n_particles=64)
    noisy_spec = toy_spec(snr=0.05, n_particles=64)
    simulate(clean_spec, tmp_path / "clean")
    summary = simulate(noisy_spec, tmp_path / "noisy")
    with mrcfile.open(tmp_path / "clean" / "particles.mrcs") as m:
        clean = np.asarray(m.data, dtype=np.float64)
    with mrcfile.open(tmp_path / "noisy" / "particles.mrcs") as m:
        noisy = np.asarray(m.data, dtype=np.float64)
    noise = noisy - clean
    measured = clean.var(axis=(1, 2)).mean() / noise.var()
    assert measured == pytest.approx(0.05, rel=0.05)
    assert abs(noise.mean()) < 0.05 * noise.std()
    assert summary["noise"]["noise_variance"] == pytest.approx(clean.var(axis=(1, 2)).mean() / 0.05, rel=1e-4)


def test_truth_volumes_and_consensus(tmp_path):
    spec = toy_spec(snr=1.0, consensus_resolution_angstrom=10.0)
    summary = simulate(spec, tmp_path)
    truth = np.load(tmp_path / "truth.npz")
    n = spec.n_particles
    assert truth["state"].shape == (n,) and truth["coordinate"].shape == (n,) and truth["volume_index"].shape == (n,)
    assert truth["rotation"].shape == (n, 3, 3) and truth["shift_angstrom"].shape == (n, 2)
    assert set(np.unique(truth["state"])) == {0, 1}
    assert truth["coordinate"].min() >= 0 and truth["coordinate"].max() <= 1
    bins = np.clip(np.floor(truth["coordinate"] * spec.volume_bins), 0, spec.volume_bins - 1)
    np.testing.assert_array_equal(truth["volume_index"], truth["state"] * spec.volume_bins + bins)
    # shifts of a few pixels
    assert 0.5 * spec.shift_std_px < truth["shift_angstrom"].std() / spec.apix < 1.5 * spec.shift_std_px
    table = summary["volumes"]
    assert len(table) == 2 * spec.volume_bins
    assert sum(r["n_particles"] for r in table) == n
    mean = 0.0
    for r in table:
        with mrcfile.open(tmp_path / r["file"]) as m:
            vol = np.asarray(m.data, dtype=np.float64)
        mean = mean + vol * r["n_particles"] / n
    expected = lowpass_volume(torch.tensor(mean), 10.0, spec.apix, cutoff_edge_shells=2.0).numpy()
    with mrcfile.open(tmp_path / "consensus.mrc") as m:
        consensus = np.asarray(m.data, dtype=np.float64)
        assert m.voxel_size.x == pytest.approx(spec.apix)
    np.testing.assert_allclose(consensus, expected, atol=1e-4 * np.abs(expected).max())
    # the density integrates to the atoms' weights (Z = 50 per toy pseudo-atom)
    ens = build_ensemble(spec)
    with mrcfile.open(tmp_path / table[0]["file"]) as m:
        total = float(np.asarray(m.data, dtype=np.float64).sum()) * spec.apix**3
    assert total == pytest.approx(float(ens.weights[ens.keep[0]].sum()), rel=0.02)
    auc = summary["fsc_auc_extremes"]
    assert auc["min_between"] < auc["self"] - 0.05
    saved = json.loads((tmp_path / "simulation.json").read_text())
    assert saved["spec"]["n_particles"] == n and saved["preset"] == "toy"


def test_sigma_relation():
    d = 6.0
    s = sigma_from_resolution(d)
    # the Fourier amplitude of the Gaussian, exp(-2π²σ²s²), is 1/2 at s = 1/d
    assert math.exp(-2 * math.pi**2 * s**2 / d**2) == pytest.approx(0.5)
    assert atom_sigma(None, 2.0) == 2.0
    assert atom_sigma(20.0, 2.0) == pytest.approx(sigma_from_resolution(20.0))
    assert atom_sigma(4.0, 2.0) == 2.0


def test_hinge_is_rigid_rotation():
    spec = toy_spec()
    ens = build_ensemble(spec)
    pos = ens.positions(np.array([0.0, 1.0]), dtype=torch.float64).numpy()
    moving = ens.hinge_moving
    np.testing.assert_allclose(pos[0], ens.base, atol=1e-9)
    np.testing.assert_allclose(pos[1][~moving], ens.base[~moving], atol=1e-9)
    a, b = pos[0][moving] - ens.hinge_pivot, pos[1][moving] - ens.hinge_pivot
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1), atol=1e-9)
    # rotation about z by 45°: components along the axis unchanged, in-plane angle 45°
    np.testing.assert_allclose(a[:, 2], b[:, 2], atol=1e-9)
    ang = np.degrees(np.arctan2(b[:, 1], b[:, 0]) - np.arctan2(a[:, 1], a[:, 0])) % 360
    np.testing.assert_allclose(ang, 45.0, atol=1e-6)
    # centred on the weighted centroid of the full state
    np.testing.assert_allclose((ens.base * ens.weights[:, None]).sum(0) / ens.weights.sum(), 0, atol=1e-9)


def test_spec_yaml_and_bad_input(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("preset: toy\nn_particles: 12\nbox: 32\napix: 4.0\nsnr: .inf\ncontrast: dark\n")
    spec = load_spec(spec_file)
    assert spec.n_particles == 12 and spec.snr is None and spec.contrast == "dark" and spec.hinge is not None
    (tmp_path / "bad.yaml").write_text("preset: toy\nnot_a_key: 3\n")
    with pytest.raises(InputError, match="not_a_key"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="box"):
        toy_spec(box=33).validate()
    with pytest.raises(InputError, match="chains"):
        build_ensemble(toy_spec(states=[{"name": "x", "remove_chains": ["Z"]}]))
    assert cli_main(["simulate", "--preset", "toy", str(spec_file), "-o", str(tmp_path / "o")]) == 2
    assert cli_main(["simulate", "-o", str(tmp_path / "o")]) == 2


def test_cli_toy(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = cli_main(["simulate", "--preset", "toy", "-o", str(out), "--n-particles", "10", "--box", "32", "--apix",
                   "4", "--snr", "0.2", "--seed", "5", "--volume-bins", "2", "--device", "cpu"])
    assert rc == 0
    assert "particles.star" in capsys.readouterr().out
    for name in ("particles.star", "particles.mrcs", "truth.npz", "consensus.mrc", "simulation.json"):
        assert (out / name).is_file()
    assert sorted(p.name for p in (out / "volumes").iterdir()) == [f"vol_{i:03d}.mrc" for i in range(4)]
    assert json.loads((out / "simulation.json").read_text())["snr"] == 0.2


def _needs_mdanalysis_tests():
    pytest.importorskip("MDAnalysisTests", reason="the adk/tcr presets read MDAnalysisTests data (the bench extra)")
    pytest.importorskip("MDAnalysis", reason="the adk preset reads its trajectory with MDAnalysis (the bench extra)")


@pytest.mark.parametrize("preset,box,apix", [("adk", 32, 4.0), ("tcr-compositional", 32, 6.0),
                                              ("tcr-mixed", 32, 6.0)])
def test_structure_presets(tmp_path, preset, box, apix):
    _needs_mdanalysis_tests()
    d = preset_dict(preset)
    d.update({"n_particles": 6, "box": box, "apix": apix, "volume_bins": 3})
    summary = simulate(spec_from_dict(d), tmp_path)
    truth = np.load(tmp_path / "truth.npz")
    assert truth["state"].shape == (6,)
    with mrcfile.open(tmp_path / "particles.mrcs") as m:
        assert m.data.shape == (6, box, box) and np.isfinite(m.data).all()
    auc = summary["fsc_auc_extremes"]
    assert auc["min_between"] < auc["self"] - 0.03, auc
    if preset == "adk":
        f = truth["coordinate"] * 97
        np.testing.assert_allclose(f, np.rint(f), atol=1e-9)  # coordinate = frame / 97
        assert summary["motion"] == "trajectory" and summary["n_atoms"] == 1656
    if preset == "tcr-compositional":
        assert summary["n_states"] >= 3 and summary["motion"] == "none"
    if preset == "tcr-mixed":
        assert summary["n_states"] == 2 and summary["motion"] == "hinge"


def test_adk_frames_superimposed_on_core():
    _needs_mdanalysis_tests()
    ens = build_ensemble(spec_from_dict(preset_dict("adk")))
    assert ens.frames.shape == (98, 1656, 3)
    d = np.linalg.norm(ens.frames - ens.frames[0], axis=-1)
    rms_all = np.sqrt((d**2).mean(1))
    assert rms_all[-1] > 5.0  # closed -> open moves the LID and NMP domains
    assert np.unique(ens.weights).tolist() == [6.0, 7.0, 8.0, 16.0]  # C, N, O, S


@pytest.mark.parametrize("shared", [True, False])
def test_windowed_render_equals_reference(device, shared):
    from gaussianem.physics.rotation import random_rotations
    from gaussianem.simulate.render import project_gaussians_windowed

    gen = torch.Generator().manual_seed(0)
    b, g, box, apix, sigma = 5, 70, 24, 2.0, 2.3
    pos = torch.randn((g, 3) if shared else (b, g, 3), generator=gen, dtype=torch.float64) * 12
    pos[..., :3, :] = 30.0  # some Gaussians at / beyond the box edge
    amp = torch.rand(b, g, generator=gen, dtype=torch.float64)
    rot = random_rotations(b, generator=gen)
    shift = torch.randn(b, 2, generator=gen, dtype=torch.float64) * 3
    args = [t.to(device) for t in (pos, amp, rot, shift)]
    sig = torch.full((g,), sigma, dtype=torch.float64, device=device)
    ref = project_gaussians(args[0], sig, args[1], args[2], args[3], box, apix)
    fast = project_gaussians_windowed(args[0], sigma, args[1], args[2], args[3], box, apix)
    assert (fast - ref).abs().max() <= 1e-7 * ref.abs().max()


@pytest.mark.parametrize("contrast", ["white", "dark"])
def test_simulated_star_preprocesses(tmp_path, contrast):
    pytest.importorskip("gaussianem.commands.preprocess", reason="preprocess (issue 3) is not in this checkout")
    from gaussianem.io.dataset import load_dataset

    sim, ds = tmp_path / "sim", tmp_path / "ds"
    simulate(toy_spec(n_particles=40, snr=2.0, contrast=contrast), sim)
    rc = cli_main(["preprocess", str(sim / "particles.star"), "-o", str(ds), "--map", str(sim / "consensus.mrc"),
                   "--n-check", "40"])
    assert rc == 0
    data = load_dataset(ds)
    truth = np.load(sim / "truth.npz")
    assert data.n == 40 and data.box_size == 32 and data.pixel_size_angstrom == pytest.approx(4.0)
    assert data.manifest["contrast"] == ("inverted" if contrast == "dark" else "as-is")
    np.testing.assert_allclose(data.rotations, truth["rotation"], atol=1e-5)
    np.testing.assert_allclose(data.shifts_angstrom, truth["shift_angstrom"], atol=1e-5)
    np.testing.assert_allclose(data.ctf["defocus_u_angstrom"], truth["defocus_u_angstrom"], rtol=1e-6)
    with mrcfile.open(sim / "particles.mrcs") as m:
        raw = np.asarray(m.data, dtype=np.float64)
    sign = -1.0 if contrast == "dark" else 1.0
    np.testing.assert_allclose(np.asarray(data.images, np.float64), sign * raw, atol=1e-4 * np.abs(raw).max())
    data.close()


def test_bin_representative_follows_frame_weights():
    """A trajectory bin's ground-truth volume is drawn at the frame its particles come from: the middle frame
    without weights, the weighted median with them (one-hot weights on frame 7, one bin -> frame 7)."""
    from gaussianem.simulate.ensemble import Ensemble

    f = 20
    ens = Ensemble(base=np.zeros((2, 3)), weights=np.ones(2), sigma=1.0, keep=np.ones((1, 2), bool),
                   state_names=["s"], state_probabilities=np.ones(1), n_bins=1, frames=np.zeros((f, 2, 3)))
    assert ens.bin_coordinates()[0] == pytest.approx(10 / (f - 1))
    ens.frame_weights = np.eye(f)[7]
    assert ens.bin_coordinates()[0] == pytest.approx(7 / (f - 1))
    ens.n_bins = 4  # bins of 5 frames; weights only in the first bin, uniform over its frames 0-4
    ens.frame_weights = np.r_[np.ones(5), np.zeros(15)] / 5
    np.testing.assert_allclose(ens.bin_coordinates() * (f - 1), [2, 7, 12, 17])
    rng = np.random.default_rng(0)
    assert set(ens.frame_of(ens.sample_coordinates(200, rng))) <= set(range(5))
