"""Explore a trained run in the browser: the latent map, the decoded Gaussian cloud of any point, trajectories,
particle subsets (lasso -> star/cs/pkl) and exports (mrc/ply/pdb).

    gaussianem view RUNDIR [--epoch E] [--port P] [-o OUTDIR] [--max-points N]

Serves a local web page on 127.0.0.1 only and prints its URL; stop it with Ctrl+C. Needs Dash:
pip install "gaussianem[view]".
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gaussianem.devices import resolve_device
from gaussianem.errors import GaussianEMRuntimeError, InputError

log = logging.getLogger(__name__)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("rundir", type=Path, help="run folder written by 'gaussianem train'")
    p.add_argument("--epoch", type=int, default=None, help="epoch (1-based; default: the last)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("-o", "--outdir", type=Path, default=None,
                   help="where exports and particle subsets go (default RUNDIR/view.E)")
    p.add_argument("--max-points", type=int, default=20_000,
                   help="Gaussians drawn at most (a fixed random subset beyond; default 20000)")
    p.add_argument("--classes", type=int, default=8,
                   help="k-means classes when RUNDIR/analyze.E has none (default 8)")
    p.add_argument("--device", default="cpu", help="torch device for decoding (default cpu)")


def main(args: argparse.Namespace) -> int:
    try:
        import dash  # noqa: F401
    except ImportError as exc:
        raise GaussianEMRuntimeError('the view needs Dash: pip install "gaussianem[view]"') from exc
    from gaussianem.view.app import LocalServer, build_app
    from gaussianem.view.session import ViewSession

    session = ViewSession.open(args.rundir, args.epoch, args.outdir, device=str(resolve_device(args.device)),
                               max_points=args.max_points, n_classes=args.classes)
    try:
        server = LocalServer(build_app(session), "127.0.0.1", args.port)
    except OSError as exc:
        raise InputError(f"cannot serve on 127.0.0.1:{args.port} ({exc.strerror or exc}): choose another --port, "
                         "or leave it out for a free one") from exc
    print(f"GaussianEM view of {args.rundir} (epoch {session.epoch}): {server.url}   (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("view stopped")
    return 0
