"""The analysis report shows what a user needs to judge: the view command first, labelled three-view pictures of
every class and trajectory point, statistics that tell the classes apart, and FSC annotations that say when a
curve never crosses its threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_analysis import _fake_run, latents

from gaussianem.analysis import state_views, volumes
from gaussianem.physics.fsc import fsc_crossing


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    from gaussianem.cli import main

    tmp_path = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        rundir, model, truth = _fake_run(tmp_path, mp, n=150)
        out = tmp_path / "out"
        assert main(["analyze", str(rundir), "--ksample", "3", "--pc", "1", "--points", "4", "--flex-sample", "30",
                     "--no-umap", "-o", str(out)]) == 0
    return rundir, out, model


def test_view_command_comes_first(report_run):
    rundir, out, _ = report_run
    html = (out / "report.html").read_text()
    first = html.index("gaussianem view ")
    assert first < html.index("k-means classes") and f"gaussianem view {rundir} --epoch 2" in html


def test_class_statistics_tell_the_classes_apart(report_run):
    """The fake model's three clusters: hinge closed, hinge open, hinge open with the subunit removed. Their
    hinge moves the same distance either way from the consensus (z1 = ±1), and the removed subunit shows as a loss
    of amplitude; the FSC with the consensus differs between all three."""
    rundir, out, _ = report_run
    summary = json.loads((out / "summary.json").read_text())
    stats = summary["class_stats"]
    assert len(stats) == 3
    z = np.load(rundir / "z.2.npy")
    centres = z[summary["centers_ind"]]
    removed = int(np.argmin(centres[:, 1]))
    amp = [s["amplitude_change_percent"] for s in stats]
    assert amp[removed] < -5 and all(abs(a) < 3 for j, a in enumerate(amp) if j != removed)
    rms = [s["rms_displacement_angstrom"] for s in stats]
    assert min(rms) > 1.0  # the hinge is open or closed in every class, never at the consensus's 0
    assert all(s["frequency_per_angstrom"] == pytest.approx(1 / 8) for s in stats)  # 2 Å/px: half of Nyquist
    assert len({round(s["fsc_at_frequency"], 3) for s in stats}) == 3
    counts = np.loadtxt(out / "kmeans3" / "counts.txt", comments="#")
    np.testing.assert_allclose(counts[:, 5], rms, atol=1e-4)
    html = (out / "report.html").read_text()
    assert "RMS displacement (Å)" in html and "FSC at 8.0 Å" in html and "low-res FSC" not in html


def test_every_state_has_a_labelled_three_view_picture(report_run):
    _, out, _ = report_run
    html = (out / "report.html").read_text()
    assert html.count('<div class="views">') == 3  # mixture states (issue 17's "Structure found"), classes, PC1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["structure"]["n_classes"] == 3
    for j in range(3):
        assert f'alt="state {j}: ' in html
    for j in range(3):
        assert f'alt="class {j}: ' in html
    for i in range(4):
        assert f'alt="pc1 point {i}"' in html


def test_projection_figure_is_large_and_labelled():
    import io

    import matplotlib.image as mpimg

    grid = volumes.VolumeGrid(32, 2.0)
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(50, 3)) * 6
    vol = volumes.render_volume(pos, np.full(50, 2.0), np.ones(50), grid)
    proj = state_views.projections(vol)
    assert proj.shape == (3, 32, 32)
    np.testing.assert_allclose(proj[0], vol.sum(0), rtol=1e-5)
    png = state_views.projection_figure(proj, proj, grid, "class 0 · 10 particles")
    img = mpimg.imread(io.BytesIO(png))
    assert img.shape[1] >= 700 and img.shape[0] >= 250  # not a 180-px thumbnail


@pytest.mark.parametrize("curve,res,text", [
    (np.linspace(1.0, 0.6, 16), None, "stays above 0.5 up to Nyquist (4.0 Å)"),
    (np.r_[1.0, np.full(15, 0.2)], None, "below 0.5 from the first shell (64.0 Å)"),
    (np.r_[1.0, 0.9, 0.7, 0.3, np.full(12, 0.1)], 64 / 2.5, "0.5 @ 25.6 Å"),
])
def test_fsc_crossing_says_when_there_is_none(curve, res, text):
    r, t = fsc_crossing(curve, 32, 2.0, 0.5)
    assert t == text and (r == pytest.approx(res) if res else r is None)


def test_fit_fsc_annotation_when_the_curve_never_falls(tmp_path):
    from gaussianem.training.fit_outputs import write_fsc

    s = write_fsc(tmp_path / "fsc", np.linspace(1.0, 0.7, 16), 32, 4.0, "fitted cloud vs input map")
    assert s["crossings"] == ["stays above 0.5 up to Nyquist (8.0 Å)", "stays above 0.143 up to Nyquist (8.0 Å)"]
    assert "stays above 0.5 up to Nyquist" in (tmp_path / "fsc.txt").read_text()
    assert (tmp_path / "fsc.png").is_file()


def test_latents_helper_is_shared():
    z, truth = latents(30, 3)
    assert z.shape == (30, 3) and len(truth) == 30
