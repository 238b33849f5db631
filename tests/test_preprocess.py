"""preprocess: inputs of every kind -> dataset folder; optics groups; pose/contrast check; bad input."""

from __future__ import annotations

import json
import logging
import math

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from conftest import (
    assert_same_angles,
    blob_model,
    optics_table,
    relion_columns,
    run,
    simulate,
    write_map,
    write_relion31,
    write_stack,
)

from gaussianem.cli import main as cli_main
from gaussianem.errors import InputError
from gaussianem.io.dataset import load_dataset
from gaussianem.io.mrc import write_volume
from gaussianem.physics.ctf import ctf_rfft2
from gaussianem.physics.fourier import apply_filter_rfft2
from gaussianem.physics.projection import project_gaussians, voxelize_gaussians
from gaussianem.preprocess.geometry import plan_geometry

# ------------------------------------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def sim32():
    return simulate(60, 32, 2.0, seed=1)


def test_relion31_roundtrip_and_contract(tmp_path, sim32):
    star_path = write_relion31(tmp_path / "proj", sim32)
    mp = write_map(tmp_path / "map.mrc", sim32)
    out = run(tmp_path, star_path, mp, box=24)
    ds = load_dataset(out)
    m = ds.manifest
    assert ds.n == 60 and ds.box_size == 24 and ds.images.shape == (60, 24, 24)
    assert ds.pixel_size_angstrom == pytest.approx(2.0 * 32 / 24)
    assert m["original_box_size"] == 32 and m["original_pixel_size_angstrom"] == 2.0
    assert m["source_kind"] == "relion-3.1+" and m["n_particles"] == 60
    assert_same_angles(ds.rotations, sim32["rotation"])
    np.testing.assert_allclose(ds.shifts_angstrom, sim32["shift"], atol=1e-9)
    for k, v in sim32["ctf"].items():
        np.testing.assert_allclose(ds.ctf[k], v, rtol=1e-9)
    np.testing.assert_array_equal(ds.source_index, np.arange(60))
    pc = m["pose_check"]
    assert pc["n_sampled"] == 60 and pc["decision"] == "as-is" and m["contrast"] == "as-is"
    assert pc["ncc_as_is"] >= 0.9 and pc["ncc_inverted"] == pytest.approx(-pc["ncc_as_is"])
    assert pc["warning"] is None
    assert m["image_std"] == pytest.approx(float(np.asarray(ds.images, np.float64).std()), rel=1e-4)
    with mrcfile.open(out / "particles.mrcs") as f:
        assert f.voxel_size.x == pytest.approx(2.0 * 32 / 24, rel=1e-5)
        assert f.header.dmax == pytest.approx(float(ds.images.max()), rel=1e-5)
    assert (out / "gaussians_init.ply").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds")]  # no temp folder left
    ds.close()


def test_fourier_crop_of_stack_matches_physics(tmp_path, sim32):
    from gaussianem.physics.fourier import fourier_crop

    star_path = write_relion31(tmp_path / "proj", sim32)
    out = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim32), box=16, chunk=7)
    ds = load_dataset(out)
    ref = fourier_crop(torch.as_tensor(sim32["images"], dtype=torch.float64), 16).numpy()
    np.testing.assert_allclose(np.asarray(ds.images), ref, atol=1e-5 * np.abs(ref).max())
    ds.close()


def test_relion30_pixels_and_dark_particles(tmp_path):
    sim = simulate(50, 32, 1.5, seed=2, dark=True)
    folder = tmp_path / "r30"
    write_stack(folder / "Particles" / "stack.mrcs", sim["images"], 1.5)
    df = relion_columns(sim, [f"{i + 1}@Particles/stack.mrcs" for i in range(50)], angst=False)
    df["rlnVoltage"], df["rlnSphericalAberration"], df["rlnAmplitudeContrast"] = 300.0, 2.7, 0.1
    df["rlnDetectorPixelSize"], df["rlnMagnification"] = 15.0, 100000.0  # 15 µm / 1e5 = 1.5 Å
    starfile.write(df, folder / "particles.star", float_format="%.12g")
    out = run(tmp_path, folder / "particles.star", write_map(tmp_path / "map.mrc", sim))
    ds = load_dataset(out)
    assert ds.manifest["source_kind"] == "relion-3.0" and ds.pixel_size_angstrom == pytest.approx(1.5)
    np.testing.assert_allclose(ds.shifts_angstrom, sim["shift"], atol=1e-6)
    assert_same_angles(ds.rotations, sim["rotation"])
    pc = ds.manifest["pose_check"]
    assert pc["decision"] == "inverted" and pc["ncc_inverted"] >= 0.9
    np.testing.assert_allclose(np.asarray(ds.images), -sim["images"], atol=1e-5)  # stored white
    ds.close()


