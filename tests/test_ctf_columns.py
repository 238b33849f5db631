"""Optional CTF columns of the inputs reach ctf.npz and the CTF: RELION's rlnCtfBfactor and rlnCtfScalefactor,
cryoSPARC's ctf/bfactor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import starfile
import torch
from conftest import run, simulate, write_map, write_relion31

from gaussianem.io.dataset import load_dataset
from gaussianem.physics.ctf import ctf_rfft2


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
    without_b = ctf_rfft2(32, 2.0, batch._replace(bfactor=None), dtype=torch.float64)
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




def test_rln_ctf_scalefactor_scales_the_ctf(tmp_path):
    """rlnCtfScalefactor ≠ 1 reaches ctf.npz (with a zero B-factor beside it) and multiplies the CTF, in the
    training batches too; a column of ones changes nothing."""
    from gaussianem.physics.ctf import CTFParams
    from gaussianem.training.data import ParticleBatchDataset

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
    plain = ctf_rfft2(32, 2.0, batch._replace(scale=None), dtype=torch.float64)
    torch.testing.assert_close(scaled, plain * torch.tensor([0.5, 1.5], dtype=torch.float64)[:, None, None])
    packed = ParticleBatchDataset(ds_dir, ds)[np.array([0, 15])]["ctf"]
    assert packed.shape == (2, 9)
    np.testing.assert_allclose(CTFParams.from_packed(packed).scale.numpy(), [0.5, 1.5])
    ds.close()
    star2 = write_relion31(tmp_path / "proj2", sim, n_stacks=1)
    _add_star_column(star2, "rlnCtfScalefactor", np.ones(16))
    with np.load(run(tmp_path, star2, write_map(tmp_path / "map2.mrc", sim), out="ones") / "ctf.npz") as f:
        assert "scale" not in f.files and "bfactor" not in f.files
