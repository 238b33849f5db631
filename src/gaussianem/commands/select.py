"""Write a particle subset (index list or classes of a labelling) back as a RELION .star or cryoSPARC .cs file, or as
a cryoDRGN index .pkl (``--ind``) of the source's rows.

DATASET_OR_SOURCE is a dataset folder (indices refer to its particles) or the .star/.cs file itself (indices refer
to its rows). Every original column, the optics table and the original image paths are kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gaussianem.commands.common import hidden_alias
from gaussianem.errors import InputError


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="DATASET_OR_SOURCE",
                        help="dataset folder written by preprocess, or a .star/.cs file")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--indices", "--ind", type=Path, help="particle indices (.npy, .txt or cryoDRGN .pkl)")
    what.add_argument("--labels", type=Path, help="one label per particle (.npy, .txt or .pkl), with --classes")
    parser.add_argument("--classes", help="comma-separated labels to keep, e.g. 0,3")
    parser.add_argument("-o", "--outdir", dest="output", type=Path, metavar="OUT",
                        help="OUT.star or OUT.cs (the source's kind), or OUT.pkl: a cryoDRGN index file of the "
                        "source's rows (required)")
    hidden_alias(parser, "--output", dest="output", type=Path)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT (never an input)")


def main(args: argparse.Namespace) -> int:
    from gaussianem.io.staging import check_output
    from gaussianem.select import read_integers, resolve_source, select, write_index_pkl

    if args.output is None:
        raise InputError("-o/--outdir OUT is required (OUT.star, OUT.cs or OUT.pkl)")
    classes = None
    if args.classes:
        try:
            classes = [int(c) for c in args.classes.replace(" ", "").split(",") if c]
        except ValueError as exc:
            raise InputError(f"--classes {args.classes!r}: expected comma-separated integers") from exc
    if args.labels is not None and not classes:
        raise InputError("--labels needs --classes")
    to_pkl = args.output.suffix.lower() == ".pkl"
    if to_pkl and not args.source.is_dir():
        raise InputError(f"{args.output}: an index .pkl is written from a dataset folder (rows of its source), "
                         f"not from {args.source}")
    source_file = None if to_pkl else resolve_source(args.source)[0]
    check_output(args.output, [args.source, source_file, args.indices, args.labels], args.overwrite, folder=False)
    indices = read_integers(args.indices, "indices") if args.indices else None
    labels = read_integers(args.labels, "labels") if args.labels else None
    if to_pkl:
        n = write_index_pkl(args.source, args.output, _chosen(indices, labels, classes))
    else:
        n = select(args.source, args.output, indices=indices, labels=labels, classes=classes)
    print(f"wrote {n} particles to {args.output}")
    return 0


def _chosen(indices, labels, classes):
    """The dataset particles chosen by ``--indices`` or by ``--labels`` and ``--classes``."""
    from gaussianem.select import indices_from_labels

    return indices if indices is not None else indices_from_labels(labels, classes)
