"""Option helpers shared by the commands: one spelling per option, older spellings kept as hidden aliases."""

from __future__ import annotations

import argparse


def hidden_alias(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *flags: str, dest: str,
                 **kwargs) -> None:
    """An older spelling of an option (``--out`` for ``--outdir``): parsed into the same ``dest``, not shown in
    ``--help``, and without a default of its own (the main spelling's default stands)."""
    parser.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)
