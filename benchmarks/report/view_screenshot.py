"""Open ``gaussianem view`` on a run in headless Chromium, click the latent map, lasso particles, take a screenshot
and time the click -> 3D cloud update (and, with --decode-60k, one decode of a 60,000-Gaussian model).

    python benchmarks/report/view_screenshot.py RUNDIR --screenshot docs/view.png [--outdir DIR] [--decode-60k]

Needs Debian's chromium and chromium-driver, selenium and dash. Prints one markdown line of timings.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

CLOCK_JS = """
const m = document.querySelector('#map .js-plotly-plot'), c = document.querySelector('#cloud .js-plotly-plot');
m.on('plotly_click', () => { window.__clicked = performance.now(); });
c.on('plotly_afterplot', () => { window.__drawn = performance.now(); window.__tag = c.layout.meta.tag; });
"""
TAG_JS = ("const g = document.querySelector('#cloud .js-plotly-plot');"
          "return g && g.layout && g.layout.meta ? g.layout.meta.tag : null;")


def wait(fn, timeout: float):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise SystemExit(f"timed out after {timeout} s")


def decode_60k(repeats: int = 5) -> float:
    """Median seconds of one decode (embedding cached, as the view does) of a DESIGN-sized model with 60,000
    Gaussians on the CPU."""
    import numpy as np
    import torch

    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model.spec import ModelSpec
    from gaussianem.model.vae import GaussianVAE
    from gaussianem.view.session import ViewSession

    g = 60_000
    spec = ModelSpec(box_size=128, pixel_size_angstrom=1.5, n_gaussians=g, width_min=1.0, width_max=4.0, zdim=8)
    pos = torch.as_tensor(np.random.default_rng(0).normal(size=(g, 3)) * 25, dtype=torch.float32)
    model = GaussianVAE(GaussianCloud(pos, torch.full((g,), 2.0), torch.ones(g), 1.0, 4.0), spec).eval()
    z = np.random.default_rng(1).normal(size=(50, 8))
    s = ViewSession(model, {"box_size": 128, "pixel_size_angstrom": 1.5}, 1, z, n_classes=2)
    return statistics.median(s.decode(z[i]).seconds for i in range(repeats))


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from gaussianem.view.app import LocalServer, build_app
    from gaussianem.view.session import ViewSession

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rundir", type=Path)
    p.add_argument("--screenshot", type=Path, required=True)
    p.add_argument("--outdir", type=Path, default=None, help="view outputs (default: a temporary folder)")
    p.add_argument("--clicks", type=int, default=5, help="timed clicks")
    p.add_argument("--decode-60k", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    outdir = args.outdir or Path(tempfile.mkdtemp(prefix="view_"))
    session = ViewSession.open(args.rundir, outdir=outdir)
    server = LocalServer(build_app(session)).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1050", "--hide-scrollbars"):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        browser.get(server.url)
        first = wait(lambda: browser.execute_script(TAG_JS), 120)
        drag = wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#map .nsewdrag"), 60)[0]
        w, h = drag.size["width"], drag.size["height"]
        # a lasso around the lower-left quarter
        chain = ActionChains(browser).move_to_element_with_offset(drag, int(-0.45 * w), int(0.05 * h))
        chain.click_and_hold()
        for fx, fy in [(-0.05, 0.05), (-0.05, 0.45), (-0.45, 0.45), (-0.45, 0.06)]:
            chain.move_to_element_with_offset(drag, int(fx * w), int(fy * h))
        chain.release().perform()
        wait(lambda: "particles selected" in browser.find_element(By.ID, "selected").text, 30)
        browser.execute_script(CLOCK_JS)
        times, outer = [], []
        for i in range(args.clicks):
            frac = 0.1 + 0.6 * i / max(1, args.clicks - 1)
            t0 = time.perf_counter()
            ActionChains(browser).move_to_element_with_offset(drag, int((frac - 0.5) * w), int(-0.25 * h)).click() \
                .perform()
            first = wait(lambda prev=first: (t := browser.execute_script(TAG_JS)) != prev and t, 30)
            outer.append(time.perf_counter() - t0)
            time.sleep(0.3)
            clicked, drawn = browser.execute_script("return [window.__clicked, window.__drawn]")
            times.append((drawn - clicked) / 1000)
        time.sleep(1.0)  # let WebGL finish drawing
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(args.screenshot))
    finally:
        browser.quit()
        server.stop()
    line = (f"| view on {args.rundir} | {session.n_gaussians:,} Gaussians | click event -> cloud redrawn: median "
            f"{statistics.median(times):.3f} s, max {max(times):.3f} s ({len(times)} clicks; with WebDriver's round "
            f"trips median {statistics.median(outer):.3f} s) | last decode "
            f"{session.last_decode_seconds * 1000:.1f} ms |")
    if args.decode_60k:
        line += f" 60,000-Gaussian decode: median {decode_60k():.3f} s |"
    logging.getLogger(__name__).info("screenshot: %s", args.screenshot)
    print(line)


if __name__ == "__main__":
    main()
