"""Progress bars: shown only on a terminal, and never with ``--no-progress``.

Every tqdm bar of the package takes ``disable=bar_disabled(...)``: ``None`` lets tqdm hide the bar when stderr is
not a TTY (a redirected log then holds no carriage-return lines); ``True`` hides it always.
"""

from __future__ import annotations

import argparse

_state = {"enabled": True}


def set_enabled(enabled: bool) -> None:
    """The command's ``--no-progress`` (set by the CLI before the command runs)."""
    _state["enabled"] = bool(enabled)


def bar_disabled(enabled: bool = True) -> bool | None:
    """tqdm's ``disable``: ``True`` when bars are off here or for the command, else ``None`` (TTY only)."""
    return None if enabled and _state["enabled"] else True


def add_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` for a command that has none of its own (dest ``progress``)."""
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars (they show only when stderr is a terminal)")


def wanted(args: argparse.Namespace) -> bool:
    """Whether the parsed command line leaves the progress bars on (``--no-progress`` of any spelling)."""
    return bool(getattr(args, "progress", True)) and not getattr(args, "no_progress", False)
