"""The embedded default: simulate the toy preset and run preprocess -> fit -> train -> analyze on it.

    gaussianem demo [-o DIR]

Runs every stage through its own command (the same code paths as the command line) and prints the path of the
analysis report. Sized to finish in minutes on a laptop-class CPU: 5,000 particles of box 64 are simulated, then
Fourier-cropped to a working box of 32 (4 Å/px), and the VAE is trained for a few epochs with a smaller network
than the defaults of 'gaussianem train' (the settings are written to DIR/demo.json). A stage that fails stops the
demo; the stages it did not reach are listed as ``missing`` in demo.json.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gaussianem import progress, runlog

log = logging.getLogger(__name__)

STAGES = ("simulate", "preprocess", "fit", "train", "analyze")


@dataclass
class DemoSettings:
    """What the demo runs (defaults: the full demo; the hidden options shrink it for tests)."""

    n_particles: int = 5000
    box: int = 64  # simulated box
    work_box: int = 32  # preprocess Fourier-crops to this box
    fit_epochs: int = 3
    fit_batch_size: int = 64
    fit_lr: float = 5e-2
    epochs: int = 12  # VAE epochs (train defaults to 20)
    batch_size: int = 64
    zdim: int = 4
    encoder_hidden: int = 256
    encoder_layers: int = 2
    decoder_hidden: int = 64
    decoder_features: int = 64
    ksample: int = 6
    volume_bins: int | None = None  # ground-truth volumes of the simulation (None: the preset's)
    umap: bool = True
    seed: int = 0
    device: str | None = None
    extra: dict = field(default_factory=dict)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--outdir", default="gaussianem-demo", help="output folder (default ./gaussianem-demo)")
    parser.add_argument("--device", default=None, help="torch device for every stage (default: automatic)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulation and training")
    parser.add_argument("--overwrite", action="store_true",
                        help="run in a non-empty folder that holds no earlier demo (its other files are kept)")
    progress.add_option(parser)
    # advanced/hidden: shrink the demo (tests) or grow it
    s = DemoSettings()
    hidden = argparse.SUPPRESS
    parser.add_argument("--n-particles", type=int, default=s.n_particles, help=hidden)
    parser.add_argument("--box", type=int, default=s.box, help=hidden)
    parser.add_argument("--work-box", type=int, default=s.work_box, help=hidden)
    parser.add_argument("--fit-epochs", type=int, default=s.fit_epochs, help=hidden)
    parser.add_argument("--epochs", type=int, default=s.epochs, help=hidden)
    parser.add_argument("--batch-size", type=int, default=s.batch_size, help=hidden)
    parser.add_argument("--encoder-hidden", type=int, default=s.encoder_hidden, help=hidden)
    parser.add_argument("--decoder-hidden", type=int, default=s.decoder_hidden, help=hidden)
    parser.add_argument("--ksample", type=int, default=s.ksample, help=hidden)
    parser.add_argument("--volume-bins", type=int, default=None, help=hidden)
    parser.add_argument("--no-umap", action="store_true", help=hidden)


def run_command(name: str, argv: list[str]) -> int:
    """Parse ``argv`` with the command's own parser and run its ``main`` (exactly as the CLI does; its log goes
    into its own output folder too)."""
    from gaussianem.cli import COMMANDS

    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"gaussianem {name}")
    module.add_args(parser)
    args = parser.parse_args([str(a) for a in argv])
    args.command = name
    args.command_argv = [str(a) for a in argv]
    args.command_line = f"gaussianem {name} " + " ".join(args.command_argv)
    log.info("demo: %s", args.command_line)
    with runlog.command_log(args.command_line) as record:
        rc = int(module.main(args) or 0)
        record.status = f"exit {rc}"
    return rc


def stage_arguments(stage: str, root: Path, s: DemoSettings) -> list:
    """Command-line arguments of every stage of the demo under ``root``."""
    sim, data, run = root / "simulation", root / "dataset", root / "run"
    device = ["--device", s.device] if s.device else []
    if stage == "simulate":
        bins = ["--volume-bins", s.volume_bins] if s.volume_bins else []
        return ["--preset", "toy", "-o", sim, "--n-particles", s.n_particles, "--box", s.box, "--seed", s.seed,
                *bins, "--overwrite", *device]
    if stage == "preprocess":
        box = ["--box", s.work_box] if s.work_box and s.work_box < s.box else []
        return [sim / "particles.star", "-o", data, "--map", sim / "consensus.mrc", *box, "--overwrite", *device]
    if stage == "fit":
        return [data, "--epochs", s.fit_epochs, "--batch-size", s.fit_batch_size, "--lr", s.fit_lr,
                "--lr-final", s.fit_lr / 100, "--seed", s.seed, "--overwrite", *device]
    if stage == "train":
        return [data, "-o", run, "--epochs", s.epochs, "--batch-size", s.batch_size, "--zdim", s.zdim,
                "--encoder-hidden", s.encoder_hidden, "--encoder-layers", s.encoder_layers,
                "--decoder-hidden", s.decoder_hidden, "--decoder-features", s.decoder_features,
                "--seed", s.seed, "--overwrite", *device]
    if stage == "analyze":
        return [run, "--ksample", s.ksample, "--seed", s.seed, *([] if s.umap else ["--no-umap"]), "--overwrite",
                *(["--device", s.device] if s.device else [])]
    raise ValueError(stage)


def run_demo(outdir: str | Path, settings: DemoSettings) -> dict:
    """Run the stages in order; stop at the first that fails. Returns the summary (also DIR/demo.json)."""
    from gaussianem import __version__
    from gaussianem.io.writes import write_json_atomic

    root = Path(outdir)
    root.mkdir(parents=True, exist_ok=True)
    summary: dict = {"version": __version__, "settings": asdict(settings), "stages": {}, "missing": [],
                     "report": None}
    t_all = time.perf_counter()
    for stage in STAGES:
        t0 = time.perf_counter()
        rc = run_command(stage, stage_arguments(stage, root, settings))
        summary["stages"][stage] = {"seconds": round(time.perf_counter() - t0, 2), "exit_code": rc}
        log.info("demo: %s finished in %.1f s", stage, time.perf_counter() - t0)
        if rc != 0:
            summary["failed"] = stage
            summary["missing"] = list(STAGES[STAGES.index(stage) + 1:])
            break
    summary["seconds"] = round(time.perf_counter() - t_all, 2)
    reports = sorted((root / "run").glob("analyze.*/report.html"), key=lambda p: p.stat().st_mtime)
    if reports:
        summary["report"] = str(reports[-1])
    write_json_atomic(root / "demo.json", summary)
    return summary


def main(args: argparse.Namespace) -> int:
    from gaussianem.errors import InputError

    if args.n_particles < 10:
        raise InputError("--n-particles must be at least 10")
    if args.box % 2 or args.work_box % 2:
        raise InputError("--box and --work-box must be even")
    settings = DemoSettings(n_particles=args.n_particles, box=args.box, work_box=min(args.work_box, args.box),
                            fit_epochs=args.fit_epochs, epochs=args.epochs, batch_size=args.batch_size,
                            encoder_hidden=args.encoder_hidden, decoder_hidden=args.decoder_hidden,
                            ksample=args.ksample, volume_bins=args.volume_bins, umap=not args.no_umap,
                            seed=args.seed, device=args.device)
    log.info("demo settings (smaller than the commands' defaults so it runs in minutes on a CPU): %s",
             asdict(settings))
    from gaussianem.io.staging import check_writable_parent

    root = Path(args.outdir)
    check_writable_parent(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / "demo.json").is_file() and not args.overwrite:
        raise InputError(f"{root} is not empty and holds no earlier demo (use --overwrite to run there anyway)")
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        runlog.attach(root)
        summary = run_demo(args.outdir, settings)
    except BaseException:
        if created and root.is_dir() and all(p.name == runlog.LOG_NAME for p in root.iterdir()):
            shutil.rmtree(root, ignore_errors=True)  # a demo that failed before writing anything leaves nothing
        raise
    times = ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in summary["stages"].items())
    if summary.get("failed"):
        print(f"demo stopped: stage '{summary['failed']}' failed ({times})")
        return 1
    print(f"demo finished in {summary['seconds']:.0f} s ({times}); report: {summary['report']}")
    return 0
