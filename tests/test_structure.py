"""Which structure analyze reports: discrete states (mixture by BIC), continuous motions (within-state PCA), both at
once; on synthetic latents with a known truth and through the analyze command on a fake model."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
import yaml
from fakes import HingeFadeModel
from sklearn.metrics import adjusted_rand_score

from gaussianem.analysis import inputs, structure, volumes

BOX, APIX = 32, 2.0


def blobs(n: int = 900, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    centres = np.array([[-2.0, 0.0, 0.0], [2.0, 0.5, 0.0], [0.0, 2.5, 0.3]])
    return centres[truth] + 0.3 * rng.normal(size=(n, 3)), truth


def states_on_a_line(n: int = 1200, seed: int = 0, gap: float = 1.5, noise: float = 0.15,
                     length: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z (n, 3): z1 a continuous coordinate (uniform ±length), z2 the state (±gap), z3 noise -> z, state, coord."""
    rng = np.random.default_rng(seed)
    coord = rng.uniform(-length, length, n)
    state = rng.integers(0, 2, n)
    z = np.stack([coord, gap * (2 * state - 1) + noise * rng.normal(size=n), 0.1 * rng.normal(size=n)], 1)
    return z, state, coord


def test_three_blobs_are_three_classes_and_no_motion():
    z, truth = blobs()
    found = structure.find_structure(z)
    d = structure.decide(found)
    assert d["n_classes"] == 3 and d["statement"].startswith("3 classes (")
    assert d["statement"].endswith("no continuous motion")
    assert adjusted_rand_score(truth, found.states.labels) > 0.97
    assert found.states.counts.tolist() == sorted(found.states.counts.tolist(), reverse=True)
    assert found.states.stability > 0.95
    np.testing.assert_array_equal(found.states.labels[found.states.centers_ind], np.arange(3))


def test_a_line_is_a_motion_along_pc1_and_no_classes():
    rng = np.random.default_rng(2)
    x = rng.uniform(-2, 2, 1500)
    z = np.stack([x, 0.1 * rng.normal(size=1500), 0.1 * rng.normal(size=1500)], 1)
    found = structure.find_structure(z)
    d = structure.decide(found)
    assert d["statement"] == "no discrete classes; a continuous motion along PC1"
    assert found.states.n_components >= 2  # BIC alone would cut the line: the valley rule joins the pieces
    c = found.candidates[0]
    assert abs(c.direction[0]) > 0.99 and c.modes == 1
    ends = c.trajectory[[0, -1], 0]
    np.testing.assert_allclose(np.sort(ends), np.percentile(x, [5, 95]), atol=0.05)


def test_states_spread_along_a_line_give_both():
    z, state, _ = states_on_a_line()
    found = structure.find_structure(z)
    d = structure.decide(found)
    assert d["statement"].startswith("2 classes (") and d["statement"].endswith(
        "a continuous motion along within-state PC1")
    assert adjusted_rand_score(state, found.states.labels) > 0.99
    # the states dominate PC1 of z; the motion is the first within-state PC
    from sklearn.decomposition import PCA

    assert abs(PCA().fit(z).components_[0][1]) > 0.9
    assert abs(found.candidates[0].direction[0]) > 0.99
    # its trajectory stays in the most populous state
    major = int(np.argmax(np.bincount(found.states.labels)))
    np.testing.assert_allclose(found.candidates[0].trajectory[:, 1], found.states.means[major][1], atol=0.05)


def test_a_state_in_a_low_variance_direction_is_found_beside_a_wide_motion():
    """The issue's case: k-means with K=2 splits along the motion; the mixture finds the states."""
    from sklearn.cluster import KMeans

    z, state, _ = states_on_a_line(gap=0.4, noise=0.06, length=6.0)
    assert adjusted_rand_score(state, KMeans(2, n_init=10, random_state=0).fit_predict(z)) < 0.05
    found = structure.find_structure(z)
    assert found.states.n == 2 and adjusted_rand_score(state, found.states.labels) > 0.99
    assert structure.decide(found)["motions"][0]["is_motion"]


