"""eval-vol: latent points from values, files and particle indices -> files in request order."""

from __future__ import annotations

from pathlib import Path

import gemmi
import mrcfile
import numpy as np
import pytest
import yaml
from fakes import HingeFadeModel

from gaussianem.analysis import inputs, volumes
from gaussianem.cli import main
from gaussianem.errors import InputError

CONFIG = {"box_size": 24, "pixel_size_angstrom": 2.5}


@pytest.fixture
def run(tmp_path, monkeypatch) -> tuple[Path, HingeFadeModel, np.ndarray]:
    rundir = tmp_path / "run"
    rundir.mkdir()
    (rundir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    z = np.random.default_rng(0).normal(size=(50, 2))
    np.save(rundir / "z.3.npy", z)
    model = HingeFadeModel(30, 10)
    monkeypatch.setattr(inputs, "_load_model", lambda rd, epoch, device: (model, CONFIG, epoch or 3))
    return rundir, model, z


def _expected_volume(model, z, grid=None):
    grid = grid or volumes.working_grid(CONFIG)
    pos, wid, amp = volumes.decode_points(model, np.atleast_2d(z))
    return volumes.render_volume(pos[0], wid[0], amp[0], grid)


def test_eval_vol_z_values_in_request_order(run, tmp_path):
    rundir, model, _ = run
    out = tmp_path / "o"
    assert main(["eval-vol", str(rundir), "--z", "1.0, 0.5; -1 -2 ;0,0", "-o", str(out),
                 "--format", "mrc,pdb,ply"]) == 0
    pts = np.array([[1.0, 0.5], [-1, -2], [0, 0]])
    np.testing.assert_allclose(np.loadtxt(out / "z_values.txt"), pts)
    for i, p in enumerate(pts):
        with mrcfile.open(out / f"vol_{i:03d}.mrc") as m:
            np.testing.assert_allclose(m.data, _expected_volume(model, p), atol=1e-5)
            assert m.voxel_size.x == pytest.approx(2.5)
        st = gemmi.read_structure(str(out / f"model_{i:03d}.pdb"))
        assert st[0].count_atom_sites() == model.base_cloud.n  # eval-vol keeps every Gaussian
        assert (out / f"gaussians_{i:03d}.ply").is_file()


def test_eval_vol_particles_and_files(run, tmp_path):
    rundir, model, z = run
    out = tmp_path / "p"
    assert main(["eval-vol", str(rundir), "--particles", "7,2", "-o", str(out), "--box", "32"]) == 0
    grid = volumes.output_grid(volumes.working_grid(CONFIG), box=32)
    for i, idx in enumerate([7, 2]):
        with mrcfile.open(out / f"vol_{i:03d}.mrc") as m:
            np.testing.assert_allclose(m.data, _expected_volume(model, z[idx], grid), atol=1e-5)
            assert m.voxel_size.x == pytest.approx(24 * 2.5 / 32)
            assert m.header.origin.x == pytest.approx(12 * 2.5 - 16 * 24 * 2.5 / 32)
    idx_file = tmp_path / "ind.txt"
    idx_file.write_text("4\n9\n1\n")
    out2 = tmp_path / "q"
    assert main(["eval-vol", str(rundir), "--particles", str(idx_file), "-o", str(out2)]) == 0
    np.testing.assert_allclose(np.loadtxt(out2 / "z_values.txt"), z[[4, 9, 1]], rtol=1e-7)
    zf = tmp_path / "pts.npy"
    np.save(zf, z[:12])
    out3 = tmp_path / "r"
    assert main(["eval-vol", str(rundir), "--z-file", str(zf), "-o", str(out3)]) == 0
    assert sorted(p.name for p in out3.glob("*.mrc")) == [f"vol_{i:03d}.mrc" for i in range(12)]


@pytest.mark.parametrize("argv", [
    ["--z", "1,2,3"],                      # zdim 2: three values
    ["--z", "1,abc"],
    ["--particles", "3,50"],               # out of range
    ["--particles", "missing/ind.txt"],
    ["--z", "1,2", "--format", "mrc,obj"],
    ["--z", "1,2", "--apix", "-1"],
])
def test_eval_vol_bad_input_exit_2(run, tmp_path, argv, capsys):
    rundir, _, _ = run
    assert main(["eval-vol", str(rundir), *argv, "-o", str(tmp_path / "x")]) == 2
    assert "error:" in capsys.readouterr().err


def test_parsers():
    np.testing.assert_array_equal(inputs.parse_z_values("1 2 3 4", 2), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(inputs.parse_indices("5, 1,2", 10), [5, 1, 2])
    with pytest.raises(InputError):
        inputs.parse_indices("", 10)