def test_user_sign_contradicting_data_is_refused(tmp_path, sim32):
    star_path = write_relion31(tmp_path / "proj", sim32)
    with pytest.raises(InputError, match="--invert contradicts"):
        run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim32), invert=True)
    assert not (tmp_path / "ds").exists()
    out = run(tmp_path, star_path, tmp_path / "map.mrc", invert=False)
    assert json.loads((out / "dataset.json").read_text())["pose_check"]["user_choice"] == "as-is"


def test_shuffled_poses_warn(tmp_path, sim32, caplog):
    sim = dict(sim32)
    perm = np.random.default_rng(5).permutation(len(sim["images"]))
    sim["euler"], sim["shift"] = sim["euler"][perm], sim["shift"][perm]
    star_path = write_relion31(tmp_path / "proj", sim)
    with caplog.at_level(logging.WARNING):
        out = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim32))
    pc = json.loads((out / "dataset.json").read_text())["pose_check"]
    assert abs(pc["ncc_as_is"]) < 0.2 and pc["warning"] is not None
    assert "POSE CHECK" in caplog.text


def test_noisy_data_pick_sign_without_warning(tmp_path):
    sim = simulate(200, 24, 2.5, seed=3, noise=3.0, dark=True)
    star_path = write_relion31(tmp_path / "proj", sim)
    out = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim))
    pc = json.loads((out / "dataset.json").read_text())["pose_check"]
    assert pc["decision"] == "inverted" and pc["warning"] is None
    assert 0.05 < pc["ncc_inverted"] < 0.9


def test_optics_groups_with_different_pixel_sizes(tmp_path):
    # group 1: box 32 at 2.0 Å; group 2: the same field of view at box 40, 1.6 Å (Fourier crop 40 -> 16);
    # group 3: box 50 at 1.6 Å, a wider field of view (Fourier crop 50 -> 20, then centre crop 20 -> 16)
    a = simulate(40, 32, 2.0, seed=4)
    b = simulate(40, 40, 1.6, seed=5)
    c = simulate(40, 50, 1.6, seed=6)
    folder = tmp_path / "proj"
    dfs = []
    for g, sim in enumerate([a, b, c], start=1):
        rel = f"Extract/g{g}.mrcs"
        write_stack(folder / rel, sim["images"], sim["apix"])
        df = relion_columns(sim, [f"{i + 1}@{rel}" for i in range(40)])
        df["rlnOpticsGroup"] = g
        dfs.append(df)
    optics = optics_table([(1, 2.0, 32), (2, 1.6, 40), (3, 1.6, 50)])
    star_path = folder / "particles.star"
    starfile.write({"optics": optics, "particles": pd.concat(dfs, ignore_index=True)}, star_path,
                   float_format="%.12g")
    out = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", a), box=16)
    ds = load_dataset(out)
    assert ds.n == 120 and ds.box_size == 16 and ds.pixel_size_angstrom == pytest.approx(4.0)
    groups = {g["box_size"]: g["resampled_box_size"] for g in ds.manifest["input_groups"]}
    assert groups == {32: 16, 40: 16, 50: 20}
    np.testing.assert_allclose(ds.shifts_angstrom, np.concatenate([a["shift"], b["shift"], c["shift"]]), atol=1e-9)
    # every group, downsampled to 4 Å, shows the same physical object as a fresh render at 4 Å
    truth = []
    for sim in (a, b, c):
        pos, sig, amp = blob_model(sim["apix"])
        img = project_gaussians(pos, sig, amp, torch.as_tensor(sim["rotation"]), torch.as_tensor(sim["shift"]),
                                16, 4.0)
        params = {k: torch.as_tensor(v) for k, v in sim["ctf"].items()}
        truth.append(apply_filter_rfft2(img, ctf_rfft2(16, 4.0, params, dtype=torch.float64)).numpy())
    truth = np.concatenate(truth)
    got = np.asarray(ds.images)
    for g in range(3):
        sl = slice(40 * g, 40 * g + 40)
        ncc = np.corrcoef(got[sl].ravel(), truth[sl].ravel())[0, 1]
        assert ncc > 0.97, (g, ncc)
    assert ds.manifest["pose_check"]["ncc_as_is"] > 0.85
    ds.close()


