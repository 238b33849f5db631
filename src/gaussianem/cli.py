"""The ``gaussianem`` command line: a registry of commands, each a module with ``add_args`` and ``main``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys

from gaussianem import __version__

# name -> (module, one-line help). Commands appear here as they land.
COMMANDS: dict[str, tuple[str, str]] = {}


def register(name: str, module: str, help_text: str) -> None:
    COMMANDS[name] = (module, help_text)


register("preprocess", "gaussianem.commands.preprocess", "RELION/cryoSPARC/cryoDRGN inputs -> dataset folder")
register("fit", "gaussianem.commands.fit", "homogeneous refinement of the Gaussian cloud")
register("train", "gaussianem.commands.train", "train the heterogeneity VAE")
register("analyze", "gaussianem.commands.analyze", "latent analysis: volumes, trajectories, models, report")
register("eval-vol", "gaussianem.commands.eval_vol", "volumes / Gaussian clouds / PDBs at latent points")
register("select", "gaussianem.commands.select", "write a particle subset back as RELION star / cryoSPARC cs")
register("simulate", "gaussianem.commands.simulate", "synthetic datasets with ground truth")
register("demo", "gaussianem.commands.demo", "the embedded default: a small simulated dataset through the pipeline")
register("benchmark", "gaussianem.commands.benchmark", "accuracy metrics against ground truth")


def _available() -> dict[str, tuple[str, str]]:
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, help_text)
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaussianem", description="Cryo-EM heterogeneity analysis with 3D Gaussians."
    )
    parser.add_argument("--version", action="version", version=f"gaussianem {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available().items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip().splitlines()[0])
        mod.add_args(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gaussianem.io.mrc import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    args.command_line = "gaussianem " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        result = args._main(args)
    except (InputError, FileNotFoundError) as exc:
        sys.stderr.write(f"gaussianem {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"gaussianem {args.command}: interrupted\n")
        return 130
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
