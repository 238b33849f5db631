"""The ``gaussianem`` command line: a registry of commands, each a module with ``add_args`` and ``main``."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from gaussianem import __version__

# name -> (module, one-line help); each module has ``add_args(parser)`` and ``main(args)``.
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("gaussianem.commands.preprocess", "RELION/cryoSPARC/cryoDRGN inputs -> dataset folder"),
    "fit": ("gaussianem.commands.fit", "homogeneous refinement of the Gaussian cloud"),
    "train": ("gaussianem.commands.train", "train the heterogeneity VAE"),
    "analyze": ("gaussianem.commands.analyze", "latent analysis: volumes, trajectories, models, report"),
    "eval-vol": ("gaussianem.commands.eval_vol", "volumes / Gaussian clouds / PDBs at latent points"),
    "select": ("gaussianem.commands.select", "write a particle subset back as RELION star / cryoSPARC cs"),
    "simulate": ("gaussianem.commands.simulate", "synthetic datasets with ground truth"),
    "demo": ("gaussianem.commands.demo", "the embedded default: a small simulated dataset through the pipeline"),
    "benchmark": ("gaussianem.commands.benchmark", "accuracy metrics against ground truth"),
    "view": ("gaussianem.commands.view", "explore a trained run's latent space live in the browser"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gaussianem", description="Cryo-EM heterogeneity analysis with 3D Gaussians."
    )
    parser.add_argument("--version", action="version", version=f"gaussianem {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip().splitlines()[0])
        mod.add_args(p)
        p.set_defaults(_main=mod.main)
    return parser


# a failure of the machine rather than of the input: exit 1 (every other OSError is about a path the user gave: 2)
RUNTIME_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EFBIG, errno.EMFILE, errno.ENFILE}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def os_error_message(exc: OSError) -> str:
    """``FILE: cause`` for an OSError (both file names for a rename)."""
    cause = exc.strerror or _one_line(exc)
    names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{' -> '.join(names)}: {cause}" if names else cause


def _fail(command: str, message: str, code: int) -> int:
    from gaussianem import runlog

    sys.stderr.write(f"gaussianem {command}: error: {message}\n")
    runlog.note(f"gaussianem {command}: error: {message}")
    return code


def command_argv(argv: list[str], command: str) -> list[str]:
    """The words after the command's name (the global options before it left out)."""
    return argv[argv.index(command) + 1:] if command in argv else list(argv)


def main(argv: list[str] | None = None) -> int:
    from gaussianem import progress, runlog

    parser = build_parser()
    words = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser.parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    args.command_line = "gaussianem " + " ".join(words)
    args.command_argv = command_argv(words, args.command)
    progress.set_enabled(progress.wanted(args))
    with runlog.command_log(args.command_line) as record:
        rc = _run(args)
        record.status = f"exit {rc}"
        if rc == 2:  # refused: the output folder is left as it was
            record.discard()
    return rc


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; every failure ends as one line on stderr and an exit code (docs/CONTRACTS.md)."""
    from gaussianem.errors import GaussianEMRuntimeError, InputError

    try:
        result = args._main(args)
    except InputError as exc:
        return _fail(args.command, _one_line(exc), 2)
    except GaussianEMRuntimeError as exc:
        return _fail(args.command, _one_line(exc), 1)
    except OSError as exc:  # EACCES, ENOTDIR, ENOSPC, ...: the file and the cause
        return _fail(args.command, os_error_message(exc), 1 if exc.errno in RUNTIME_ERRNOS else 2)
    except KeyboardInterrupt:
        sys.stderr.write(f"gaussianem {args.command}: interrupted\n")
        return 130
    except Exception as exc:  # a bug, or a case no check foresaw: still one line (the traceback with -v)
        logging.getLogger("gaussianem").debug("unexpected error", exc_info=True)
        return _fail(args.command, f"unexpected {type(exc).__name__}: {_one_line(exc)} (run with -v to see where)",
                     1)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