def test_optics_pixel_size_not_reachable_is_refused():
    with pytest.raises(InputError, match="within 1%"):
        plan_geometry(np.array([32, 33]), np.array([2.0, 1.0]), 16, None)  # 33 px at 1 Å -> 4 Å: box 8.25


def test_geometry_rules():
    g = plan_geometry(np.array([128]), np.array([1.0]), 64, None)
    assert (g.box, g.pixel_size) == (64, 2.0)
    g = plan_geometry(np.array([128]), np.array([1.0]), None, 2.0)
    assert (g.box, g.pixel_size) == (64, 2.0)
    with pytest.raises(InputError, match="odd"):
        plan_geometry(np.array([128]), np.array([1.0]), 63, None)
    with pytest.raises(InputError, match="larger"):
        plan_geometry(np.array([128]), np.array([1.0]), 130, None)


def test_map_at_other_pixel_size(tmp_path, sim32):
    """The consensus map may come at another sampling; the Gaussians stay in Å and the check still passes."""
    star_path = write_relion31(tmp_path / "proj", sim32)
    pos, sig, amp = blob_model(2.0)
    vol = voxelize_gaussians(pos, sig, amp, 40, 1.6).numpy()
    write_volume(tmp_path / "map.mrc", vol, 1.6)
    out = run(tmp_path, star_path, tmp_path / "map.mrc", box=24)
    m = json.loads((out / "dataset.json").read_text())
    assert m["map"]["box_size"] == 40 and m["pose_check"]["ncc_as_is"] > 0.9


# ---------------------------------------------------------------------------------------------------- bad input

def _cli(args: list[str]) -> int:
    return cli_main(["preprocess"] + [str(a) for a in args])


def test_bad_inputs_exit_2_and_leave_nothing(tmp_path, sim32, capsys):
    folder = tmp_path / "proj"
    star_path = write_relion31(folder, sim32)
    mp = write_map(tmp_path / "map.mrc", sim32)
    out = tmp_path / "out"

    def check(args, needle):
        assert _cli(args) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]

    check([tmp_path / "nope.star", "-o", out, "--map", mp], "file not found")
    check([star_path, "-o", out, "--map", tmp_path / "nomap.mrc"], "file not found")
    check([star_path, "-o", out, "--map", mp, "--box", 15], "odd")
    check([star_path, "-o", out, "--map", mp, "--box", 64], "larger")
    # missing required columns
    blocks = starfile.read(star_path, always_dict=True)
    bad = folder / "Refine3D" / "job010" / "noangles.star"
    starfile.write({"optics": blocks["optics"], "particles": blocks["particles"].drop(columns=["rlnAngleTilt"])},
                   bad)
    check([bad, "-o", out, "--map", mp], "rlnAngleTilt")
    # image index out of range
    p = blocks["particles"].copy()
    p.loc[3, "rlnImageName"] = "000999@Extract/job005/Movies/mic000.mrcs"
    bad = folder / "Refine3D" / "job010" / "badindex.star"
    starfile.write({"optics": blocks["optics"], "particles": p}, bad)
    check([bad, "-o", out, "--map", mp], "out of range")
    # stacks the star names but that are missing
    p = blocks["particles"].copy()
    p["rlnImageName"] = p["rlnImageName"].str.replace("mic001", "gone")
    bad = folder / "Refine3D" / "job010" / "missing.star"
    starfile.write({"optics": blocks["optics"], "particles": p}, bad)
    check([bad, "-o", out, "--map", mp], "missing")
    # corrupted MRC header
    (folder / "Extract/job005/Movies/mic001.mrcs").write_bytes(b"garbage" * 100)
    check([star_path, "-o", out, "--map", mp], "not a readable MRC")
    # pixel size needed but absent (3.0 star without pixel size, stack header without voxel size)
    sim = sim32
    write_stack(tmp_path / "s" / "st.mrcs", sim["images"], 0.0)
    df = relion_columns(sim, [f"{i + 1}@st.mrcs" for i in range(60)], angst=False)
    df["rlnVoltage"], df["rlnSphericalAberration"], df["rlnAmplitudeContrast"] = 300.0, 2.7, 0.1
    starfile.write(df, tmp_path / "s" / "p.star")
    check([tmp_path / "s" / "p.star", "-o", out, "--map", mp], "pixel size is needed but absent")


