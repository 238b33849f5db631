"""cryoDRGN's own test files through ``gaussianem preprocess`` (issue 18 acceptance).

The cryodrgn 3.4.3 sdist is fetched from PyPI at test time (its sha256 checked against PyPI's), kept in pytest's
cache (or the session's temporary folder with ``-p no:cacheprovider``), and the test skips, saying why, when
PyPI cannot be reached.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import starfile
import torch

from gaussianem.cli import main as cli_main
from gaussianem.io.dataset import load_dataset
from gaussianem.io.mrc import write_volume
from gaussianem.physics.rotation import euler_relion_to_matrix

VERSION = "3.4.3"
FILES = ["relion31.star", "relion31.mrcs", "toy_projections.star", "toy_projections.mrcs", "toy_rot_trans.pkl",
         "toy_projections_dir.star", "toy_datadir/toy_images_a.mrcs", "toy_datadir/toy_images_b.mrcs",
         "toymodel_small_nocenter.mrc", "hand.mrcs", "hand-vol.mrc", "hand_rot_trans.pkl", "hand_rot.pkl"]


def _sdist(folder: Path) -> Path:
    """The cryodrgn sdist in ``folder`` (downloaded once, checked against PyPI's sha256; a copy cached earlier is
    used when PyPI is unreachable)."""
    cached = folder / f"cryodrgn-{VERSION}.tar.gz"
    try:
        with urllib.request.urlopen("https://pypi.org/pypi/cryodrgn/json", timeout=20) as r:
            meta = json.load(r)
    except OSError:
        if cached.is_file():
            return cached
        raise
    sdist = next(u for u in meta["releases"][VERSION] if u["packagetype"] == "sdist")
    path = folder / sdist["filename"]
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sdist["digests"]["sha256"]:
        tmp = path.with_suffix(".part")
        with urllib.request.urlopen(sdist["url"], timeout=120) as r, open(tmp, "wb") as f:
            f.write(r.read())
        if hashlib.sha256(tmp.read_bytes()).hexdigest() != sdist["digests"]["sha256"]:
            pytest.fail(f"{sdist['url']}: sha256 differs from PyPI's")
        tmp.replace(path)
    return path


@pytest.fixture(scope="module")
def data(request, tmp_path_factory) -> Path:
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("cryodrgn-sdist") if cache is not None else tmp_path_factory.mktemp("cryodrgn-sdist")
    try:
        sdist = _sdist(Path(folder))
    except (OSError, ValueError, StopIteration, KeyError) as exc:  # URLError is an OSError
        pytest.skip(f"cryodrgn {VERSION} sdist not reachable on PyPI ({type(exc).__name__}: {exc})")
    out = tmp_path_factory.mktemp("cryodrgn-data")
    prefix = f"cryodrgn-{VERSION}/tests/data/"
    with tarfile.open(sdist) as tar:
        members = [tar.getmember(prefix + name) for name in FILES]
        tar.extractall(out, members=members, filter="data")
    return out / prefix


def _preprocess(*args) -> int:
    return cli_main(["preprocess", "--device", "cpu", "--n-check", "20", *[str(a) for a in args]])


def _pickle(path: Path):
    with open(path, "rb") as f:
        return pickle.load(f)  # noqa: S301 - a file of cryoDRGN's sdist, checked by sha256


def test_relion31_star(data, tmp_path):
    """5 particles, box 256 at 2.806 Å; no map ships with it: a small ball at the particles' pixel size."""
    g = np.arange(64) - 32
    ball = (np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) < 20).astype(np.float32)
    write_volume(tmp_path / "ball.mrc", ball, 2.806)
    assert _preprocess(data / "relion31.star", "-o", tmp_path / "ds", "--map", tmp_path / "ball.mrc",
                       "--box", 32) == 0
    ds = load_dataset(tmp_path / "ds")
    df = starfile.read(data / "relion31.star", always_dict=True)["particles"]
    assert ds.n == 5 and ds.manifest["original_pixel_size_angstrom"] == pytest.approx(2.806)
    assert ds.pixel_size_angstrom == pytest.approx(2.806 * 256 / 32) and ds.box_size == 32
    np.testing.assert_allclose(ds.shifts_angstrom, df[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(), atol=1e-9)

    angles = df[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    expected = euler_relion_to_matrix(torch.as_tensor(angles)).numpy()
    np.testing.assert_allclose(ds.rotations, expected, atol=1e-9)
    assert ds.manifest["has_ctf"] and ds.ctf["defocus_u_angstrom"][0] == pytest.approx(13108.082418)
    ds.close()


@pytest.mark.parametrize("star_name", ["toy_projections.star", "toy_projections_dir.star"])
def test_toy_star_without_poses_plus_pose_pickle(data, tmp_path, star_name):
    """1,000 toy projections (box 30, 1 Å from the MRC header) whose star has no pose columns: the poses come from
    toy_rot_trans.pkl; the map is cryoDRGN's binary toy model."""
    extra = ["--datadir", data / "toy_datadir"] if star_name.endswith("_dir.star") else []
    assert _preprocess(data / star_name, "-o", tmp_path / "ds", "--map", data / "toymodel_small_nocenter.mrc",
                       "--poses", data / "toy_rot_trans.pkl", *extra) == 0
    ds = load_dataset(tmp_path / "ds")
    rot, trans = _pickle(data / "toy_rot_trans.pkl")
    assert ds.n == 1000 and ds.box_size == 30 and ds.pixel_size_angstrom == pytest.approx(1.0)
    np.testing.assert_allclose(ds.rotations, rot, atol=1e-6)
    np.testing.assert_allclose(ds.shifts_angstrom, trans * 30 * 1.0, atol=1e-5)
    assert ds.manifest["map"]["n_gaussians"] == 180  # every voxel of the binary 0/1 model
    ds.close()


@pytest.mark.parametrize("poses", ["hand_rot_trans.pkl", "hand_rot.pkl"])
def test_hand_stack_with_its_map_and_poses(data, tmp_path, poses):
    """100 hand projections (box 64, 1 Å) with hand-vol.mrc: poses read, and the pose check finds them."""
    assert _preprocess(data / "hand.mrcs", "-o", tmp_path / "ds", "--map", data / "hand-vol.mrc", "--poses",
                       data / poses) == 0
    ds = load_dataset(tmp_path / "ds")
    obj = _pickle(data / poses)
    rot = obj[0] if isinstance(obj, tuple) else obj
    assert ds.n == 100 and ds.box_size == 64 and ds.pixel_size_angstrom == pytest.approx(1.0)
    np.testing.assert_allclose(ds.rotations, rot, atol=1e-6)
    if isinstance(obj, tuple):
        np.testing.assert_allclose(ds.shifts_angstrom, obj[1] * 64, atol=1e-5)
        pc = ds.manifest["pose_check"]
        assert pc["ncc_as_is"] > 0.5 and pc["ncc_as_is"] > pc["ncc_shuffled_poses"] + 0.1, pc
    else:
        assert not np.any(ds.shifts_angstrom)
    ds.close()