def test_a_motion_along_different_directions_in_each_state_is_found_in_a_state_of_its_own():
    """The latent split's case: the same motion along z1 in state 0 and along z2 in state 1 (the state along z3, a
    little noise elsewhere). Pooled within-state residuals have two equal PCs and no candidate; state 0's own PCA
    has the motion as PC1, with its trajectory from that state's mean along z1 over the 5th-95th percentile."""
    rng = np.random.default_rng(7)
    n = 2400
    state = (np.arange(n) >= n * 0.55).astype(int)  # 1,320 / 1,080
    coord = rng.uniform(-2, 2, n)
    z = 0.1 * rng.normal(size=(n, 5))
    z[state == 0, 0] += coord[state == 0]
    z[state == 1, 1] += coord[state == 1]
    z[:, 2] += 3.0 * (2 * state - 1)
    pooled = structure.find_structure(z)
    assert structure.decide(pooled)["statement"] == "2 classes (1,320, 1,080 particles); no continuous motion"
    found, d = structure.find_motions(z, pooled, lambda candidates: None)
    assert found.states.n == 2 and adjusted_rand_score(state, found.states.labels) > 0.99
    assert d["statement"] == "2 classes (1,320, 1,080 particles); a continuous motion along PC1 of state 0"
    assert d["motion_axis"] == "PC of state 0" and d["motions"][0]["state"] == 0
    c = found.candidates[0]
    assert abs(c.direction[0]) > 0.99 and c.state == 0
    np.testing.assert_allclose(np.sort(c.trajectory[[0, -1], 0]), np.percentile(coord[state == 0], [5, 95]), atol=0.1)
    np.testing.assert_allclose(c.trajectory[:, 2], found.states.means[0][2], atol=0.05)
    # pooled, nothing stood out (the two directions equally wide): the per-state PCA is what found it; a state
    # whose ends do not move (end shifts below min_shift) gives no motion, and the next state is tried
    assert not any(p.stands_out for p in pooled.candidates)
    still = {0: {1: 0.2}, 1: {1: 3.0}}
    found, d = structure.find_motions(z, pooled, lambda cands: {} if cands[0].state is None else still[cands[0].state])
    assert d["statement"].endswith("a continuous motion along PC1 of state 1") and found.candidates[0].state == 1
    assert abs(found.candidates[0].direction[1]) > 0.99


def test_noise_is_neither_and_small_end_shifts_are_no_motion():
    rng = np.random.default_rng(4)
    found = structure.find_structure(rng.normal(size=(1500, 6)))
    assert structure.decide(found)["statement"] == "no discrete classes; no continuous motion"
    z, _, _ = states_on_a_line()
    found = structure.find_structure(z)
    d = structure.decide(found, end_shifts={1: 0.4}, min_shift=1.0)
    assert d["statement"].endswith("no continuous motion") and d["motions"][0]["end_shift_angstrom"] == 0.4
    assert structure.decide(found, end_shifts={1: 3.0})["motions"][0]["is_motion"]


def test_a_tiny_group_is_not_a_class():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(1000, 3))
    z[:15] += 8.0  # 1.5 % of the particles, far away
    assert structure.find_states(z, min_fraction=0.03).n == 1
    assert structure.find_states(z, min_fraction=0.01).n == 2


def test_amplitude_channel_groups_present_and_absent_subunit():
    rng = np.random.default_rng(6)
    present = rng.uniform(size=400) < 0.7
    rel = 1.0 + 0.03 * rng.normal(size=(400, 50))
    rel[:, :12] *= np.where(present, 1.0, 0.02)[:, None]  # 12 Gaussians of a subunit, absent in 30 %
    a = structure.amplitude_groups(rel)
    assert a["summary"]["variable_gaussians"] == 12 and a["summary"]["n_groups"] == 2
    assert a["summary"]["counts"] == sorted([int(present.sum()), int((~present).sum())], reverse=True)
    assert adjusted_rand_score(present, a["labels"]) == pytest.approx(1.0)
    assert sorted(a["summary"]["mean_relative_amplitude"]) == pytest.approx([0.02, 1.0], abs=0.02)
    still = structure.amplitude_groups(1.0 + 0.03 * rng.normal(size=(400, 50)))["summary"]
    assert still["variable_gaussians"] == 0 and still["n_groups"] == 1


def test_end_change_tells_a_fade_from_a_motion():
    """discovery.end_change between two latent points of HingeFadeModel (190 Gaussians of amplitude 1, a subunit of
    30 at base · sigmoid(4 z2)): along z2 from -1.5 to 1.5 no Gaussian moves and the subunit's 30 Gaussians change
    by sigmoid(6) - sigmoid(-6) each; along z1 from -1 to 1 the moving domain turns by 0.8 rad and no amplitude
    changes."""
    from gaussianem.analysis.discovery import end_change
    from gaussianem.analysis.options import AnalysisOptions

    model = HingeFadeModel(80, 30)
    opts = AnalysisOptions()
    shift, share = end_change(model, np.array([[0.0, -1.5, 0.0], [0.0, 1.5, 0.0]]), opts)
    sig = 1 / (1 + np.exp(-6.0))
    assert shift == pytest.approx(0.0, abs=1e-4) and share == pytest.approx(30 * (2 * sig - 1) / 190, rel=1e-4)
    shift, share = end_change(model, np.array([[-1.0, 1.5, 0.0], [1.0, 1.5, 0.0]]), opts)
    # the moving domain's Gaussians sit about 10 Å from the pivot: a 0.8 rad turn moves them about 2·10·sin(0.4)
    assert shift > 5.0 and share == pytest.approx(0.0, abs=1e-5)