def test_nonfinite_pixels_refused_or_dropped(tmp_path, sim32, capsys):
    sim = dict(sim32)
    images = sim["images"].copy()
    images[[5, 17], 3, 4] = np.nan
    images[30, 0, 0] = np.inf
    sim["images"] = images
    star_path = write_relion31(tmp_path / "proj", sim)
    mp = write_map(tmp_path / "map.mrc", sim32)
    assert _cli([star_path, "-o", tmp_path / "out", "--map", mp]) == 2
    assert "3 particle image(s) hold non-finite pixels" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert _cli([star_path, "-o", tmp_path / "out", "--map", mp, "--drop-bad", "--chunk", "8"]) == 0
    ds = load_dataset(tmp_path / "out")
    keep = np.setdiff1d(np.arange(60), [5, 17, 30])
    assert ds.n == 57 and ds.manifest["dropped"]["n"] == 3 and ds.manifest["dropped"]["source_rows"] == [5, 17, 30]
    np.testing.assert_array_equal(ds.source_index, keep)
    np.testing.assert_allclose(np.asarray(ds.images), sim32["images"][keep], atol=1e-5)
    assert_same_angles(ds.rotations, sim32["rotation"][keep])
    assert np.isfinite(np.asarray(ds.images)).all()
    ds.close()


def test_existing_outdir_needs_overwrite(tmp_path, sim32):
    star_path = write_relion31(tmp_path / "proj", sim32)
    mp = write_map(tmp_path / "map.mrc", sim32)
    run(tmp_path, star_path, mp, box=16)
    with pytest.raises(InputError, match="not empty"):
        run(tmp_path, star_path, mp, box=16)
    out = run(tmp_path, star_path, mp, box=24, overwrite=True)
    assert json.loads((out / "dataset.json").read_text())["box_size"] == 24
    assert math.isfinite(json.loads((out / "dataset.json").read_text())["image_std"])


def test_gaussian_interval_and_cap(tmp_path, sim32, capsys):
    """--gaussian-interval 2 samples every second voxel (fewer, wider Gaussians), --max-gaussians caps the count;
    both are recorded; a non-positive value is refused before any work."""
    from gaussianem.gaussians import GaussianCloud

    star_path = write_relion31(tmp_path / "proj", sim32)
    mp = write_map(tmp_path / "map.mrc", sim32)
    fine = run(tmp_path / "a", star_path, mp)
    coarse = run(tmp_path / "b", star_path, mp, gaussian_interval=2)
    capped = run(tmp_path / "c", star_path, mp, max_gaussians=50)
    clouds = [GaussianCloud.from_ply(p / "gaussians_init.ply") for p in (fine, coarse, capped)]
    assert 4 < clouds[0].n / clouds[1].n < 12 and clouds[2].n == 50
    assert clouds[1].width_max == pytest.approx(2 * clouds[0].width_max)
    m = [json.loads((p / "dataset.json").read_text())["map"] for p in (fine, coarse)]
    assert m[0]["gaussian_interval"] == 1 and m[1]["gaussian_interval"] == 2
    assert m[1]["n_gaussians"] == clouds[1].n
    assert _cli([star_path, "--map", mp, "-o", tmp_path / "d", "--gaussian-interval", "0"]) == 2
    assert "--gaussian-interval 0 must be positive" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())
