"""Build an analysis report from the known hinge + fading-subunit model and screenshot it with headless Chromium.

    python benchmarks/report/analysis_report_demo.py --outdir /tmp/report_demo --screenshot docs/report.png

The model (``HingeFadeModel``, read from ``--model-file``: by default the test suite's ``tests/fakes.py`` of this
checkout, loaded by path) has a domain that rotates with z1 and a subunit that fades with z2; z has three
clusters (closed + subunit, open + subunit, open without it) and noise in z3.
Chromium is checked for console messages (``--enable-logging=stderr``); any 'CONSOLE' line or uncaught error
fails the script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np

from gaussianem.analysis.options import AnalysisOptions
from gaussianem.analysis.pipeline import run_analysis

DEFAULT_MODEL_FILE = Path(__file__).resolve().parents[2] / "tests" / "fakes.py"


def load_model_class(path: Path, name: str = "HingeFadeModel") -> type:
    """The class ``name`` of the Python file at ``path``, loaded as a module of its own."""
    if not path.is_file():
        raise SystemExit(f"--model-file not found: {path}")
    spec = importlib.util.spec_from_file_location("report_demo_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outdir", type=Path, default=Path("/tmp/gaussianem_report_demo"))
    p.add_argument("--screenshot", type=Path, default=None)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--no-umap", action="store_true")
    p.add_argument("--model-file", type=Path, default=DEFAULT_MODEL_FILE,
                   help="Python file defining HingeFadeModel (default: tests/fakes.py of this checkout)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, args.n)
    centres = np.array([[-1.0, 1.5, 0.0], [1.0, 1.5, 0.0], [1.0, -1.5, 0.0]])
    z = centres[truth] + rng.normal(size=(args.n, 3)) * [0.35, 0.3, 0.3]
    run = args.outdir / "run"
    run.mkdir(parents=True, exist_ok=True)
    epochs = 20
    (run / "log.jsonl").write_text("\n".join(json.dumps(
        {"type": "epoch", "epoch": e, "loss": 0.5 + 0.5 * np.exp(-e / 4), "render_loss": 0.45 + 0.5 * np.exp(-e / 4),
         "kl_loss": 0.02 * (1 - np.exp(-e / 3))}) for e in range(1, epochs + 1)) + "\n")
    model = load_model_class(args.model_file)(n_per_domain=600, n_subunit=250, width=2.0, scale=1.3)
    config = {"box_size": 64, "pixel_size_angstrom": 1.5}
    opts = AnalysisOptions(ksample=8, n_pcs=2, flex_sample=1000, umap=not args.no_umap)
    run_analysis(model, z, config, run / f"analyze.{epochs}", opts, epoch=epochs, rundir=run)
    report = run / f"analyze.{epochs}" / "report.html"
    if args.screenshot:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            raise SystemExit("chromium not found: apt-get install -y chromium")
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--no-first-run", "--enable-logging=stderr", "--v=0",
                               f"--screenshot={args.screenshot.resolve()}", "--window-size=1280,1600",
                               report.resolve().as_uri()], capture_output=True, text=True, timeout=300)
        console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
        print(f"chromium exit {proc.returncode}; console messages: {len(console)}")
        for ln in console:
            print(ln)
        if console or not args.screenshot.is_file():
            raise SystemExit("report.html produced console errors or no screenshot")
    print(f"report: {report}")


if __name__ == "__main__":
    main()
