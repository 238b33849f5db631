"""preprocess on real-world input shapes (issue 18): a star without poses/CTF plus cryoDRGN pickles, a pixel-size
mismatch between the map and the particles, maps with odd backgrounds, warnings about a costly cloud."""

from __future__ import annotations

import numpy as np
import pytest
import starfile
from conftest import assert_same_angles, relion_columns, run, simulate, write_map, write_stack

from gaussianem.errors import InputError
from gaussianem.io.cryodrgn import write_ctf_pkl, write_pose_pkl
from gaussianem.io.dataset import load_dataset


@pytest.fixture(scope="module")
def sim24():
    return simulate(40, 24, 2.0, seed=11)


def _bare_star(folder, sim, poses: bool, ctf: bool, with_apix: bool = True):
    """A RELION 3.0 star whose pose and/or CTF columns are dropped (+ the stack it names)."""
    n = len(sim["images"])
    write_stack(folder / "stack.mrcs", sim["images"], sim["apix"])
    df = relion_columns(sim, [f"{i + 1}@stack.mrcs" for i in range(n)])
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
