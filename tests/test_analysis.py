"""Analysis: k-means/PCA, volume frames, pseudo-atomic models, flexibility, warping, the analyze command."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import gemmi
import mrcfile
import numpy as np
import pytest
import torch
import yaml
from fakes import HingeFadeModel

from gaussianem.analysis import atomic, inputs, latent, states, volumes
from gaussianem.io.pdb import gaussian_index_of, read_structure, width_to_bfactor, write_structure

BOX, APIX = 32, 2.0
CONFIG = {"box_size": BOX, "pixel_size_angstrom": APIX}


def latents(n: int = 300, zdim: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three clusters: closed & subunit present, open & present, open & subunit removed -> z (n, zdim), truth."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    centres = np.array([[-1.0, 1.5], [1.0, 1.5], [1.0, -1.5]])
    z = np.zeros((n, zdim))
    z[:, :2] = centres[truth] + 0.15 * rng.normal(size=(n, 2))
    z[:, 2:] = 0.05 * rng.normal(size=(n, zdim - 2))
    return z, truth


# ------------------------------------------------------------------------------------------------- latent
def test_kmeans_centres_are_real_members():
    from sklearn.metrics import adjusted_rand_score

    z, truth = latents()
    km = latent.kmeans(z, 3)
    assert adjusted_rand_score(truth, km.labels) == pytest.approx(1.0)
    np.testing.assert_array_equal(km.centers, z[km.centers_ind])
    np.testing.assert_array_equal(km.labels[km.centers_ind], np.arange(3))
    assert km.counts.sum() == len(z)
    # the chosen particle is the member nearest to its centroid
    for j in range(3):
        members = np.flatnonzero(km.labels == j)
        d = ((z[members] - km.raw_centers[j]) ** 2).sum(1)
        assert km.centers_ind[j] == members[np.argmin(d)]
    # ordered along the main axis of the centres: deterministic numbering
    assert latent.kmeans(z, 3).labels.tolist() == km.labels.tolist()


def test_minibatch_kmeans_for_large_n(monkeypatch):
    from sklearn.metrics import adjusted_rand_score

    monkeypatch.setattr(latent, "MINIBATCH_ABOVE", 100)
    z, truth = latents(600)
    km = latent.kmeans(z, 3)
    assert adjusted_rand_score(truth, km.labels) > 0.99


def test_pc_trajectory_spans_percentiles():
    rng = np.random.default_rng(1)
    t = rng.uniform(-3, 3, 2000)
    direction = np.array([0.6, 0.8, 0.0])
    z = t[:, None] * direction + 0.01 * rng.normal(size=(2000, 3)) + np.array([1.0, 2.0, 3.0])
    pca = latent.pca_fit(z)
    traj = latent.pc_trajectory(z, pca, 1, 10)
    assert traj.shape == (10, 3)
    steps = np.diff(traj, axis=0)
    np.testing.assert_allclose(steps, steps[0][None].repeat(9, 0), atol=1e-9)  # evenly spaced on a line
    proj = (traj - z.mean(0)) @ direction
    lo, hi = np.percentile((z - z.mean(0)) @ direction, [5, 95])
    assert sorted([proj[0], proj[-1]]) == pytest.approx(sorted([lo, hi]), abs=0.02)
    with pytest.raises(ValueError):
        latent.pc_trajectory(z, pca, 4)


def test_umap_missing_is_skipped(monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap -> ImportError
    with caplog.at_level("INFO"):
        assert latent.umap_embedding(np.zeros((10, 3))) is None
    assert "UMAP skipped" in caplog.text


# -------------------------------------------------------------------------------------------------- frames
@pytest.mark.parametrize("box,apix", [(None, None), (48, None), (None, 1.0), (40, 1.5)])
def test_volume_frame(box, apix, device):
    """A Gaussian at p (Gaussian frame) peaks at user coordinate p + centre on every output grid."""
    working = volumes.working_grid({**CONFIG, "map_origin_angstrom": [3.0, -2.0, 1.0]})
    assert working.centre_angstrom == (3.0 + 32.0, -2.0 + 32.0, 1.0 + 32.0)
    grid = volumes.output_grid(working, box, apix)
    if box and not apix:
        assert grid.pixel_size_angstrom == pytest.approx(BOX * APIX / box)
    if apix and not box:
        assert grid.box_size == 64
    p = np.array([[4.0, -6.0, 8.0]])
    vol = volumes.render_volume(p, np.array([1.5]), np.array([1.0]), grid, device)
    iz, iy, ix = np.unravel_index(np.argmax(vol), vol.shape)
    user = np.array(grid.origin_angstrom) + np.array([ix, iy, iz]) * grid.pixel_size_angstrom
    np.testing.assert_allclose(user, p[0] + np.array(working.centre_angstrom), atol=grid.pixel_size_angstrom / 2)


def test_output_grid_rejects_bad_values():
    from gaussianem.errors import InputError

    with pytest.raises(InputError):
        volumes.output_grid(volumes.working_grid(CONFIG), box=-4)
    with pytest.raises(InputError):
        volumes.working_grid({"box_size": 32})


def test_state_names_sort_in_request_order():
    names = volumes.state_names(1200)
    assert names[:2] == ["vol_0000.mrc", "vol_0001.mrc"] and sorted(names) == names
    assert volumes.state_names(10)[9] == "vol_009.mrc"


# --------------------------------------------------------------------------------------- pseudo-atomic models
def test_pseudo_atomic_pdb_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    g = 10_005  # crosses the 9999-residue chain limit
    pos = rng.normal(size=(g, 3)) * 20
    wid = rng.uniform(0.5, 3.0, g)
    base_amp = rng.uniform(0.5, 2.0, g)
    amp = base_amp * rng.uniform(0.0, 1.2, g)
    centre = (32.0, 32.0, 32.0)
    st = atomic.pseudo_atomic_structure(pos, wid, amp, centre, base_amp, cell_angstrom=64.0)
    write_structure(tmp_path / "m.pdb", st)
    back = gemmi.read_structure(str(tmp_path / "m.pdb"))
    atoms = [(ch.name, r.seqid.num, a) for ch in back[0] for r in ch for a in r]
    assert len(atoms) == g
    i = np.array([gaussian_index_of(c, n) for c, n, _ in atoms])
    np.testing.assert_array_equal(i, np.arange(g))
    xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for _, _, a in atoms])
    np.testing.assert_allclose(xyz, pos + 32.0, atol=6e-4)
    b = np.array([a.b_iso for _, _, a in atoms])
    np.testing.assert_allclose(b, np.minimum(8 * math.pi**2 * wid**2, 999.99), atol=6e-3)
    occ = np.array([a.occ for _, _, a in atoms])
    np.testing.assert_allclose(occ, np.clip(amp / base_amp, 0, 1), atol=6e-3)
    # faded Gaussians left out, identity kept
    st2 = atomic.pseudo_atomic_structure(pos[:50], wid[:50], amp[:50], centre, base_amp[:50], min_occupancy=0.5)
    kept = [r.seqid.num - 1 for ch in st2[0] for r in ch]
    np.testing.assert_array_equal(kept, np.flatnonzero(np.clip(amp[:50] / base_amp[:50], 0, 1) >= 0.5))
    assert width_to_bfactor(np.array([1.0]))[0] == pytest.approx(78.9568, abs=1e-3)


def test_trajectory_pdb_has_one_model_per_point(tmp_path):
    model = HingeFadeModel(40, 10)
    z = np.stack([np.linspace(-1, 1, 5), np.zeros(5)], 1)
    pos, wid, amp = volumes.decode_points(model, z)
    st = atomic.pseudo_atomic_trajectory(pos, wid, amp, (0.0, 0.0, 0.0))
    write_structure(tmp_path / "t.pdb", st)
    write_structure(tmp_path / "t.cif", st)
    for f in ("t.pdb", "t.cif"):
        back = gemmi.read_structure(str(tmp_path / f))
        assert len(back) == 5
        xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for ch in back[4] for r in ch for a in r])
        np.testing.assert_allclose(xyz, pos[4], atol=6e-4)


# ------------------------------------------------------------------------------------------------ flexibility
def test_flexibility_matches_direct_computation():
    model = HingeFadeModel(60, 20)
    rng = np.random.default_rng(0)
    z = np.stack([rng.uniform(-1, 1, 130), rng.normal(size=130)], 1)
    base = volumes.base_cloud_arrays(model)[0]
    flex = atomic.flexibility(model, z, base, batch_size=16, progress=False)
    pos, _, amp = volumes.decode_points(model, z)
    rmsf = np.sqrt(((pos - pos.mean(0)) ** 2).sum(2).mean(0))
    np.testing.assert_allclose(flex["rmsf"], rmsf, atol=1e-5)
    np.testing.assert_allclose(flex["rms_displacement"], np.sqrt(((pos - base) ** 2).sum(2).mean(0)), atol=1e-5)
    np.testing.assert_allclose(flex["amplitude_std"], amp.std(0), atol=1e-5)
    moving = model.moving.numpy()
    assert flex["rmsf"][~moving].max() < 1e-3 and flex["rmsf"][moving].min() > 0.3
    assert atomic.rmsf_to_bfactor(np.array([1.0]))[0] == pytest.approx(8 * math.pi**2 / 3)


def test_flexibility_map_is_local_rmsf():
    pos = np.array([[-12.0, 0, 0], [12.0, 0, 0]])
    grid = volumes.VolumeGrid(BOX, APIX)
    m = atomic.flexibility_map(pos, np.array([2.0, 2.0]), np.array([1.0, 1.0]), np.array([0.5, 3.0]), grid)
    c = BOX // 2
    assert m[c, c, c - 6] == pytest.approx(0.5, abs=1e-3) and m[c, c, c + 6] == pytest.approx(3.0, abs=1e-3)
    assert m[0, 0, 0] == 0.0


# ---------------------------------------------------------------------------------------------------- warping
def _hinge_case(angle_deg: float = 25.0, seed: int = 0):
    """Dense Gaussians in two domains; atoms scattered within them; the right domain rotates about z."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.arange(-4, 5) * 2.5] * 3, indexing="ij"), -1).reshape(-1, 3)
    g = g[np.linalg.norm(g, axis=1) < 10.5]
    left, right = g + [-13.0, 0, 0], g + [13.0, 0, 0]
    base = np.concatenate([left, right])
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    pivot = np.array([0.0, 0.0, 0.0])
    moved = base.copy()
    moved[len(left):] = (right - pivot) @ rot.T + pivot
    atoms_l = rng.normal(size=(300, 3)) * 3.5 + [-13.0, 0, 0]
    atoms_r = rng.normal(size=(300, 3)) * 3.5 + [13.0, 0, 0]
    atoms = np.concatenate([atoms_l, atoms_r])
    truth = atoms.copy()
    truth[300:] = (atoms_r - pivot) @ rot.T + pivot
    return base, moved, atoms, truth


