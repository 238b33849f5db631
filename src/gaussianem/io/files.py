"""Checks on input paths shared by the readers of io/ and the commands."""

from __future__ import annotations

from pathlib import Path

from gaussianem.errors import InputError


def existing_file(path: str | Path, what: str = "file") -> Path:
    """``path`` as a Path when it names a file; otherwise InputError "``what`` not found: ``path``"."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    return p
