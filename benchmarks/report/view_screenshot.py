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


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from gaussianem.view.app import LocalServer, build_app
    from gaussianem.view.probe import CLOCK_JS, CLOCK_READ_JS, TAG_JS, wait_for
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
        first = wait_for(lambda: browser.execute_script(TAG_JS), 120, "the first cloud")
        drag = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#map .nsewdrag"), 60, "the map")[0]
        w, h = drag.size["width"], drag.size["height"]
        # a lasso around the lower-left quarter
        chain = ActionChains(browser).move_to_element_with_offset(drag, int(-0.45 * w), int(0.05 * h))
        chain.click_and_hold()
        for fx, fy in [(-0.05, 0.05), (-0.05, 0.45), (-0.45, 0.45), (-0.45, 0.06)]:
            chain.move_to_element_with_offset(drag, int(fx * w), int(fy * h))
        chain.release().perform()
        wait_for(lambda: "particles selected" in browser.find_element(By.ID, "selected").text, 30, "the lasso")
        browser.execute_script(CLOCK_JS)
        times, outer = [], []
        for i in range(args.clicks):
            frac = 0.1 + 0.6 * i / max(1, args.clicks - 1)
            t0 = time.perf_counter()
            ActionChains(browser).move_to_element_with_offset(drag, int((frac - 0.5) * w), int(-0.25 * h)).click() \
                .perform()
            first = wait_for(lambda prev=first: (t := browser.execute_script(TAG_JS)) != prev and t, 30, "the cloud")
            outer.append(time.perf_counter() - t0)
            time.sleep(0.3)
            clicked, drawn, _ = browser.execute_script(CLOCK_READ_JS)
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
        from gaussianem.view.probe import decode_seconds

        line += f" 60,000-Gaussian decode: median {statistics.median(decode_seconds(60_000, 5)):.3f} s |"
    logging.getLogger(__name__).info("screenshot: %s", args.screenshot)
    print(line)


if __name__ == "__main__":
    main()
