"""Write a particle subset (index list or classes of a labelling) back as a RELION .star or cryoSPARC .cs file.

DATASET_OR_SOURCE is a dataset folder (indices refer to its particles) or the .star/.cs file itself (indices refer
to its rows). Every original column, the optics table and the original image paths are kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gaussianem.errors import InputError


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="DATASET_OR_SOURCE",
                        help="dataset folder written by preprocess, or a .star/.cs file")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--indices", type=Path, help="particle indices (.npy, .txt or cryoDRGN .pkl)")
    what.add_argument("--labels", type=Path, help="one label per particle (.npy, .txt or .pkl), with --classes")
    parser.add_argument("--classes", help="comma-separated labels to keep, e.g. 0,3")
    parser.add_argument("-o", "--output", type=Path, required=True, help="OUT.star or OUT.cs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT (never an input)")


def main(args: argparse.Namespace) -> int:
    from gaussianem.io.staging import check_output
    from gaussianem.select import read_integers, resolve_source, select

    classes = None
    if args.classes:
        try:
            classes = [int(c) for c in args.classes.replace(" ", "").split(",") if c]
        except ValueError as exc:
            raise InputError(f"--classes {args.classes!r}: expected comma-separated integers") from exc
    if args.labels is not None and not classes:
        raise InputError("--labels needs --classes")
    source_file = resolve_source(args.source)[0]
    check_output(args.output, [args.source, source_file, args.indices, args.labels], args.overwrite, folder=False)
    indices = read_integers(args.indices, "indices") if args.indices else None
    labels = read_integers(args.labels, "labels") if args.labels else None
    n = select(args.source, args.output, indices=indices, labels=labels, classes=classes)
    print(f"wrote {n} particles to {args.output}")
    return 0
