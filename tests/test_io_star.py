"""RELION star parsing: image names, pixel sizes, optics merge, origins in pixels vs Å, CTF columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile

from gaussianem.errors import InputError
from gaussianem.io import star
from gaussianem.io.particles import ParticleImages, resolve_path


def test_image_names_one_based():
    df = pd.DataFrame({"rlnImageName": ["000001@a/b.mrcs", "12@c.mrcs", "single.mrc"]})
    idx, files = star.image_names(df, "x.star")
    assert idx.tolist() == [0, 11, 0] and files.tolist() == ["a/b.mrcs", "c.mrcs", "single.mrc"]
    with pytest.raises(InputError, match="non-integer"):
        star.image_names(pd.DataFrame({"rlnImageName": ["x@a.mrcs"]}), "x.star")
    with pytest.raises(InputError, match="start at 1"):
        star.image_names(pd.DataFrame({"rlnImageName": ["0@a.mrcs"]}), "x.star")


def test_pixel_size_rules():
    df = pd.DataFrame({"rlnDetectorPixelSize": [14.0], "rlnMagnification": [1e5]})
    assert star.pixel_size(df, "x")[0] == pytest.approx(1.4)
    df["rlnImagePixelSize"] = 1.3  # takes precedence
    assert star.pixel_size(df, "x")[0] == pytest.approx(1.3)
    assert star.pixel_size(pd.DataFrame({"a": [1]}), "x") is None


def test_optics_merge_and_particle_override(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnOpticsGroupName": ["g1", "g2"],
                           "rlnImagePixelSize": [1.0, 1.2], "rlnVoltage": [300.0, 200.0],
                           "rlnSphericalAberration": [2.7, 2.0], "rlnAmplitudeContrast": [0.1, 0.07],
                           "rlnImageSize": [64, 64]})
    parts = pd.DataFrame({"rlnImageName": ["1@s.mrcs", "2@s.mrcs", "3@s.mrcs"], "rlnOpticsGroup": [2, 1, 2],
                          "rlnAngleRot": [0.0, 10.0, 20.0], "rlnAngleTilt": [0.0, 30.0, 40.0],
                          "rlnAnglePsi": [0.0, 50.0, 60.0], "rlnOriginXAngst": [1.0, 2.0, 3.0],
                          "rlnOriginYAngst": [-1.0, -2.0, -3.0], "rlnDefocusU": [1e4, 2e4, 3e4],
                          "rlnDefocusV": [1e4, 2e4, 3e4], "rlnDefocusAngle": [0.0, 10.0, 20.0],
                          "rlnVoltage": [300.0, 300.0, 100.0]})
    starfile.write({"optics": optics, "particles": parts}, tmp_path / "p.star")
    st = star.read_star(tmp_path / "p.star")
    assert st.version == "3.1+" and len(st) == 3
    m = st.merged()
    np.testing.assert_allclose(star.pixel_size(m, "p"), [1.2, 1.0, 1.2])
    c = star.ctf(m, "p")
    np.testing.assert_allclose(c["voltage_kv"], [300.0, 300.0, 100.0])  # the particle column wins
    np.testing.assert_allclose(c["cs_mm"], [2.0, 2.7, 2.0])
    np.testing.assert_allclose(c["amplitude_contrast"], [0.07, 0.1, 0.07])
    np.testing.assert_allclose(c["phase_shift_deg"], 0.0)
    rot, shift = star.poses(m, star.pixel_size(m, "p"), "p")
    np.testing.assert_allclose(shift, [[1, -1], [2, -2], [3, -3]])
    np.testing.assert_allclose(rot[0], np.eye(3), atol=1e-12)


def test_origins_in_pixels_scale_with_pixel_size():
    df = pd.DataFrame({"rlnAngleRot": [0.0], "rlnAngleTilt": [0.0], "rlnAnglePsi": [0.0],
                       "rlnOriginX": [2.0], "rlnOriginY": [-3.0]})
    _, shift = star.poses(df, np.array([1.5]), "x")
    np.testing.assert_allclose(shift, [[3.0, -4.5]])
    with pytest.raises(InputError, match="pixel size"):
        star.poses(df, None, "x")


def test_missing_optics_group_and_columns(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [1.0]})
    parts = pd.DataFrame({"rlnImageName": ["1@s.mrcs"], "rlnOpticsGroup": [3]})
    starfile.write({"optics": optics, "particles": parts}, tmp_path / "p.star")
    with pytest.raises(InputError, match="optics group"):
        star.read_star(tmp_path / "p.star").merged()
    df = pd.DataFrame({"rlnDefocusU": [1.0]})
    with pytest.raises(InputError, match="rlnDefocusV"):
        star.ctf(df, "x")
    with pytest.raises(InputError, match="rlnAngleRot"):
        star.poses(df, None, "x")


def test_relion30_data_images_block(tmp_path):
    parts = pd.DataFrame({"rlnImageName": ["1@s.mrcs"], "rlnAngleRot": [1.0]})
    (tmp_path / "p.star").write_text("data_images\n\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n1@s.mrcs 1.0\n")
    st = star.read_star(tmp_path / "p.star")
    assert st.version == "3.0" and st.particles_key == "images" and st.particles["rlnAngleRot"].iloc[0] == 1.0
    assert parts.shape == (1, 2)


def test_path_resolution_project_relative(tmp_path):
    stack = tmp_path / "Extract" / "job1" / "s.mrcs"
    stack.parent.mkdir(parents=True)
    stack.write_bytes(b"")
    source = tmp_path / "Refine3D" / "job2" / "run_data.star"
    source.parent.mkdir(parents=True)
    assert resolve_path("Extract/job1/s.mrcs", source, None) == stack
    assert resolve_path("elsewhere/s.mrcs", source, stack.parent) == stack  # --datadir + basename
    assert resolve_path("Extract/job1/none.mrcs", source, None) is None


def test_chunked_reads_across_stacks(tmp_path):
    import mrcfile

    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 8, 8)).astype(np.float32)
    b = rng.normal(size=(5, 8, 8)).astype(np.int16)
    with mrcfile.new(tmp_path / "a.mrcs") as m:
        m.set_data(a)
    with mrcfile.new(tmp_path / "b.mrcs") as m:
        m.set_data(b)
    imgs = ParticleImages([tmp_path / "a.mrcs", tmp_path / "b.mrcs"], np.array([1, 0, 0, 1, 0]),
                          np.array([4, 6, 0, 0, 1]))
    got = imgs.read(np.array([4, 0, 1, 2, 3]))
    np.testing.assert_array_equal(got, np.stack([a[1], b[4], a[6], a[0], b[0]]).astype(np.float32))
    imgs.close()
    with pytest.raises(InputError, match="out of range"):
        ParticleImages([tmp_path / "a.mrcs"], np.array([0]), np.array([7]))
    raw = (tmp_path / "a.mrcs").read_bytes()
    (tmp_path / "t.mrcs").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(InputError, match="truncated"):
        ParticleImages([tmp_path / "t.mrcs"], np.array([0]), np.array([0]))
