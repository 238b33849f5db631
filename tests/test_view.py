"""``gaussianem view``: the session (decoding, maps, subsets, exports), the callbacks as plain functions, and the
page itself in headless Chromium (a click redraws the cloud within 1 s; a lasso writes a star subset that
``select`` and ``preprocess`` read back)."""

from __future__ import annotations

import logging
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import HingeFadeModel

from gaussianem.analysis import volumes
from gaussianem.errors import InputError
from gaussianem.view.session import ViewSession

CONFIG = {"box_size": 32, "pixel_size_angstrom": 2.0}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """simulate -> preprocess (a RELION star source) -> train one epoch, through the commands; no analyze."""
    from gaussianem.commands.demo import DemoSettings, run_command, stage_arguments

    root = tmp_path_factory.mktemp("view")
    s = DemoSettings(n_particles=64, box=24, work_box=16, epochs=1, batch_size=32, encoder_hidden=16,
                     decoder_hidden=8, volume_bins=2, umap=False)
    with volumes.single_cpu_thread("cpu"):  # tiny tensors: no OpenMP spin contention
        for stage in ("simulate", "preprocess", "train"):
            assert run_command(stage, stage_arguments(stage, root, s)) == 0
    return root


def _fake_session(tmp_path: Path, n: int = 200, **kw) -> ViewSession:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 3))
    return ViewSession(HingeFadeModel(60, 20), CONFIG, 1, z, outdir=tmp_path / "out", n_classes=3, **kw)


# --------------------------------------------------------------------------------------------- the session
def test_decode_matches_the_model_and_displacement(tmp_path):
    s = _fake_session(tmp_path)
    z = np.array([1.0, 0.0, 0.0])
    cloud = s.decode(z)
    with torch.no_grad():
        ref = s.model.decode(torch.tensor(z[None], dtype=torch.float32))
    np.testing.assert_allclose(cloud.positions, ref[0][0].numpy(), atol=1e-5)
    disp = s.displacement(cloud)
    moving = s.model.moving.numpy()
    assert disp[~moving].max() < 1e-5 and disp[moving].min() > 0.1  # only the hinge domain moves
    assert cloud.seconds > 0 and s.displacement_max >= 0.5
    with pytest.raises(InputError):
        s.decode(np.zeros(2))


def test_map_inverse_and_classes(tmp_path):
    s = _fake_session(tmp_path)
    assert len(np.unique(s.labels)) == 3 and "computed here" in s.label_source
    xy = s.map_coordinates("pca")
    assert xy.shape == (200, 2)
    # a particle's own z when it is clicked; PCA's inverse elsewhere (maps back onto the same map point)
    np.testing.assert_array_equal(s.latent_at("pca", 0.0, 0.0, particle=7), s.z[7])
    z = s.latent_at("pca", 1.5, -0.5)
    np.testing.assert_allclose(s._pca_xy(z)[0], [1.5, -0.5], atol=1e-9)
    path = s.line_path(s.z[0], s.z[1], 5)
    np.testing.assert_allclose(path[[0, -1]], s.z[:2])
    assert s.pc_path(1, 6).shape == (6, 3)
    with pytest.raises(InputError):
        s.pc_path(4)


def test_umap_missing_falls_back_to_pca(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)
    s = _fake_session(tmp_path)
    assert not s.umap_available()
    np.testing.assert_array_equal(s.map_coordinates("umap"), s.map_coordinates("pca"))
    assert s.axis_names("umap") == ("PC1", "PC2")


def test_lasso_and_box_select_every_particle_inside(tmp_path):
    s = _fake_session(tmp_path, n=500)
    xy = s.map_coordinates("pca")
    lasso = {"lassoPoints": {"x": [0, 5, 5, 0], "y": [-5, -5, 5, 5]}}
    np.testing.assert_array_equal(s.particles_in("pca", lasso), np.flatnonzero(xy[:, 0] > 0))
    box = {"range": {"x": [5, -5], "y": [0, 5]}}
    np.testing.assert_array_equal(s.particles_in("pca", box), np.flatnonzero((np.abs(xy[:, 0]) <= 5) & (xy[:, 1] >= 0)))
    assert len(s.particles_in("pca", None)) == 0


def test_a_large_cloud_is_subsampled_for_drawing_only(tmp_path):
    from gaussianem.view import figures

    s = _fake_session(tmp_path, max_points=50)
    cloud = s.decode(s.z[0])
    assert cloud.positions.shape[0] == s.n_gaussians == 140
    fig = figures.cloud_figure(s, cloud, "test", "t1")
    drawn = sum(len(t["x"]) for t in fig["data"])
    assert drawn == 50 and "drawing 50 of 140 Gaussians" in fig["layout"]["title"]["text"]
    assert all(0 < t["opacity"] <= 1 for t in fig["data"]) and fig["layout"]["meta"]["tag"] == "t1"
    plotly_io = pytest.importorskip("plotly.io", reason='plotly is not installed (pip install "gaussianem[view]")')
    plotly_io.from_json(plotly_io.to_json(fig))  # a valid figure


