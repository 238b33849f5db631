"""cryoSPARC .cs input: the same particles described by a .cs and a RELION star give the same dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_angles, make_cs, run, simulate, write_map, write_relion31, write_stack
from scipy.spatial.transform import Rotation

from gaussianem.errors import InputError
from gaussianem.io import cryosparc
from gaussianem.io.dataset import load_dataset
from gaussianem.physics.rotation import rotvec_to_matrix


@pytest.fixture(scope="module")
def sim():
    return simulate(60, 24, 2.5, seed=11)


def test_rotvec_convention_matches_cryodrgn():
    """cryoDRGN: rot = expmap(pose)ᵀ with expmap Rodrigues; our reader must give the same matrix."""
    rv = np.random.default_rng(0).normal(size=(20, 3))
    cs = np.zeros(20, dtype=[("alignments3D/pose", "<f8", (3,)), ("alignments3D/shift", "<f8", (2,)),
                             ("blob/psize_A", "<f8")])
    cs["alignments3D/pose"], cs["blob/psize_A"] = rv, 1.0
    rot, _ = cryosparc.poses(cs, "x.cs")
    expected = np.transpose(Rotation.from_rotvec(rv).as_matrix(), (0, 2, 1))
    np.testing.assert_allclose(rot, expected, atol=1e-12)
    np.testing.assert_allclose(rotvec_to_matrix(torch.as_tensor(-rv)).numpy(), expected, atol=1e-12)
    back, _ = cryosparc.relion_to_cs_pose(rot, np.zeros((20, 2)), 1.0)
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), Rotation.from_rotvec(rv).as_matrix(),
                               atol=1e-12)


def test_cs_and_star_give_the_same_dataset(tmp_path, sim):
    proj = tmp_path / "proj"
    star_path = write_relion31(proj, sim, n_stacks=2)
    # the same stacks, named project-relative with cryoSPARC's '>' prefix; the .cs sits in proj/J12/
    n = len(sim["images"])
    split = np.array_split(np.arange(n), 2)
    paths, idx = [], []
    for k, rows in enumerate(split):
        paths += [f">Extract/job005/Movies/mic{k:03d}.mrcs"] * len(rows)
        idx += list(range(len(rows)))
    cs = make_cs(sim, paths, np.array(idx), sim["apix"])
    (proj / "J12").mkdir()
    cryosparc.write_cs(proj / "J12" / "particles.cs", cs)
    mp = write_map(tmp_path / "map.mrc", sim)
    a = load_dataset(run(tmp_path, star_path, mp, out="from_star", box=16))
    b = load_dataset(run(tmp_path, proj / "J12" / "particles.cs", mp, out="from_cs", box=16))
    assert b.manifest["source_kind"] == "cryosparc"
    assert_same_angles(b.rotations, a.rotations, tol=1e-6)  # .cs holds float32 rotation vectors
    assert_same_angles(b.rotations, sim["rotation"], tol=1e-6)
    np.testing.assert_allclose(b.shifts_angstrom, a.shifts_angstrom, atol=1e-5)
    for k in a.ctf:
        np.testing.assert_allclose(b.ctf[k], a.ctf[k], rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(b.images), np.asarray(a.images))
    assert b.manifest["pose_check"]["ncc_as_is"] > 0.9
    a.close()
    b.close()


def test_cs_datadir_and_missing_stack(tmp_path, sim):
    write_stack(tmp_path / "stacks" / "batch_000_particles.mrcs", sim["images"], sim["apix"])
    n = len(sim["images"])
    cs = make_cs(sim, [">J3/extract/batch_000_particles.mrcs"] * n, np.arange(n), sim["apix"], extra=False)
    cryosparc.write_cs(tmp_path / "meta" / "p.cs", cs)
    mp = write_map(tmp_path / "map.mrc", sim)
    with pytest.raises(InputError, match="missing"):
        run(tmp_path, tmp_path / "meta" / "p.cs", mp)
    ds = load_dataset(run(tmp_path, tmp_path / "meta" / "p.cs", mp, datadir=tmp_path / "stacks"))
    assert ds.n == n
    np.testing.assert_allclose(np.asarray(ds.images), sim["images"], atol=1e-6)
    ds.close()


def test_cs_missing_fields_and_garbage(tmp_path, sim):
    n = len(sim["images"])
    cs = make_cs(sim, ["s.mrcs"] * n, np.arange(n), sim["apix"])
    write_stack(tmp_path / "s.mrcs", sim["images"], sim["apix"])
    names = [f for f in cs.dtype.names if f != "alignments3D/pose"]
    cryosparc.write_cs(tmp_path / "nopose.cs", cs[names])
    mp = write_map(tmp_path / "map.mrc", sim)
    with pytest.raises(InputError, match="alignments3D/pose"):
        run(tmp_path, tmp_path / "nopose.cs", mp)
    (tmp_path / "junk.cs").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not a readable cryoSPARC"):
        run(tmp_path, tmp_path / "junk.cs", mp)


def test_passthrough_file_joined_by_uid(tmp_path, sim):
    """A refinement job's particles.cs keeps alignments and CTF, its passthrough file the blob fields (any order,
    extra rows): joined by uid, automatically beside it or given with --passthrough, it is the full .cs."""
    n = len(sim["images"])
    write_stack(tmp_path / "s.mrcs", sim["images"], sim["apix"])
    full = make_cs(sim, ["s.mrcs"] * n, np.arange(n), sim["apix"])
    mp = write_map(tmp_path / "map.mrc", sim)
    ref = load_dataset(run(tmp_path, _save(tmp_path / "full" / "particles.cs", full), mp, out="ref"))
    assert "source_passthrough" not in ref.manifest
    job = tmp_path / "J42"
    own = [f for f in full.dtype.names if not f.startswith("blob/")]
    base = _save(job / "J42_008_particles.cs", full[own])
    rng = np.random.default_rng(3)
    extra = full[:5].copy()
    extra["uid"] += 10**6  # rows of particles that the refinement dropped
    passthrough = np.concatenate([full, extra])[["uid", "blob/path", "blob/idx", "blob/shape", "blob/psize_A"]]
    _save(job / "J42_passthrough_particles.cs", passthrough[rng.permutation(len(passthrough))])
    _save(job / "J41_passthrough_particles.cs", passthrough[:3])  # another job's: never picked
    for kw, out in (({}, "auto"), ({"passthrough": [job / "J42_passthrough_particles.cs"]}, "given")):
        ds = load_dataset(run(tmp_path, base, mp, out=out, **kw))
        assert ds.manifest["source_passthrough"] == [str((job / "J42_passthrough_particles.cs").resolve())]
        np.testing.assert_array_equal(np.asarray(ds.images), np.asarray(ref.images))
        assert_same_angles(ds.rotations, ref.rotations, tol=0)
        np.testing.assert_array_equal(ds.shifts_angstrom, ref.shifts_angstrom)
        ds.close()
    ref.close()
    with pytest.raises(InputError, match="have no row"):
        run(tmp_path, base, mp, out="wrong", passthrough=[job / "J41_passthrough_particles.cs"])
    with pytest.raises(InputError, match="file not found"):
        run(tmp_path, base, mp, out="missing", passthrough=[job / "nothing.cs"])
    with pytest.raises(InputError, match="blob/path"):  # no passthrough beside it: the missing field is named
        run(tmp_path, _save(tmp_path / "alone" / "J7_particles.cs", full[own]), mp, out="alone_ds")


def _save(path, cs):
    path.parent.mkdir(parents=True, exist_ok=True)
    cryosparc.write_cs(path, cs)
    return path


def test_merge_cs_keeps_order_and_handles_padded_dtypes():
    """The join keeps the base's rows and order, takes only new fields, and accepts aligned (padded) dtypes."""
    base = np.zeros(3, dtype=np.dtype({"names": ["uid", "x"], "formats": ["<u8", "<f4"], "offsets": [0, 12],
                                       "itemsize": 24}))
    base["uid"], base["x"] = [5, 6, 7], [0.5, 0.6, 0.7]
    other = np.zeros(4, dtype=[("uid", "<u8"), ("x", "<f4"), ("blob/path", "S8"), ("alignments3D/pose", "<f4", (3,))])
    other["uid"], other["x"] = [7, 5, 6, 9], -1.0
    other["blob/path"] = [b"c", b"a", b"b", b"z"]
    other["alignments3D/pose"][:, 0] = [3, 1, 2, 9]
    m = cryosparc.merge_cs(base, [(other, "p.cs")], "b.cs")
    assert m.dtype.names == ("uid", "x", "blob/path", "alignments3D/pose")
    np.testing.assert_array_equal(m["x"], base["x"])  # the base's own values win
    assert m["blob/path"].tolist() == [b"a", b"b", b"c"]
    np.testing.assert_array_equal(m["alignments3D/pose"][:, 0], [1, 2, 3])
