"""The consensus map's frame: origin, start indices and axis order read from the MRC header, and recorded by
preprocess in dataset.json."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from conftest import run, simulate, write_map, write_relion31

from gaussianem.io.mrc import map_origin_angstrom


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