def test_decode_60k_gaussians_on_the_cpu():
    """The advertised speed: one latent point of a model of the default layer sizes with 60,000 Gaussians,
    embedding cached. About 0.08-0.15 s on an idle core or two; the bound leaves room for a busy CI machine."""
    from gaussianem.view.probe import decode_seconds

    times = decode_seconds(60_000, 3)
    assert min(times) < 5.0, times


# ------------------------------------------------------------------------------- callbacks as plain functions
def test_callbacks_pick_trajectory_subset_export(tiny_run, tmp_path):
    from gaussianem.select import read_integers
    from gaussianem.view.app import ViewCallbacks

    s = ViewSession.open(tiny_run / "run", outdir=tmp_path / "view")
    cb = ViewCallbacks(s)
    assert len(cb.draw_map("pca", "class")["data"]) == 2 + len(np.unique(s.labels))
    fig, state, clicks, info = cb.pick(None, None, None, None, "pca", [])
    assert "mean of the 64 particles" in info and clicks == []
    fig, state, clicks, _ = cb.pick("map", {"points": [{"x": 0.3, "y": -0.1}]}, None, None, "pca", clicks)
    assert state["xy"] == [pytest.approx(0.3), pytest.approx(-0.1)]  # PCA's inverse maps back: the map's marker
    fig, state, clicks, _ = cb.pick("map", {"points": [{"x": 0, "y": 0, "customdata": 5}]}, None, None, "pca",
                                    clicks)
    np.testing.assert_allclose(state["xy"], s.map_coordinates("pca")[5])
    assert np.allclose(state["z"], s.z[5]) and len(clicks) == 2 and fig["layout"]["meta"]["tag"] == state["tag"]
    traj, top, value, marks, msg = cb.make_trajectory("traj-line", 1, 4, clicks)
    assert top == 3 and value == 0 and np.allclose(traj["z"][-1], s.z[5])
    _, state3, _, info = cb.pick("frame", None, 3, traj, "pca", clicks)
    assert "frame 4/4" in info and np.allclose(state3["z"], s.z[5])
    assert cb.make_trajectory("traj-line", 1, 4, clicks[:1])[-1] == "click two points on the map first"
    assert cb.tick(1, 3, 3) == 0 and cb.tick(1, 1, 3) == 2 and cb.toggle_play(1, True) == (False, "❚❚ pause")
    # lasso -> star (source rows through select), pkl (source rows), cs refused for a star source
    xy = s.map_coordinates("pca")
    lasso = {"lassoPoints": {"x": [-99, float(np.median(xy[:, 0])), float(np.median(xy[:, 0])), -99],
                             "y": [-99, -99, 99, 99]}}
    store, msg = cb.select(lasso, "pca")
    chosen = s.particles_in("pca", lasso)
    assert msg == f"{len(chosen)} particles selected" and 0 < len(chosen) < 64
    mine = tmp_path / "view" / "mine.star"
    assert cb.write_subset(1, ".star", "mine", store) == f"wrote {len(chosen)} particles to {mine}"
    assert "exists" in cb.write_subset(1, ".star", "mine.star", store)
    assert "wrote" in cb.write_subset(1, ".pkl", None, store)
    src_index = np.load(tiny_run / "dataset" / "source_index.npy")
    np.testing.assert_array_equal(read_integers(tmp_path / "view" / "subset_001.pkl", "indices"), src_index[chosen])
    with open(tmp_path / "view" / "subset_001.pkl", "rb") as f:
        assert isinstance(pickle.load(f), np.ndarray)
    assert cb.write_subset(1, ".cs", None, store).startswith("not written: the source is a .star file")
    _check_star_subset(tiny_run, mine, src_index[chosen], tmp_path)
    # export the state shown
    msg = cb.export(1, ["mrc", "ply", "pdb"], state3)
    folder = tmp_path / "view" / "state_001"
    assert str(folder) in msg
    assert {p.name for p in folder.iterdir()} == {"vol_000.mrc", "gaussians_000.ply", "model_000.pdb",
                                                  "z_values.txt"}
    np.testing.assert_allclose(np.loadtxt(folder / "z_values.txt"), s.z[5], rtol=1e-6)
    assert "state_002" in cb.export(1, ["ply"], state3)


def _check_star_subset(root: Path, subset: Path, rows: np.ndarray, tmp_path: Path) -> None:
    """The subset holds the source's rows ``rows``; ``select`` and ``preprocess`` read it back."""
    from gaussianem.cli import main
    from gaussianem.io import star

    source = star.read_star(root / "simulation" / "particles.star")
    sub = star.read_star(subset)
    assert list(sub.particles["rlnImageName"]) == list(source.particles["rlnImageName"].iloc[rows])
    np.savetxt(tmp_path / "first.txt", [0, 1], fmt="%d")
    assert main(["select", str(subset), "--indices", str(tmp_path / "first.txt"), "-o",
                 str(tmp_path / "two.star")]) == 0
    assert len(star.read_star(tmp_path / "two.star").particles) == 2
    assert main(["preprocess", str(subset), "-o", str(tmp_path / "subset_ds"), "--datadir",
                 str(root / "simulation"), "--map", str(root / "simulation" / "consensus.mrc"), "--box", "16"]) == 0
    import json

    assert json.loads((tmp_path / "subset_ds" / "dataset.json").read_text())["n_particles"] == len(rows)