@pytest.mark.parametrize("mode,tol", [("affine", 0.15), ("average", 0.6)])
def test_warp_rigid_hinge_carries_atoms(mode, tol):
    base, moved, atoms, truth = _hinge_case()
    before = np.sqrt(((atoms - truth) ** 2).sum(1).mean())
    warped = atomic.warp_points(atoms, base, moved, mode=mode)
    after = np.sqrt(((warped - truth) ** 2).sum(1).mean())
    assert before > 4.0
    assert after < tol, f"{mode}: RMSD {before:.2f} -> {after:.3f} Å"


def test_warp_identity_and_translation():
    base, _, atoms, _ = _hinge_case()
    np.testing.assert_allclose(atomic.warp_points(atoms, base, base), atoms, atol=1e-9)
    np.testing.assert_allclose(atomic.warp_points(atoms, base, base + [1.0, -2.0, 0.5]), atoms + [1.0, -2.0, 0.5],
                               atol=1e-9)


def test_warp_does_not_extrapolate_far_outside_the_cloud():
    """A cloud turned rigidly by 15° about z: a point 80 Å out on x moves about as much as the cloud's Gaussians
    do (≤ 5.1 Å), not by the rotation extrapolated to 80 Å (20.9 Å); atoms inside still follow the rotation."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 3)) * 5
    rot = Rotation.from_euler("z", 15, degrees=True).as_matrix()
    moved = base @ rot.T
    far = np.array([[80.0, 0.0, 0.0]])
    shift = np.linalg.norm(atomic.warp_points(far, base, moved) - far)
    largest = np.linalg.norm(moved - base, axis=1).max()
    assert np.linalg.norm(far @ rot.T - far) > 20 and shift < largest, (shift, largest)
    inside = rng.normal(size=(50, 3)) * 3
    np.testing.assert_allclose(atomic.warp_points(inside, base, moved), inside @ rot.T, atol=0.05)


def _write_atomic_model(path: Path, xyz: np.ndarray) -> None:
    """A toy protein: residues of N, CA, C, O atoms at the given positions (4 per residue), two chains."""
    st = gemmi.Structure()
    model = gemmi.Model("1")
    names = ["N", "CA", "C", "O"]
    n_res = len(xyz) // 4
    for c, (lo, hi) in enumerate([(0, n_res // 2), (n_res // 2, n_res)]):
        ch = gemmi.Chain("AB"[c])
        for r in range(lo, hi):
            res = gemmi.Residue()
            res.name = "ALA"
            res.seqid = gemmi.SeqId(r + 10, " ")
            for k, nm in enumerate(names):
                a = gemmi.Atom()
                a.name = nm
                a.element = gemmi.Element(nm[0])
                a.pos = gemmi.Position(*xyz[4 * r + k])
                res.add_atom(a)
            ch.add_residue(res)
        model.add_chain(ch)
    st.add_model(model)
    st.setup_entities()
    write_structure(path, st)


def test_warp_structure_keeps_names_and_moves_atoms(tmp_path):
    base, moved, atoms, truth = _hinge_case()
    centre = (32.0, 32.0, 32.0)
    _write_atomic_model(tmp_path / "user.cif", atoms + centre)
    st = read_structure(tmp_path / "user.cif")
    warped = atomic.warp_structure_states(st, base, moved[None], centre)
    paths = atomic.write_warped(tmp_path, st, warped, ["atomic_000.cif"], None)
    back = gemmi.read_structure(str(paths[0]))
    orig = gemmi.read_structure(str(tmp_path / "user.cif"))
    ids = lambda s: [(ch.name, r.name, r.seqid.num, a.name) for ch in s[0] for r in ch for a in r]  # noqa: E731
    assert ids(back) == ids(orig)
    xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for ch in back[0] for r in ch for a in r]) - centre
    assert np.sqrt(((xyz - truth) ** 2).sum(1).mean()) < 0.2


def test_reference_state_picks_best_fit():
    base, moved, atoms, truth = _hinge_case()
    j, scores = atomic.best_reference(truth, [base, moved])
    assert j == 1 and scores[1] < scores[0]


# ---------------------------------------------------------------------------------------------------- analyze
def _fake_run(tmp_path: Path, monkeypatch, zdim: int = 3, n: int = 300) -> tuple[Path, HingeFadeModel, np.ndarray]:
    rundir = tmp_path / "run"
    rundir.mkdir()
    (rundir / "config.yaml").write_text(yaml.safe_dump({"data": CONFIG, "zdim": zdim}))
    z, truth = latents(n, zdim)
    np.save(rundir / "z.1.npy", np.zeros_like(z))
    np.save(rundir / "z.2.npy", z)
    (rundir / "log.jsonl").write_text("\n".join(
        f'{{"epoch": {e}, "step": {10 * e}, "loss": {1.0 / (e + 1)}, "kl_loss": {0.1 * e}}}' for e in range(6)))
    model = HingeFadeModel(80, 30)

    def fake_load(rd, epoch, device):
        assert Path(rd) == rundir
        return model, yaml.safe_load((rd / "config.yaml").read_text()), epoch or 2

    monkeypatch.setattr(inputs, "_load_model", fake_load)
    return rundir, model, truth


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    """One analyze run of the fake model (shared by the tests that inspect its outputs)."""
    from gaussianem.cli import main

    tmp_path = tmp_path_factory.mktemp("analyzed")
    with pytest.MonkeyPatch.context() as mp:
        rundir, model, truth = _fake_run(tmp_path, mp)
        base_pos = volumes.base_cloud_arrays(model)[0]
        _write_atomic_model(tmp_path / "user.pdb", base_pos[:40] + 32.0 + 0.3)
        rc = main(["analyze", str(rundir), "--ksample", "3", "--pc", "2", "--flex-sample", "120", "--no-umap",
                   "--atomic-model", str(tmp_path / "user.pdb")])
    return rc, tmp_path, rundir, model, truth


def test_misplaced_atomic_model_is_not_warped(tmp_path, monkeypatch):
    """A model 200 Å away from every Gaussian (not in the map's frame): analyze still finishes, writes no warped
    models and says why in summary.json and the report."""
    from gaussianem.cli import main

    rundir, model, _ = _fake_run(tmp_path, monkeypatch, n=120)
    base_pos = volumes.base_cloud_arrays(model)[0]
    _write_atomic_model(tmp_path / "far.pdb", base_pos[:40] + 32.0 + 200.0)
    out = tmp_path / "out"
    assert main(["analyze", str(rundir), "--ksample", "2", "--pc", "1", "--flex-sample", "30", "--no-umap",
                 "--atomic-model", str(tmp_path / "far.pdb"), "-o", str(out)]) == 0
    assert not list(out.rglob("atomic_*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warped_files"] == [] and "not in the consensus map's frame" in summary["warp_skipped"]
    assert "Not written" in (out / "report.html").read_text()


def test_analyze_command_end_to_end(analyzed):
    rc, tmp_path, rundir, model, truth = analyzed
    assert rc == 0
    out = rundir / "analyze.2"
    kdir = out / "kmeans3"
    labels = np.load(kdir / "labels.npy")
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    ind = np.load(kdir / "centers_ind.npy")
    z = np.load(rundir / "z.2.npy")
    np.testing.assert_array_equal(np.load(kdir / "centers.npy"), z[ind])
    with mrcfile.open(out / "consensus.mrc") as m:
        consensus = m.data.copy()
        assert m.voxel_size.x == pytest.approx(APIX) and m.header.origin.x == pytest.approx(0.0)
    for j in range(3):
        with mrcfile.open(kdir / f"vol_{j:03d}.mrc") as m:
            assert m.data.shape == (BOX,) * 3 and m.voxel_size.z == pytest.approx(APIX)
            assert (m.header.origin.x, m.header.origin.y, m.header.origin.z) == (0.0, 0.0, 0.0)
            f = states.low_res_fsc(m.data.copy(), consensus)
            assert f > 0.8
        assert gemmi.read_structure(str(kdir / f"model_{j:03d}.pdb"))[0].count_atom_sites() > 0
        assert (kdir / f"gaussians_{j:03d}.ply").is_file()
        assert (kdir / f"atomic_{j:03d}.pdb").is_file()
    # the class whose centre has the subunit removed lacks its Gaussians in the pseudo-atomic model
    removed = int(np.argmin(z[ind, 1]))
    st = gemmi.read_structure(str(kdir / f"model_{removed:03d}.pdb"))
    kept = {gaussian_index_of(ch.name, r.seqid.num) for ch in st[0] for r in ch}
    sub = set(np.flatnonzero(model.subunit.numpy()).tolist())
    assert not (kept & sub) and len(kept) == model.base_cloud.n - len(sub)
    counts = np.loadtxt(kdir / "counts.txt", comments="#")
    assert counts[:, 1].sum() == len(z)
    # trajectories: 10 volumes + 10-model PDB, and they are not the k-means volumes
    for d in (1, 2):
        pdir = out / f"pc{d}"
        vols = sorted(pdir.glob("vol_*.mrc"))
        assert [v.name for v in vols] == [f"vol_{i:03d}.mrc" for i in range(10)]
        assert len(gemmi.read_structure(str(pdir / "traj.pdb"))) == 10
        assert len(gemmi.read_structure(str(pdir / "atomic_traj.pdb"))) == 10
    first, last = (mrcfile.read(out / "pc1" / f"vol_{i:03d}.mrc") for i in (0, 9))
    assert np.abs(first - last).max() > 0.1 * first.max()
    assert not any(np.array_equal(first, mrcfile.read(kdir / f"vol_{j:03d}.mrc")) for j in range(3))
    # warped model keeps atom names, and the pseudo-atomic flexibility model shows the moving domain
    user = gemmi.read_structure(str(tmp_path / "user.pdb"))
    warped = gemmi.read_structure(str(kdir / "atomic_000.pdb"))
    assert [a.name for r in warped[0]["A"] for a in r] == [a.name for r in user[0]["A"] for a in r]
    flex = gemmi.read_structure(str(out / "flexibility.pdb"))
    b = np.array([a.b_iso for ch in flex[0] for r in ch for a in r])
    moving = model.moving.numpy()
    assert b[moving].mean() > 10 * max(b[~moving].mean(), 1e-3)
    with mrcfile.open(out / "flexibility.mrc") as m:
        assert m.data.max() > 0.5
    # report and ChimeraX script
    html = (out / "report.html").read_text()
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") >= 3 + 20 + 4
    cxc = (out / "chimerax.cxc").read_text().splitlines()
    assert cxc[1] == "open consensus.mrc" and cxc[2].startswith("volume #1 level ")
    assert "open kmeans3/vol_000.mrc" in cxc and "open pc1/vol_*.mrc vseries true" in cxc
    level = float(cxc[2].split()[3])
    assert 0 < level < consensus.max()
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["epoch"] == 2 and summary["counts"] == np.bincount(labels).tolist()


def test_analyze_other_grid_and_epoch(tmp_path, monkeypatch):
    from gaussianem.cli import main

    rundir, model, _ = _fake_run(tmp_path, monkeypatch, zdim=2, n=120)
    out = tmp_path / "out"
    rc = main(["analyze", str(rundir), "--epoch", "2", "--ksample", "2", "--pc", "1", "--box", "48",
               "--flex-sample", "30", "-o", str(out)])
    assert rc == 0
    with mrcfile.open(out / "kmeans2" / "vol_000.mrc") as m:
        assert m.data.shape == (48,) * 3
        assert m.voxel_size.x == pytest.approx(BOX * APIX / 48)
        assert m.header.origin.x == pytest.approx(32.0 - 24 * BOX * APIX / 48)
    assert (out / "z.png").is_file() and not (out / "umap.npy").exists()
    assert main(["analyze", str(rundir), "--ksample", "500", "-o", str(out)]) == 2


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_loads_in_headless_chromium(analyzed, tmp_path):
    report = analyzed[2] / "analyze.2" / "report.html"
    shot = tmp_path / "shot.png"
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--no-first-run", "--disable-background-networking", f"--screenshot={shot}",
                           "--window-size=800,600", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 1000
    assert "Uncaught" not in proc.stderr and "CONSOLE" not in proc.stderr


def test_decode_batches_cover_all_rows(device):
    model = HingeFadeModel(20, 5).to(device)
    z = np.random.default_rng(0).normal(size=(37, 2))
    rows = [r for r, *_ in volumes.decode_batches(model, z, batch_size=8, device=device)]
    assert [(r.start, r.stop) for r in rows][-1] == (32, 37) and len(rows) == 5
    pos, wid, amp = volumes.decode_points(model, z, device=device)
    ref = model.decode(torch.as_tensor(z, dtype=torch.float32, device=device))
    np.testing.assert_allclose(pos, ref[0].detach().cpu().numpy(), atol=1e-5)


def test_analyze_and_eval_vol_on_a_trained_run(tmp_path):
    """Integration with the real training code: one tiny epoch, then analyze and eval-vol through the CLI."""
    pytest.importorskip("gaussianem.training.loop")
    from conftest import SMALL, make_dataset  # the training tests' tiny dataset

    from gaussianem.cli import main
    from gaussianem.training.config import TrainConfig
    from gaussianem.training.loop import train

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        make_dataset(tmp_path / "ds", n=96)
        run = tmp_path / "run"
        train(TrainConfig(dataset=str(tmp_path / "ds"), rundir=str(run), epochs=1, **SMALL))
        assert main(["analyze", str(run), "--ksample", "3", "--pc", "1", "--flex-sample", "40", "--no-umap"]) == 0
        out = run / "analyze.1"
        z = np.load(run / "z.1.npy")
        assert len(np.load(out / "kmeans3" / "labels.npy")) == len(z) == 96
        cons = mrcfile.read(out / "consensus.mrc")
        with mrcfile.open(out / "kmeans3" / "vol_000.mrc") as m:
            assert m.voxel_size.x == pytest.approx(2.0) and m.data.shape == (32,) * 3
            assert states.low_res_fsc(m.data.copy(), cons) > 0.8
        assert len(gemmi.read_structure(str(out / "pc1" / "traj.pdb"))) == 10
        assert (out / "report.html").stat().st_size > 10_000
        assert main(["eval-vol", str(run), "--particles", "5", "-o", str(tmp_path / "ev"), "--format", "mrc"]) == 0
        model, config, epoch, _ = inputs.load_run(run)
        pos, wid, amp = volumes.decode_points(model, z[5:6])
        ref = volumes.render_volume(pos[0], wid[0], amp[0], volumes.working_grid(config))
        np.testing.assert_allclose(mrcfile.read(tmp_path / "ev" / "vol_000.mrc"), ref, rtol=1e-4, atol=1e-5)
    finally:
        torch.set_num_threads(n_threads)


@pytest.mark.parametrize("box", [48, 64])
def test_tiled_render_matches_voxelize(box, device):
    from gaussianem.physics.projection import voxelize_gaussians

    rng = np.random.default_rng(0)
    pos = rng.uniform(-box, box, (400, 3))  # apix 2: some Gaussians outside the box
    wid = rng.uniform(1.0, 3.0, 400)
    amp = rng.uniform(0.5, 1.5, 400)
    grid = volumes.VolumeGrid(box, 2.0)
    tiled = volumes.render_volume(pos, wid, amp, grid, device, tile=16)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    ref = voxelize_gaussians(t(pos), t(wid), t(amp), box, 2.0).cpu().numpy()
    np.testing.assert_allclose(tiled, ref, atol=1e-5 * ref.max())
