"""preprocess on real-world input shapes (issue 18): a star without poses/CTF plus cryoDRGN pickles, a pixel-size
mismatch between the map and the particles, maps with odd backgrounds, warnings about a costly cloud."""

from __future__ import annotations

import json

import numpy as np
import pytest
import starfile
from conftest import assert_same_angles, relion_columns, run, simulate, write_map, write_stack

from gaussianem.errors import InputError
from gaussianem.io.cryodrgn import write_ctf_pkl, write_pose_pkl
from gaussianem.io.dataset import load_dataset
from gaussianem.io.mrc import write_volume


@pytest.fixture(scope="module")
def sim24():
    return simulate(40, 24, 2.0, seed=11)


def _bare_star(folder, sim, poses: bool, ctf: bool, with_apix: bool = True, angst: bool = True):
    """A RELION 3.0 star whose pose and/or CTF columns are dropped (+ the stack it names)."""
    n = len(sim["images"])
    write_stack(folder / "stack.mrcs", sim["images"], sim["apix"])
    df = relion_columns(sim, [f"{i + 1}@stack.mrcs" for i in range(n)], angst=angst)
    if not poses:
        df = df.drop(columns=["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"])
    if not ctf:
        df = df.drop(columns=["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift"])
    else:
        df["rlnVoltage"], df["rlnSphericalAberration"], df["rlnAmplitudeContrast"] = 300.0, 2.7, 0.1
    if with_apix:
        df["rlnImagePixelSize"] = sim["apix"]
    path = folder / "noposes.star"
    starfile.write(df, path, float_format="%.12g")
    return path


def test_star_without_poses_takes_poses_and_ctf_pickles(tmp_path, sim24):
    star_path = _bare_star(tmp_path / "p", sim24, poses=False, ctf=False)
    write_pose_pkl(tmp_path / "poses.pkl", sim24["rotation"], sim24["shift"], 24, 2.0)
    write_ctf_pkl(tmp_path / "ctf.pkl", sim24["ctf"], 24, 2.0)
    out = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim24), poses=tmp_path / "poses.pkl",
              ctf=tmp_path / "ctf.pkl")
    ds = load_dataset(out)
    assert ds.n == 40 and ds.pixel_size_angstrom == pytest.approx(2.0)
    assert_same_angles(ds.rotations, sim24["rotation"], 1e-6)
    np.testing.assert_allclose(ds.shifts_angstrom, sim24["shift"], atol=1e-5)
    np.testing.assert_allclose(ds.ctf["defocus_u_angstrom"], sim24["ctf"]["defocus_u_angstrom"], rtol=1e-6)
    assert ds.manifest["pose_check"]["ncc_as_is"] > 0.9 and ds.manifest["poses_file"].endswith("poses.pkl")
    ds.close()


def test_star_without_pixel_size_takes_it_from_the_ctf_pickle(tmp_path, sim24):
    """No pixel size in the star nor in the stack header (0): the CTF pickle's (D, Apix) give it."""
    sim = dict(sim24, apix=0.0)
    star_path = _bare_star(tmp_path / "p", sim, poses=True, ctf=False, with_apix=False)
    write_ctf_pkl(tmp_path / "ctf.pkl", sim24["ctf"], 24, 2.0)
    out = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim24), ctf=tmp_path / "ctf.pkl")
    ds = load_dataset(out)
    assert ds.pixel_size_angstrom == pytest.approx(2.0) and ds.manifest["pose_check"]["ncc_as_is"] > 0.9
    ds.close()


def test_star_with_poses_refuses_a_second_set(tmp_path, sim24):
    star_path = _bare_star(tmp_path / "p", sim24, poses=True, ctf=True)
    mp = write_map(tmp_path / "map.mrc", sim24)
    write_pose_pkl(tmp_path / "poses.pkl", sim24["rotation"], sim24["shift"], 24, 2.0)
    write_ctf_pkl(tmp_path / "ctf.pkl", sim24["ctf"], 24, 2.0)
    with pytest.raises(InputError, match=r"carries its own poses \(rlnAngleRot.*drop --poses"):
        run(tmp_path, star_path, mp, poses=tmp_path / "poses.pkl")
    with pytest.raises(InputError, match=r"carries its own CTF \(rlnDefocusU.*drop --ctf"):
        run(tmp_path, star_path, mp, ctf=tmp_path / "ctf.pkl")
    assert not (tmp_path / "ds").exists()