# ---------------------------------------------------------------------------------- through analyze
@pytest.fixture(scope="module")
def mixed_analysis(tmp_path_factory):
    """analyze on HingeFadeModel with latents of two states (subunit present / absent, z2 = ±1.5) each spread
    along the hinge (z1 uniform ±1.5)."""
    from gaussianem.cli import main

    tmp = tmp_path_factory.mktemp("mixed")
    rundir = tmp / "run"
    rundir.mkdir()
    (rundir / "config.yaml").write_text(yaml.safe_dump({"data": {"box_size": BOX, "pixel_size_angstrom": APIX},
                                                        "zdim": 3}))
    z, state, _ = states_on_a_line(400, seed=1, length=1.5)
    np.save(rundir / "z.1.npy", z)
    model = HingeFadeModel(80, 30)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inputs, "_load_model", lambda rd, epoch, device: (model, {"data": {
            "box_size": BOX, "pixel_size_angstrom": APIX}}, 1))
        rc = main(["analyze", str(rundir), "--ksample", "4", "--pc", "2", "--flex-sample", "60", "--no-umap"])
    return rc, rundir / "analyze.1", model, z, state


def test_analyze_reports_classes_and_motion(mixed_analysis):
    rc, out, model, z, state = mixed_analysis
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    s = summary["structure"]
    assert s["n_classes"] == 2
    assert s["statement"].startswith("2 classes (") and s["statement"].endswith(
        "a continuous motion along within-state PC1")
    assert sorted(s["classes"]["counts"]) == sorted(np.bincount(state).tolist())
    html = (out / "report.html").read_text()
    assert "Structure found" in html and f"Found: {s['statement']}." in html
    assert f"state 1: {s['classes']['counts'][1]:,} particles" in html  # the state volumes' views
    labels = np.load(out / "states" / "labels.npy")
    assert adjusted_rand_score(state, labels) == pytest.approx(1.0)
    # one state volume each, one with the subunit and one without
    centres = z[np.load(out / "states" / "centers_ind.npy")]
    _, _, amp = volumes.decode_points(model, centres)
    sub = model.subunit.numpy()
    assert sorted(amp[:, sub].mean(1).round(2).tolist()) == [0.0, 1.0]
    assert sorted(p.name for p in (out / "states").glob("vol_*.mrc")) == ["vol_000.mrc", "vol_001.mrc"]
    amp_groups = s["amplitude"]
    assert amp_groups["variable_gaussians"] == int(sub.sum()) and amp_groups["n_groups"] == 2
    assert amp_groups["ari_vs_states"] == pytest.approx(1.0)
    assert "Amplitude channel: over 60 sampled particles, 30 Gaussians" in html
    motion = s["motions"][0]
    assert motion["is_motion"] and motion["folder"] == "motion1" and motion["end_shift_angstrom"] > 5.0
    assert motion["end_amplitude_change"] < 0.01  # moved, not faded: inside one state the subunit stays as it is
    assert "amplitude changed (%)" in html


def test_motion_trajectory_ends_match_the_motion_ends(mixed_analysis):
    """The end volumes of motion1/ are the hinge at the 5th and 95th percentile of z1, in one state."""
    _, out, model, z, _ = mixed_analysis
    zt = np.loadtxt(out / "motion1" / "z_values.txt")
    assert len(sorted((out / "motion1").glob("vol_*.mrc"))) == 10
    lo, hi = np.percentile(z[:, 0], [5, 95])
    np.testing.assert_allclose(sorted([zt[0, 0], zt[-1, 0]]), [lo, hi], atol=0.1)
    assert np.ptp(zt[:, 1]) < 0.1 and abs(abs(zt[0, 1]) - 1.5) < 0.1  # along the hinge, inside one state
    grid = volumes.output_grid(volumes.working_grid({"data": {"box_size": BOX, "pixel_size_angstrom": APIX}}),
                               None, None)
    for i in (0, 9):
        ref_z = np.array([[zt[i, 0], zt[i, 1], 0.0]])
        pos, wid, amp = volumes.decode_points(model, ref_z)
        ref = volumes.render_volume(pos[0], wid[0], amp[0], grid)
        got = mrcfile.read(out / "motion1" / f"vol_{i:03d}.mrc")
        assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.99
    first, last = (mrcfile.read(out / "motion1" / f"vol_{i:03d}.mrc") for i in (0, 9))
    assert np.corrcoef(first.ravel(), last.ravel())[0, 1] < 0.95  # the ends differ: the domain has swung
    cxc = (out / "chimerax.cxc").read_text()
    assert "open motion1/vol_*.mrc vseries true" in cxc
    assert (out / "states" / "z_pca_states.png").stat().st_size > 1000

