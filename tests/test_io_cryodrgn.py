"""cryoDRGN pkl and original GaussianEM npy inputs give the poses/CTF of the equivalent RELION star."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import assert_same_angles, run, simulate, write_map, write_stack

from gaussianem.errors import InputError
from gaussianem.io import cryodrgn
from gaussianem.io.dataset import load_dataset


def r_from_relion(rot: float, tilt: float, psi: float) -> np.ndarray:
    """cryoDRGN's utils.R_from_relion, restated: Rz(psi)·Ry'(tilt)·Rz(rot) with four sign flips."""
    a, b, y = np.deg2rad([rot, tilt, psi])
    ra = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rb = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])
    ry = np.array([[np.cos(y), -np.sin(y), 0], [np.sin(y), np.cos(y), 0], [0, 0, 1]])
    r = ry @ rb @ ra
    r[0, 1] *= -1
    r[1, 0] *= -1
    r[1, 2] *= -1
    r[2, 1] *= -1
    return r


@pytest.fixture(scope="module")
def sim():
    return simulate(50, 24, 2.5, seed=21)


def ctf_array(sim: dict, box: int, apix: float) -> np.ndarray:
    c = sim["ctf"]
    return np.stack([np.full(len(c["cs_mm"]), box), np.full(len(c["cs_mm"]), apix), c["defocus_u_angstrom"],
                     c["defocus_v_angstrom"], c["defocus_angle_deg"], c["voltage_kv"], c["cs_mm"],
                     c["amplitude_contrast"], c["phase_shift_deg"]], 1)


def test_r_from_relion_is_relion_a(sim):
    rot = np.stack([r_from_relion(*e) for e in sim["euler"]])
    np.testing.assert_allclose(rot, sim["rotation"], atol=1e-12)


def test_cryodrgn_pkl(tmp_path, sim):
    d, apix = sim["box"], sim["apix"]
    write_stack(tmp_path / "particles.mrcs", sim["images"], 0.0)  # header without pixel size
    rot = np.stack([r_from_relion(*e) for e in sim["euler"]])
    trans = sim["shift"] / apix / d  # parse_pose_star: +origin (px) / D
    with open(tmp_path / "pose.pkl", "wb") as f:
        pickle.dump((rot, trans), f)
    with open(tmp_path / "ctf.pkl", "wb") as f:
        pickle.dump(ctf_array(sim, d, apix).astype(np.float32), f)
    mp = write_map(tmp_path / "map.mrc", sim)
    ds = load_dataset(run(tmp_path, tmp_path / "particles.mrcs", mp, poses=tmp_path / "pose.pkl",
                          ctf=tmp_path / "ctf.pkl"))
    assert ds.manifest["source_kind"] == "cryodrgn" and ds.pixel_size_angstrom == pytest.approx(apix)
    assert_same_angles(ds.rotations, sim["rotation"])
    np.testing.assert_allclose(ds.shifts_angstrom, sim["shift"], atol=1e-9)
    for k, v in sim["ctf"].items():
        np.testing.assert_allclose(ds.ctf[k], v, rtol=1e-6)
    assert ds.manifest["pose_check"]["ncc_as_is"] > 0.9
    ds.close()


def test_txt_list_of_downsampled_stacks_with_ctf_of_original_box(tmp_path, sim):
    """The CTF pkl describes the original 24 px / 2.5 Å box; the stacks were downsampled to 12 px (5 Å)."""
    import torch

    from gaussianem.physics.fourier import fourier_crop

    small = fourier_crop(torch.as_tensor(sim["images"], dtype=torch.float64), 12).numpy()
    write_stack(tmp_path / "a.mrcs", small[:20], 5.0)
    write_stack(tmp_path / "b.mrcs", small[20:], 5.0)
    (tmp_path / "list.txt").write_text("a.mrcs\nb.mrcs\n")
    cryodrgn.write_pose_pkl(tmp_path / "pose.pkl", sim["rotation"], sim["shift"], 24, 2.5)
    cryodrgn.write_ctf_pkl(tmp_path / "ctf.pkl", sim["ctf"], 24, 2.5)
    ds = load_dataset(run(tmp_path, tmp_path / "list.txt", write_map(tmp_path / "map.mrc", sim),
                          poses=tmp_path / "pose.pkl", ctf=tmp_path / "ctf.pkl"))
    assert ds.n == 50 and ds.box_size == 12 and ds.pixel_size_angstrom == pytest.approx(5.0)
    np.testing.assert_allclose(ds.shifts_angstrom, sim["shift"], atol=1e-9)
    np.testing.assert_allclose(np.asarray(ds.images), small, atol=1e-5)
    ds.close()


@pytest.mark.parametrize("ncol", [5, 11])
def test_gaussianem_npy(tmp_path, sim, ncol):
    d, apix = sim["box"], sim["apix"]
    write_stack(tmp_path / "p.mrcs", sim["images"], apix)
    px = sim["shift"] / apix
    if ncol == 5:
        arr = np.concatenate([sim["euler"], px], 1)
    else:
        arr = np.concatenate([sim["rotation"].reshape(-1, 9), px], 1)
    np.save(tmp_path / "poses.npy", arr)
    np.save(tmp_path / "ctf.npy", ctf_array(sim, d, apix))
    ds = load_dataset(run(tmp_path, tmp_path / "p.mrcs", write_map(tmp_path / "map.mrc", sim),
                          poses=tmp_path / "poses.npy", ctf=tmp_path / "ctf.npy"))
    assert ds.manifest["source_kind"] == "gaussianem-npy"
    assert_same_angles(ds.rotations, sim["rotation"])
    np.testing.assert_allclose(ds.shifts_angstrom, sim["shift"], atol=1e-9)
    np.testing.assert_allclose(ds.ctf["defocus_angle_deg"], sim["ctf"]["defocus_angle_deg"], atol=1e-9)
    ds.close()


def test_count_mismatch_and_missing_poses(tmp_path, sim):
    write_stack(tmp_path / "p.mrcs", sim["images"], sim["apix"])
    mp = write_map(tmp_path / "map.mrc", sim)
    cryodrgn.write_pose_pkl(tmp_path / "pose.pkl", sim["rotation"][:-1], sim["shift"][:-1], 24, 2.5)
    with pytest.raises(InputError, match="count mismatch"):
        run(tmp_path, tmp_path / "p.mrcs", mp, poses=tmp_path / "pose.pkl")
    cryodrgn.write_pose_pkl(tmp_path / "pose.pkl", sim["rotation"], sim["shift"], 24, 2.5)
    cryodrgn.write_ctf_pkl(tmp_path / "ctf.pkl", {k: v[:10] for k, v in sim["ctf"].items()}, 24, 2.5)
    with pytest.raises(InputError, match="count mismatch"):
        run(tmp_path, tmp_path / "p.mrcs", mp, poses=tmp_path / "pose.pkl", ctf=tmp_path / "ctf.pkl")
    with pytest.raises(InputError, match="--poses"):
        run(tmp_path, tmp_path / "p.mrcs", mp)
    # no CTF at all is fine: the check renders plain projections
    ds = load_dataset(run(tmp_path, tmp_path / "p.mrcs", mp, poses=tmp_path / "pose.pkl"))
    assert ds.ctf is None and not ds.manifest["has_ctf"]
    ds.close()