def test_view_command_without_dash_fails_in_one_line(tmp_path, monkeypatch, capsys):
    import sys

    from gaussianem.cli import main

    monkeypatch.setitem(sys.modules, "dash", None)
    assert main(["view", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "gaussianem[view]"' in err


def test_view_command_refuses_a_taken_port(tiny_run, capsys):
    import socket

    pytest.importorskip("dash")
    from gaussianem.cli import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["view", str(tiny_run / "run"), "--port", str(port)]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ headless browser
def _browser():
    """A headless Chromium driven through Debian's chromedriver (no download at run time), or a skip."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    pytest.importorskip("dash", reason='dash is not installed (pip install "gaussianem[view]")')
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("headless Chromium test: chromium and chromedriver are not installed "
                    "(apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1100",
              "--no-first-run", "--disable-background-networking"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_view_in_headless_chromium(tiny_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from gaussianem.view.app import LocalServer, build_app
    from gaussianem.view.probe import CLOCK_JS, CLOCK_READ_JS, TAG_JS, wait_for

    browser = _browser()
    session = ViewSession.open(tiny_run / "run", outdir=tmp_path / "view")
    server = LocalServer(build_app(session)).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        browser.get(server.url)
        first = wait_for(lambda: browser.execute_script(TAG_JS), 60, "the first cloud")
        drag = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#map .nsewdrag"), 30, "the map")[0]
        w, h = drag.size["width"], drag.size["height"]
        # a click on an empty spot of the map (no particle there needed) redraws the cloud within 1 s, timed in the
        # page from the click event to the redrawn 3D plot (WebDriver's own round trips are not the app's latency)
        browser.execute_script(CLOCK_JS)
        t0 = time.perf_counter()
        ActionChains(browser).move_to_element_with_offset(drag, int(0.3 * w), int(-0.3 * h)).click().perform()
        tag = wait_for(lambda: (t := browser.execute_script(TAG_JS)) != first and t, 10, "the clicked cloud")
        outer = time.perf_counter() - t0
        time.sleep(0.2)
        clicked, drawn, drawn_tag = browser.execute_script(CLOCK_READ_JS)
        assert drawn_tag == tag and clicked is not None
        latency = (drawn - clicked) / 1000
        logging.getLogger(__name__).info("cloud redrawn %.3f s after the click (%.3f s with WebDriver)", latency,
                                         outer)
        assert latency < 1.0, f"the cloud took {latency:.2f} s to update"
        assert "map (" in browser.find_element(By.ID, "info").text
        # a lasso around the left half of the map
        chain = ActionChains(browser).move_to_element_with_offset(drag, int(-0.49 * w), int(-0.49 * h))
        chain.click_and_hold()
        for dx, dy in [(0.5, 0.0), (0.5, 0.49), (0.5, 0.98), (0.01, 0.98), (0.01, 0.0)]:
            chain.move_to_element_with_offset(drag, int((dx - 0.5) * w), int((dy - 0.49) * h))
        chain.release().perform()
        selected = wait_for(lambda: "particles selected" in (t := browser.find_element(By.ID, "selected").text) and t,
                         20, "the lasso selection")
        n = int(selected.split()[0].replace(",", ""))
        assert 0 < n < 64
        browser.find_element(By.CSS_SELECTOR, "#subset-name").send_keys("lasso")
        browser.find_element(By.ID, "write-subset").click()
        msg = wait_for(lambda: (t := browser.find_element(By.ID, "subset-message").text) and t, 30, "the subset")
        subset = tmp_path / "view" / "lasso.star"
        assert msg == f"wrote {n} particles to {subset}", msg
        rows = _rows_of(subset, tiny_run)
        assert len(np.unique(rows)) == n
        _check_star_subset(tiny_run, subset, rows, tmp_path)
        # export the state shown, then a PC trajectory frame
        browser.find_element(By.ID, "export").click()
        msg = wait_for(lambda: (t := browser.find_element(By.ID, "export-message").text) and t, 60, "the export")
        assert "vol_000.mrc, gaussians_000.ply, model_000.pdb" in msg
        assert (tmp_path / "view" / "state_001" / "model_000.pdb").is_file()
        browser.find_element(By.ID, "traj-pc").click()
        wait_for(lambda: "frame 1/10" in browser.find_element(By.ID, "info").text, 20, "the trajectory's first frame")
        assert tag != browser.execute_script(TAG_JS)
        logs = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not logs, logs
    finally:
        browser.quit()
        server.stop()


def _rows_of(subset: Path, root: Path) -> np.ndarray:
    """Source rows of a star subset, found by image name."""
    from gaussianem.io import star

    names = list(star.read_star(root / "simulation" / "particles.star").particles["rlnImageName"])
    return np.array([names.index(v) for v in star.read_star(subset).particles["rlnImageName"]])
