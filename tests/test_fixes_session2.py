"""Fixes: MDAnalysisTests references in YAML specs; rlnCtfBfactor carried into ctf.npz; the consensus map's frame
(origin, box, voxel) recorded in dataset.json."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
import torch
from test_preprocess import run, simulate, write_map, write_relion31

from gaussianem.io.dataset import load_dataset
from gaussianem.io.mrc import map_origin_angstrom
from gaussianem.physics.ctf import ctf_rfft2
from gaussianem.simulate.ensemble import build_ensemble
from gaussianem.simulate.presets import resolve_data_path
from gaussianem.simulate.spec import load_spec, resolve_source_path

# ------------------------------------------------------------------------------------ 1. YAML spec source paths


def _pdb(path: Path, coords: np.ndarray, chain: str = "A") -> Path:
    lines = [f"ATOM  {i + 1:5d}  CA  ALA {chain}{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
             for i, (x, y, z) in enumerate(coords)]
    path.write_text("\n".join(lines + ["END"]) + "\n")
    return path


@pytest.fixture
def fake_mdanalysis_tests(tmp_path, monkeypatch):
    """A stand-in MDAnalysisTests package: ``datafiles.TINY`` and ``data/sub/tiny.pdb`` (5 atoms)."""
    root = tmp_path / "fake_mdat"
    (root / "data" / "sub").mkdir(parents=True)
    pdb = _pdb(root / "data" / "sub" / "tiny.pdb", np.arange(15, dtype=float).reshape(5, 3) * 1.5)
    pkg = types.ModuleType("MDAnalysisTests")
    pkg.__path__ = [str(root)]
    datafiles = types.ModuleType("MDAnalysisTests.datafiles")
    datafiles.__file__ = str(root / "datafiles.py")
    datafiles.TINY = str(pdb)
    pkg.datafiles = datafiles
    monkeypatch.setitem(sys.modules, "MDAnalysisTests", pkg)
    monkeypatch.setitem(sys.modules, "MDAnalysisTests.datafiles", datafiles)
    return pdb


def test_resolve_source_path_rules(tmp_path):
    base = tmp_path / "specs"
    assert resolve_source_path("MDAnalysisTests:PSF", base) == "MDAnalysisTests:PSF"
    assert resolve_source_path("MDAnalysisTests:mmcif/1BD2.cif.gz", base) == "MDAnalysisTests:mmcif/1BD2.cif.gz"
    assert resolve_source_path("model.cif", base) == str((base / "model.cif").resolve())
    assert resolve_source_path("../x/model.cif", base) == str((tmp_path / "x" / "model.cif").resolve())
    assert resolve_source_path(str(tmp_path / "abs.pdb"), base) == str(tmp_path / "abs.pdb")


def test_yaml_preset_keeps_mdanalysis_references(tmp_path):
    spec_file = tmp_path / "adk.yaml"
    spec_file.write_text("preset: adk\nn_particles: 4\n")
    src = load_spec(spec_file).source
    assert src["topology"] == "MDAnalysisTests:PSF" and src["trajectory"] == "MDAnalysisTests:DCD"


def test_yaml_mdanalysis_reference_resolves_through_the_package(tmp_path, fake_mdanalysis_tests):
    pdb = fake_mdanalysis_tests
    folder = tmp_path / "specs"
    folder.mkdir()
    for name, value in [("by_path.yaml", "MDAnalysisTests:sub/tiny.pdb"), ("by_attr.yaml", "MDAnalysisTests:TINY")]:
        spec_file = folder / name
        spec_file.write_text(f'source: {{kind: structure, path: "{value}"}}\nbox: 32\napix: 2.0\n')
        spec = load_spec(spec_file)
        assert spec.source["path"] == value
        assert resolve_data_path(spec.source["path"]) == str(pdb)
        ens = build_ensemble(spec)
        assert ens.n_atoms == 5
        # centred copy of the file's coordinates
        want = np.arange(15, dtype=float).reshape(5, 3) * 1.5
        np.testing.assert_allclose(ens.base, want - want.mean(0), atol=1e-3)
    # a plain relative path still resolves against the YAML's folder
    _pdb(folder / "local.pdb", np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    (folder / "local.yaml").write_text("source: {kind: structure, path: local.pdb}\n")
    spec = load_spec(folder / "local.yaml")
    assert spec.source["path"] == str((folder / "local.pdb").resolve())
    assert build_ensemble(spec).n_atoms == 3


def test_yaml_real_mdanalysis_structure(tmp_path):
    pytest.importorskip("MDAnalysisTests", reason="reads mmcif/1BD2.cif.gz from MDAnalysisTests (the bench extra)")
    spec_file = tmp_path / "tcr.yaml"
    spec_file.write_text('source: {kind: structure, path: "MDAnalysisTests:mmcif/1BD2.cif.gz"}\nbox: 64\n'
                         "apix: 3.0\n")
    ens = build_ensemble(load_spec(spec_file))
    assert ens.n_atoms > 3000  # the TCR-pMHC complex, heavy atoms


# ---------------------------------------------------------------------------------------- 2. rlnCtfBfactor


def _add_star_column(star_path: Path, name: str, values: np.ndarray) -> None:
    blocks = starfile.read(star_path, always_dict=True)
    blocks["particles"][name] = values
    starfile.write(blocks, star_path, float_format="%.12g")


def test_rln_ctf_bfactor_reaches_ctf_npz(tmp_path):
    sim = simulate(24, 32, 2.0, seed=5)
    star_path = write_relion31(tmp_path / "proj", sim)
    bfac = np.linspace(0.0, 150.0, 24)
    _add_star_column(star_path, "rlnCtfBfactor", bfac)
    ds_dir = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim))
    with np.load(ds_dir / "ctf.npz") as f:
        assert "bfactor" in f.files
        np.testing.assert_allclose(f["bfactor"], bfac, atol=1e-9)
        np.testing.assert_allclose(f["defocus_u_angstrom"], sim["ctf"]["defocus_u_angstrom"], rtol=1e-9)
    ds = load_dataset(ds_dir)
    batch = ds.ctf_batch(np.array([0, 23]), dtype=torch.float64)
    # the B-factor reaches the CTF: envelope exp(-B s²/4) at Nyquist (s = 1/(2·apix)) for B = 150 Å²
    with_b = ctf_rfft2(32, 2.0, batch, dtype=torch.float64)
    without_b = ctf_rfft2(32, 2.0, {k: v for k, v in batch.items() if k != "bfactor"}, dtype=torch.float64)
    s2 = (1 / 4.0) ** 2
    assert with_b[1, 0, 16] / without_b[1, 0, 16] == pytest.approx(np.exp(-150.0 * s2 / 4), rel=1e-9)
    assert with_b[0, 0, 16] == pytest.approx(float(without_b[0, 0, 16]), rel=1e-12)  # B = 0
    ds.close()


def test_no_bfactor_column_no_key(tmp_path):
    sim = simulate(12, 32, 2.0, seed=6)
    star_path = write_relion31(tmp_path / "proj", sim, n_stacks=1)
    ds_dir = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim))
    with np.load(ds_dir / "ctf.npz") as f:
        assert "bfactor" not in f.files and len(f["phase_shift_deg"]) == 12


def test_cryosparc_ctf_bfactor():
    from gaussianem.io import cryosparc

    dtype = [("ctf/df1_A", "<f4"), ("ctf/df2_A", "<f4"), ("ctf/df_angle_rad", "<f4"), ("ctf/accel_kv", "<f4"),
             ("ctf/cs_mm", "<f4"), ("ctf/amp_contrast", "<f4"), ("ctf/bfactor", "<f4")]
    cs = np.zeros(3, dtype)
    cs["ctf/df1_A"] = cs["ctf/df2_A"] = 1e4
    cs["ctf/bfactor"] = [0.0, 25.0, 80.0]
    np.testing.assert_allclose(cryosparc.ctf(cs, "x.cs")["bfactor"], [0.0, 25.0, 80.0])
    no_b = np.zeros(3, dtype[:-1])
    assert "bfactor" not in cryosparc.ctf(no_b, "x.cs")


# ------------------------------------------------------------------------------------- 3. consensus map frame


def _map_with_header(path: Path, sim: dict, origin=(0.0, 0.0, 0.0), start=(0, 0, 0), axes=(1, 2, 3)) -> Path:
    write_map(path, sim)
    with mrcfile.open(path, mode="r+") as m:
        m.header.origin.x, m.header.origin.y, m.header.origin.z = origin
        m.header.nxstart, m.header.nystart, m.header.nzstart = start
        m.header.mapc, m.header.mapr, m.header.maps = axes
    return path


def test_map_origin_from_header(tmp_path):
    sim = {"volume": np.zeros((8, 8, 8), np.float32), "apix": 1.5}
    assert map_origin_angstrom(_map_with_header(tmp_path / "a.mrc", sim, origin=(10.5, -3.0, 7.25)), 1.5) == (
        10.5, -3.0, 7.25)
    # origin fields zero: N[XYZ]START × voxel
    assert map_origin_angstrom(_map_with_header(tmp_path / "b.mrc", sim, start=(-4, 2, 6)), 1.5) == (-6.0, 3.0, 9.0)
    # start indices follow the file axes: columns = z, rows = x, sections = y
    got = map_origin_angstrom(_map_with_header(tmp_path / "c.mrc", sim, start=(-4, 2, 6), axes=(3, 1, 2)), 1.5)
    assert got == (3.0, 9.0, -6.0)
    # an origin set wins over the start indices
    assert map_origin_angstrom(_map_with_header(tmp_path / "d.mrc", sim, origin=(1.0, 2.0, 3.0), start=(5, 5, 5)),
                               1.5) == (1.0, 2.0, 3.0)
    # uninitialised values (RELION 2.0 style huge origin, absurd start) -> (0, 0, 0)
    assert map_origin_angstrom(_map_with_header(tmp_path / "e.mrc", sim, origin=(3e38, 0, 0), start=(0, 0, 900)),
                               1.5) == (0.0, 0.0, 0.0)


def test_preprocess_records_map_frame(tmp_path):
    sim = simulate(16, 32, 2.0, seed=7)
    star_path = write_relion31(tmp_path / "proj", sim, n_stacks=1)
    map_path = _map_with_header(tmp_path / "map.mrc", sim, origin=(12.0, -8.0, 30.0))
    m = json.loads((run(tmp_path, star_path, map_path) / "dataset.json").read_text())
    assert m["map_origin_angstrom"] == pytest.approx([12.0, -8.0, 30.0])
    assert m["map_box"] == 32 and m["map_apix"] == pytest.approx(2.0)
    assert m["map"]["origin_angstrom"] == pytest.approx([12.0, -8.0, 30.0])
    # same half-extent (16 × 2 Å) for the map and the working grid: the working origin is the map's
    assert m["working_origin_angstrom"] == pytest.approx([12.0, -8.0, 30.0])
    # a 40-px map (the same density, padded) whose voxel 0 sits at N[XYZ]START = -20 and a working grid cropped to
    # 24 px at 2 Å: the half-extents differ (40 vs 24 Å), so the working origin is not the map's
    big = dict(sim, volume=np.pad(sim["volume"], 4))
    map2 = _map_with_header(tmp_path / "map40.mrc", big, start=(-20, -20, -20))
    m2 = json.loads((run(tmp_path, star_path, map2, out="ds2", apix=2.0, box=24) / "dataset.json").read_text())
    assert m2["box_size"] == 24 and m2["map_box"] == 40
    assert m2["map_origin_angstrom"] == pytest.approx([-40.0, -40.0, -40.0])
    # centre of the map: -40 + 20·2 = 0 Å; working grid origin: 0 - 12·2 = -24 Å
    assert m2["working_origin_angstrom"] == pytest.approx([-24.0, -24.0, -24.0])


def test_read_volume_follows_start_indices_and_axis_order(tmp_path):
    """read_volume gives [z, y, x] data for a map stored with permuted axes and the origin from N[XYZ]START."""
    import mrcfile

    from gaussianem.io.mrc import read_volume

    rng = np.random.default_rng(0)
    vol_zyx = rng.standard_normal((6, 6, 6)).astype(np.float32)
    # store with columns = z, rows = x, sections = y (MAPC 3, MAPR 1, MAPS 2): array dims (y, x, z)
    stored = np.transpose(vol_zyx, (1, 2, 0))
    path = tmp_path / "perm.mrc"
    with mrcfile.new(path) as m:
        m.set_data(np.ascontiguousarray(stored))
        m.voxel_size = 2.0
        m.header.mapc, m.header.mapr, m.header.maps = 3, 1, 2
        m.header.nxstart, m.header.nystart, m.header.nzstart = 5, -3, 4  # along columns (z), rows (x), sections (y)
    data, voxel, origin = read_volume(path)
    assert voxel == 2.0
    np.testing.assert_array_equal(data, vol_zyx)
    assert origin == (-6.0, 8.0, 10.0)  # x = -3·2, y = 4·2, z = 5·2


def test_rln_ctf_scalefactor_scales_the_ctf(tmp_path):
    """rlnCtfScalefactor ≠ 1 reaches ctf.npz (with a zero B-factor beside it) and multiplies the CTF, in the
    training batches too; a column of ones changes nothing."""
    from gaussianem.training.data import ParticleBatchDataset, ctf_dict

    sim = simulate(16, 32, 2.0, seed=7)
    star_path = write_relion31(tmp_path / "proj", sim, n_stacks=1)
    scale = np.linspace(0.5, 1.5, 16)
    _add_star_column(star_path, "rlnCtfScalefactor", scale)
    ds_dir = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim))
    with np.load(ds_dir / "ctf.npz") as f:
        np.testing.assert_allclose(f["scale"], scale, atol=1e-9)
        np.testing.assert_array_equal(f["bfactor"], np.zeros(16))
    ds = load_dataset(ds_dir)
    batch = ds.ctf_batch(np.array([0, 15]), dtype=torch.float64)
    scaled = ctf_rfft2(32, 2.0, batch, dtype=torch.float64)
    plain = ctf_rfft2(32, 2.0, {k: v for k, v in batch.items() if k != "scale"}, dtype=torch.float64)
    torch.testing.assert_close(scaled, plain * torch.tensor([0.5, 1.5], dtype=torch.float64)[:, None, None])
    packed = ParticleBatchDataset(ds_dir, ds)[np.array([0, 15])]["ctf"]
    assert packed.shape == (2, 9)
    np.testing.assert_allclose(ctf_dict(packed)["scale"].numpy(), [0.5, 1.5])
    ds.close()
    star2 = write_relion31(tmp_path / "proj2", sim, n_stacks=1)
    _add_star_column(star2, "rlnCtfScalefactor", np.ones(16))
    with np.load(run(tmp_path, star2, write_map(tmp_path / "map2.mrc", sim), out="ones") / "ctf.npz") as f:
        assert "scale" not in f.files and "bfactor" not in f.files