def test_star_without_poses_needs_them_and_counts_must_agree(tmp_path, sim24):
    star_path = _bare_star(tmp_path / "p", sim24, poses=False, ctf=False)
    mp = write_map(tmp_path / "map.mrc", sim24)
    with pytest.raises(InputError, match="no poses.*--poses"):
        run(tmp_path, star_path, mp)
    write_pose_pkl(tmp_path / "short.pkl", sim24["rotation"][:30], sim24["shift"][:30], 24, 2.0)
    with pytest.raises(InputError, match="40 images but 30 poses"):
        run(tmp_path, star_path, mp, poses=tmp_path / "short.pkl")
    write_pose_pkl(tmp_path / "poses.pkl", sim24["rotation"], sim24["shift"], 24, 2.0)
    write_ctf_pkl(tmp_path / "ctf.pkl", {k: v[:35] for k, v in sim24["ctf"].items()}, 24, 2.0)
    with pytest.raises(InputError, match=r"images \(40\), CTF rows in ctf.pkl \(35\)"):
        run(tmp_path, star_path, mp, poses=tmp_path / "poses.pkl", ctf=tmp_path / "ctf.pkl")


# ------------------------------------------------------------------------------------------- pixel-size mismatch

@pytest.mark.parametrize("true_apix", [2.0, 6.0])
def test_pixel_size_mismatch_is_refused_with_the_remedy(tmp_path, true_apix, capsys):
    """Particles at ``true_apix`` whose stack header says 1 Å (a RELION 3.0 star without pixel size, origins in
    pixels), a map at the true sampling: refused (exit 2) naming --input-apix; with it the data pass the check."""
    sim = simulate(40, 24, true_apix, seed=12)
    star_path = _bare_star(tmp_path / "p", sim, poses=True, ctf=True, with_apix=False, angst=False)
    write_stack(tmp_path / "p" / "stack.mrcs", sim["images"], 1.0)
    mp = write_map(tmp_path / "map.mrc", sim)
    assert _cli([star_path, "-o", tmp_path / "out", "--map", mp, "--n-check", "40"]) == 2
    err = capsys.readouterr().err
    assert "pixel-size mismatch" in err and f"--input-apix {true_apix:g}" in err and "MRC headers" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    out = run(tmp_path, star_path, mp, input_apix=true_apix)
    pc = json.loads((out / "dataset.json").read_text())["pose_check"]
    assert pc["warning"] is None and pc["ncc_as_is"] > 0.9


def test_map_at_another_true_sampling_is_not_a_mismatch(tmp_path, sim24):
    """A map really sampled at 1.6 Å for particles at 2 Å passes: the pixel check stays silent."""
    from conftest import blob_model

    from gaussianem.physics.projection import voxelize_gaussians

    star_path = _bare_star(tmp_path / "p", sim24, poses=True, ctf=True)
    pos, sig, amp = blob_model(2.0)
    write_volume(tmp_path / "map.mrc", voxelize_gaussians(pos, sig, amp, 30, 1.6).numpy(), 1.6)
    out = run(tmp_path, star_path, tmp_path / "map.mrc")
    pc = json.loads((out / "dataset.json").read_text())["pose_check"]
    assert pc["warning"] is None and "pixel_size_check" not in pc


def _cli(args: list) -> int:
    from gaussianem.cli import main as cli_main

    return cli_main(["preprocess", "--device", "cpu"] + [str(a) for a in args])


# ----------------------------------------------------------------------------------- maps with odd backgrounds

def _object_mask(sim: dict) -> np.ndarray:
    return sim["volume"] > 0.2 * sim["volume"].max()


@pytest.mark.parametrize("kind", ["binary", "minus_one_background", "mean_subtracted"])
def test_automatic_contour_on_binary_and_negative_background_maps(tmp_path, sim24, kind):
    from gaussianem.gaussians import GaussianCloud, automatic_threshold

    mask = _object_mask(sim24)
    vol = {"binary": mask.astype(np.float32), "minus_one_background": np.where(mask, 1.0, -1.0).astype(np.float32),
           "mean_subtracted": (sim24["volume"] - sim24["volume"].mean()).astype(np.float32)}[kind]
    thr = automatic_threshold(vol)
    if kind != "mean_subtracted":
        assert vol[~mask].max() < thr < vol[mask].min()  # the contour separates the object from the solvent
    write_volume(tmp_path / "map.mrc", vol, 2.0)
    star_path = _bare_star(tmp_path / "p", sim24, poses=True, ctf=True)
    out = run(tmp_path, star_path, tmp_path / "map.mrc")
    m = json.loads((out / "dataset.json").read_text())
    cloud = GaussianCloud.from_ply(out / "gaussians_init.ply")
    if kind == "mean_subtracted":  # the same voxels as the map before the mean was subtracted (its 90 % contour)
        mask = sim24["volume"] > automatic_threshold(sim24["volume"]) * 0.97
    idx = np.round(cloud.positions.detach().numpy() / 2.0).astype(int) + 12  # (x, y, z) voxel indices
    on_object = mask[idx[:, 2], idx[:, 1], idx[:, 0]]
    assert on_object.all() and cloud.amplitudes.min() > 0
    assert 0.98 * mask.sum() <= cloud.n <= mask.sum()  # every object voxel, nothing of the solvent
    assert m["pose_check"]["ncc_as_is"] > 0.7 and m["pose_check"]["warning"] is None
