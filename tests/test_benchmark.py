"""Benchmark metrics and the ``gaussianem benchmark`` command on synthetic cases with known answers."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from gaussianem.cli import main as cli_main
from gaussianem.evaluation import external, metrics
from gaussianem.io.mrc import write_volume
from gaussianem.io.writes import save_npz_atomic, write_json_atomic
from gaussianem.physics.projection import voxelize_gaussians

ROOT = Path(__file__).resolve().parents[1]
BOX, APIX = 24, 2.0
N_STATES, N_COORD = 3, 4


# ------------------------------------------------------------------------------------------------ fixtures


def cloud(coord: float, state: float, dtype=torch.float64):
    """An asymmetric 3-Gaussian cloud: one fixed, one moving with ``coord``, one placed by ``state`` (Å)."""
    pos = torch.tensor([[4.0, 2.0, -6.0], [-10.0 + 5.0 * coord, 6.0 * (state - 1), 0.0], [0.0, -8.0, 6.0 * state]],
                       dtype=dtype)
    return pos, torch.full((3,), 3.0, dtype=dtype), torch.tensor([1.0, 0.8, 0.6], dtype=dtype)


class FakeModel(torch.nn.Module):
    """A 'perfect' model: z = (coordinate, state, noise...) decodes to the exact ground-truth cloud."""

    def __init__(self) -> None:
        super().__init__()
        pos, wid, amp = cloud(1.5, 1.0)
        self.base_cloud = types.SimpleNamespace(physical=lambda: (pos, wid, amp))

    def decode(self, z: torch.Tensor):
        out = [cloud(float(zz[0]), float(zz[1])) for zz in z]
        return tuple(torch.stack([o[i] for o in out]) for i in range(3))


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    """A fake simulator folder: 300 particles, 12 ground-truth volumes (3 states x 4 coordinates)."""
    root = tmp_path_factory.mktemp("sim")
    rng = np.random.default_rng(1)
    n = 300
    state = rng.integers(0, N_STATES, n)
    coord = rng.integers(0, N_COORD, n)
    for s in range(N_STATES):
        for c in range(N_COORD):
            vol = voxelize_gaussians(*cloud(c, s), BOX, APIX)
            write_volume(root / "volumes" / f"vol_{s * N_COORD + c:03d}.mrc", vol.numpy(), APIX)
    save_npz_atomic(root / "truth.npz", state=state, coordinate=coord.astype(float),
                    volume_index=state * N_COORD + coord)
    write_volume(root / "consensus.mrc", voxelize_gaussians(*cloud(1.5, 1.0), BOX, APIX).numpy(), APIX)
    write_json_atomic(root / "simulation.json", {"preset": "fake", "box_size": BOX, "snr": 0.05})
    return root


def perfect_latents(sim: Path, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    with np.load(sim / "truth.npz") as f:
        z = np.stack([f["coordinate"], f["state"].astype(float)], 1)
    extra = np.random.default_rng(seed).normal(size=(len(z), 2)) * noise
    return np.concatenate([z, extra], 1)


@pytest.fixture()
def fake_run(sim, tmp_path, monkeypatch) -> Path:
    """A run folder (config.yaml, z.2.npy) whose model comes from a stand-in load_model.

    Its dataset keeps the particles in reverse star order (``source_index.npy``), so the latent rows must be mapped
    back to truth rows for the scores to come out perfect.
    """
    run = tmp_path / "run"
    run.mkdir()
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    z = perfect_latents(sim, noise=1e-3)
    order = np.arange(len(z))[::-1].copy()
    np.save(dataset / "source_index.npy", order)
    (run / "config.yaml").write_text(f"dataset: {dataset}\n")
    np.save(run / "z.2.npy", z[order])
    fake = types.ModuleType("gaussianem.model.load")

    def load_model(rundir, epoch=None, device="cpu"):
        assert Path(rundir) == run
        return FakeModel(), {"dataset": str(dataset)}, 2 if epoch is None else epoch

    fake.load_model = load_model
    monkeypatch.setitem(sys.modules, "gaussianem.model.load", fake)
    return run


def test_truth_rows_for_run(sim, tmp_path):
    from gaussianem.evaluation.suite import truth_rows_for_run

    truth = metrics.load_truth(sim)
    (tmp_path / "ds").mkdir()
    np.save(tmp_path / "ds" / "source_index.npy", np.arange(truth.n)[::-1])
    rows = truth_rows_for_run({"dataset": "ds"}, tmp_path / "run", truth.n, truth)  # relative to the run's parent
    assert rows[0] == truth.n - 1 and rows[-1] == 0
    assert np.array_equal(truth_rows_for_run({}, tmp_path / "run", truth.n, truth), np.arange(truth.n))
    with pytest.raises(metrics.InputError, match="no source_index.npy"):
        truth_rows_for_run({}, tmp_path / "run", truth.n - 5, truth)


# ------------------------------------------------------------------------------------------------ FSC-AUC


def test_identical_volumes_give_max_auc_at_64(device):
    g = torch.Generator().manual_seed(0)
    vol = torch.randn(64, 64, 64, generator=g, dtype=torch.float64).to(device)
    mask = metrics.spherical_mask(64, device=device)
    auc = metrics.fsc_auc_pair(vol, vol.clone(), mask)
    assert auc == pytest.approx(31 / 64, abs=1e-9)  # 0.484: |FSC| = 1 over arange(32)/64
    other = torch.randn(64, 64, 64, generator=g, dtype=torch.float64).to(device)
    assert metrics.fsc_auc_pair(vol, other, mask) < 0.05


def test_fsc_auc_is_scale_invariant_and_falls_with_noise():
    vol = voxelize_gaussians(*cloud(1.0, 1.0), 32, APIX)
    mask = metrics.spherical_mask(32)
    assert metrics.fsc_auc_pair(3.0 * vol, vol, mask) == pytest.approx(15 / 32, abs=1e-9)
    noisy = vol + 0.05 * vol.max() * torch.randn(vol.shape, generator=torch.Generator().manual_seed(0),
                                                 dtype=torch.float64)
    assert 0.05 < metrics.fsc_auc_pair(noisy, vol, mask) < 15 / 32 - 0.05


def test_match_box_crops_larger_volume():
    fine = voxelize_gaussians(*cloud(1.0, 1.0), 48, APIX / 2)
    coarse = voxelize_gaussians(*cloud(1.0, 1.0), 24, APIX)
    assert metrics.fsc_auc_pair(metrics.match_box(fine, 24), coarse, None) > 0.99 * 11 / 24


# ------------------------------------------------------------------------------------------------ latent metrics


def test_spearman_random_linear_and_cv():
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 1, 3000)
    z_random = rng.normal(size=(3000, 4))
    r = metrics.spearman_metrics(z_random, c)
    assert r["pc1"] < 0.06 and r["linear_cv"] < 0.1
    # a latent that is a monotone function of the truth along a mixed direction: |rho| = 1
    direction = np.array([0.6, -0.8, 0.0, 0.0])
    z_lin = np.outer(c, direction) + 1e-6 * rng.normal(size=(3000, 4))
    r = metrics.spearman_metrics(z_lin, c)
    assert r["pc1"] == pytest.approx(1.0, abs=1e-6)
    assert r["linear_cv"] == pytest.approx(1.0, abs=1e-6)
    assert r["best_axis"] == pytest.approx(1.0, abs=1e-6) and r["best_axis_index"] in (0, 1)
    # truth recoverable only by regression on 2 axes plus big orthogonal nuisance: PC1 fails, CV regression works
    z_mix = np.concatenate([np.outer(c, [1.0, 1.0]), 10 * rng.normal(size=(3000, 1))], 1)
    r = metrics.spearman_metrics(z_mix, c)
    assert r["pc1"] < 0.1 and r["linear_cv"] > 0.999


def test_spearman_absent_coordinate_is_none():
    z = np.random.default_rng(0).normal(size=(100, 3))
    assert metrics.spearman_metrics(z, np.full(100, np.nan))["best"] is None
    assert metrics.spearman_metrics(z, np.zeros(100))["pc1"] is None


def test_ari_perfect_and_random():
    rng = np.random.default_rng(0)
    state = rng.integers(0, 4, 800)
    centres = rng.normal(size=(4, 6)) * 10
    z = centres[state] + 0.1 * rng.normal(size=(800, 6))
    assert metrics.kmeans_ari(z, state)["ari"] == pytest.approx(1.0)
    r = metrics.kmeans_ari(rng.normal(size=(800, 6)), state)
    assert r["k"] == 4 and abs(r["ari"]) < 0.02
    assert metrics.kmeans_ari(z, np.zeros(800, int))["ari"] is None


def test_neighbourhood_similarity_known_cases():
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 1, 1000)
    state = np.zeros(1000, int)
    perfect = metrics.neighbourhood_similarity(np.stack([3 * c, np.zeros(1000)], 1), state, c, k=10)
    assert perfect["similarity"] == pytest.approx(1.0)
    rand = metrics.neighbourhood_similarity(rng.normal(size=(1000, 2)), state, c, k=10)
    assert rand["chance"] == pytest.approx(10 / 999, rel=0.05)
    assert rand["similarity"] < 3 * rand["chance"]
    # discrete truth: separated clusters are all "same state" neighbours; ties are counted
    st = rng.integers(0, 5, 1000)
    zc = rng.normal(size=(5, 3))[st] * 20 + rng.normal(size=(1000, 3))
    r = metrics.neighbourhood_similarity(zc, st, np.full(1000, np.nan), k=10)
    assert r["similarity"] == pytest.approx(1.0) and r["chance"] == pytest.approx(0.2, abs=0.03)


def test_select_particles_is_shared_between_tools():
    a = metrics.select_particles(1000, 100, seed=3)
    b = metrics.select_particles(1000, 100, seed=3, available=np.arange(1000)[::-1])
    assert np.array_equal(a, b) and len(np.unique(a)) == 100
    sub = metrics.select_particles(1000, 100, seed=3, available=np.arange(500))
    assert sub.max() < 500 and len(sub) == 100


def test_state_latents_nearest_real_particle():
    z = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0], [12.0, 0.0]])
    vi = np.array([0, 0, 1, 1, 1])
    zs, rows = metrics.state_latents(z, vi, np.array([0, 1]))
    assert rows.tolist() in ([0, 3], [1, 3]) and np.array_equal(zs, z[rows])


# ------------------------------------------------------------------------------------------------ whole command


def test_command_on_perfect_fake_run(sim, fake_run, tmp_path):
    out = tmp_path / "bench"
    rc = cli_main([ "benchmark", str(fake_run), "--truth", str(sim), "-o", str(out), "--n-images", "40",
                   "--device", "cpu", "--knn-k", "10", "--train-seconds", "10", "--particle-epochs", "600"])
    assert rc == 0
    res = json.loads((out / "metrics.json").read_text())["results"][0]
    top = 11 / 24  # (D/2 - 1)/D
    assert res["per_image_fsc_auc"]["n"] == 40
    assert res["per_image_fsc_auc"]["mean"] == pytest.approx(top, abs=1e-4)
    assert res["per_state_fsc_auc"]["n"] == N_STATES * N_COORD
    assert res["per_state_fsc_auc"]["min"] == pytest.approx(top, abs=1e-4)
    assert res["latent"]["kmeans"]["k"] == N_STATES
    assert res["latent"]["spearman"]["best_axis"] == pytest.approx(1.0, abs=1e-6)
    assert res["latent"]["neighbourhood"]["similarity"] == pytest.approx(1.0)
    assert res["latent"]["state_probe"]["accuracy"] == pytest.approx(1.0)
    assert res["latent"]["motion_probe"]["r2"] > 0.999
    assert res["particles_per_second"] == pytest.approx(60.0)
    for base in ("base cloud", "simulator consensus"):
        assert res["consensus_fsc_auc"][base]["mean"] < res["per_image_fsc_auc"]["mean"] - 0.02
    md = (out / "metrics.md").read_text()
    assert "| per-image FSC-AUC (mean ± sd, n=40) | 0.458 ± 0.000 |" in md
    assert "particles/s | 60.0 |" in md
    assert "| state accuracy, logistic probe (5-fold; chance " in md
    assert "| motion R², linear probe (5-fold) | 1.000 |" in md
    # the benchmark script's row collector
    script = ROOT / "benchmarks" / "accuracy" / "collect_results.py"
    spec = importlib.util.spec_from_file_location("collect_results", script)
    collect = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collect)
    log = tmp_path / "log.jsonl"
    log.write_text('{"type": "setup", "epoch": 0, "seconds": 3.5}\n{"type": "epoch", "seconds": 4.0}\n'
                   '{"type": "epoch_outputs", "epoch": 1, "evaluate_s": 0.5, "save_s": 0.25, "plot_s": 1.0}\n'
                   '{"type": "step"}\n{"type": "epoch", "seconds": 6.0}\n'
                   '{"type": "epoch_outputs", "epoch": 2, "evaluate_s": 0.75, "save_s": 0.5, "plot_s": 2.0}\n')
    tsv, jsonl = tmp_path / "r.tsv", tmp_path / "r.jsonl"
    assert collect.main([str(out / "metrics.json"), "--preset", "fake", "--tsv", str(tsv), "--jsonl", str(jsonl),
                         "--gem-log", str(log)]) == 0
    row = json.loads(jsonl.read_text())
    assert row["loop_seconds"] == 10.0 and row["loop_particles_per_second"] == pytest.approx(60.0)
    assert row["steady_particles_per_second"] == pytest.approx(50.0)  # 300 particles in the 6 s of epoch 2
    assert row["outside_steps"] == {"setup_s": 3.5, "evaluate_s": 1.25, "save_s": 0.75, "plot_s": 3.0}
    cd_log = tmp_path / "cryodrgn.log"
    cd_log.write_text("(INFO) Epoch: 0 Average loss = 0.9; Finished in 0:01:05.5\nnoise\n"
                      "(INFO) Epoch: 1 Average loss = 0.8; Finished in 0:00:20.0\n")
    assert collect.epoch_seconds("cryodrgn", str(cd_log)) == [65.5, 20.0]
    rates = collect.loop_rates([65.5, 20.0], 2000)
    assert rates["loop_particles_per_second"] == pytest.approx(2000 / 85.5)
    assert rates["steady_particles_per_second"] == pytest.approx(50.0)
    assert tsv.read_text().splitlines()[1].startswith("fake\tgaussianem\t0.458\t")
    assert collect.main(["--markdown", str(tmp_path / "t.md"), str(jsonl)]) == 0
    assert "| fake | gaussianem | 0.458 |" in (tmp_path / "t.md").read_text()


def test_command_scores_external_tool_with_mirrored_volumes(sim, fake_run, tmp_path):
    z = perfect_latents(sim, noise=1e-3, seed=5)
    zfile = tmp_path / "z.pkl"
    import pickle

    with open(zfile, "wb") as f:
        pickle.dump(z.astype(np.float32), f)
        pickle.dump(np.zeros_like(z), f)  # cryoDRGN pickles z_logvar second
    ev = tmp_path / "eval"
    assert cli_main(["benchmark", "--truth", str(sim), "--external-z", str(zfile), "--write-eval-z", str(ev),
                     "--n-images", "30"]) == 0
    zp = np.loadtxt(ev / "particles_z.txt")
    assert zp.shape == (30, 4) and len(np.loadtxt(ev / "states_z.txt")) == N_STATES * N_COORD
    model = FakeModel()
    for sub in ("particles", "states"):
        for i, zz in enumerate(np.loadtxt(ev / f"{sub}_z.txt", ndmin=2), start=1):
            pos, wid, amp = model.decode(torch.as_tensor(zz[None]))
            vol = voxelize_gaussians(pos[0], wid[0], amp[0], BOX, APIX)
            vol = torch.roll(torch.flip(vol, [0]), 1, 0)  # the tool writes the other hand (z mirrored)
            write_volume(ev / sub / f"vol_{i:03d}.mrc", vol.numpy(), 1.0)
    out = tmp_path / "bench"
    rc = cli_main(["benchmark", str(fake_run), "--truth", str(sim), "-o", str(out), "--n-images", "30",
                   "--external-z", str(zfile), "--external-volumes", str(ev), "--external-name", "othertool",
                   "--knn-k", "10"])
    assert rc == 0
    results = json.loads((out / "metrics.json").read_text())["results"]
    gem, ext = results
    assert ext["name"] == "othertool"
    assert ext["volume_transform"]["transform"] == "zyx-mirrorz"
    assert ext["volume_transform"]["identity_fsc_auc"] < ext["volume_transform"]["calibration_fsc_auc"] - 0.05
    assert ext["per_image_fsc_auc"]["mean"] == pytest.approx(11 / 24, abs=1e-3)
    assert ext["per_state_fsc_auc"]["mean"] == pytest.approx(11 / 24, abs=1e-3)
    assert ext["per_image"]["truth_row"] == gem["per_image"]["truth_row"]  # the same particles for both tools
    assert ext["latent"]["state_probe"]["accuracy"] == pytest.approx(1.0)  # the same probes for both tools
    assert ext["latent"]["motion_probe"]["r2"] > 0.999
    assert "| metric | gaussianem | othertool |" in (out / "metrics.md").read_text()


def test_external_latents_alone_are_scored_without_volumes(sim, fake_run, tmp_path):
    # another tool's z without its volumes: the latent metrics by the same code, the FSC-AUC entries empty
    truth = metrics.load_truth(sim)
    z = perfect_latents(sim, noise=1e-3, seed=5)
    np.save(tmp_path / "z.npy", z)
    out = tmp_path / "bench"
    assert cli_main(["benchmark", str(fake_run), "--truth", str(sim), "-o", str(out), "--n-images", "10",
                     "--external-z", str(tmp_path / "z.npy"), "--external-name", "othertool", "--knn-k", "10"]) == 0
    gem, ext = json.loads((out / "metrics.json").read_text())["results"]
    cfg = metrics.ScoreConfig(knn_k=10)
    direct = metrics.latent_metrics(z, truth.state, truth.coordinate, seed=0, k=10, n_sample=cfg.knn_sample)
    assert ext["name"] == "othertool" and ext["volumes"] is None
    assert ext["per_image_fsc_auc"]["n"] == 0 and ext["per_image_fsc_auc"]["mean"] is None
    assert ext["latent"]["kmeans"]["ari"] == pytest.approx(direct["kmeans"]["ari"])
    assert ext["latent"]["state_probe"]["accuracy"] == pytest.approx(direct["state_probe"]["accuracy"])
    assert ext["latent"]["spearman"]["best"] == pytest.approx(direct["spearman"]["best"])
    assert ext["latent"]["state_probe"]["accuracy"] > 0.99  # near-perfect latents: the states are read off z
    table = (out / "metrics.md").read_text()
    assert "| metric | gaussianem | othertool |" in table
    assert gem["per_image_fsc_auc"]["n"] == 10
    # a latent file whose rows do not fit the truth is still refused
    np.save(tmp_path / "z_long.npy", np.zeros((truth.n + 3, 4)))
    assert cli_main(["benchmark", "--truth", str(sim), "-o", str(tmp_path / "b2"),
                     "--external-z", str(tmp_path / "z_long.npy")]) == 2
    assert not (tmp_path / "b2").exists()


def test_external_transform_none_keeps_the_mirror_penalty(sim, tmp_path):
    truth = metrics.load_truth(sim)
    z = perfect_latents(sim)
    ev = tmp_path / "eval"
    external.write_eval_inputs(z, np.arange(len(z)), truth, ev, metrics.ScoreConfig(n_images=10))
    model = FakeModel()
    for i, zz in enumerate(np.loadtxt(ev / "particles_z.txt"), start=1):
        pos, wid, amp = model.decode(torch.as_tensor(zz[None]))
        vol = torch.roll(torch.flip(voxelize_gaussians(pos[0], wid[0], amp[0], BOX, APIX), [2]), 1, 2)
        write_volume(ev / "particles" / f"vol_{i:03d}.mrc", vol.numpy(), APIX)
    cfg = metrics.ScoreConfig(n_images=10, knn_k=5)
    np.save(tmp_path / "z.npy", z)
    plain = external.score_external(truth, tmp_path / "z.npy", ev, transform="none", config=cfg)
    fixed = external.score_external(truth, tmp_path / "z.npy", ev, transform="zyx-mirrorx", config=cfg)
    assert plain["per_image_fsc_auc"]["mean"] < fixed["per_image_fsc_auc"]["mean"] - 0.05
    assert fixed["per_image_fsc_auc"]["mean"] == pytest.approx(11 / 24, abs=1e-4)
    assert plain["per_state_fsc_auc"]["n"] == 0  # no states/ folder: skipped
    # volumes unrelated to the truth: no transform beats "as written" by the margin, so none is applied
    for i in range(1, 11):
        noise = np.random.default_rng(i).normal(size=(BOX, BOX, BOX)).astype(np.float32)
        write_volume(ev / "particles" / f"vol_{i:03d}.mrc", noise, APIX)
    auto = external.score_external(truth, tmp_path / "z.npy", ev, transform="auto", config=cfg)
    assert auto["volume_transform"]["transform"] == "zyx"
    assert auto["per_image_fsc_auc"]["mean"] < 0.1  # |FSC| of unrelated maps in the few-voxel shells of D = 24


def test_bad_inputs_exit_2(sim, tmp_path, capsys):
    assert cli_main(["benchmark", str(tmp_path), "--truth", str(tmp_path / "nothing")]) == 2
    assert "no truth.npz" in capsys.readouterr().err
    assert cli_main(["benchmark", "--truth", str(sim)]) == 2
    assert cli_main(["benchmark", "--truth", str(sim), "--external-z", str(tmp_path / "z.pkl"),
                     "--external-volumes", str(tmp_path)]) == 2
    assert "latent file not found" in capsys.readouterr().err


def test_trajectory_ends_match_the_motions_ends_and_a_static_one_has_no_change():
    """evaluation.trajectory: a trajectory decoded at twice the box (same extent) that runs the motion backwards
    in state 1 matches the truth's last and first volumes of state 1 at its ends, its change correlates with the
    truth's (> 0.95) and its progress runs from 0 to 1; a trajectory that stays at one volume matches it at both
    ends and has no change to score."""
    from gaussianem.evaluation.trajectory import trajectory_against_truth

    truth = [voxelize_gaussians(*cloud(c, s), BOX, APIX) for s in range(N_STATES) for c in range(N_COORD)]
    fine = [voxelize_gaussians(*cloud(c, 1), 2 * BOX, APIX / 2) for c in np.linspace(N_COORD - 1, 0, 7)]
    got = trajectory_against_truth(fine, truth)
    assert got["match_first"] == 1 * N_COORD + N_COORD - 1 and got["match_last"] == 1 * N_COORD
    assert got["change_correlation"] > 0.95
    assert got["progress"][0] == 0.0 and got["progress"][-1] == pytest.approx(1.0, abs=0.1)
    assert np.all(np.diff(got["progress"]) > 0)
    static = trajectory_against_truth([truth[5]] * 4, truth)
    assert static["match_first"] == static["match_last"] == 5
    assert static["change_correlation"] is None and static["progress"] is None
    with pytest.raises(ValueError, match="two trajectory volumes"):
        trajectory_against_truth([truth[0]], truth)
