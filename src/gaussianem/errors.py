"""The package's error types: what the command line turns into one line and an exit code.

``InputError`` is bad user input (a missing or damaged file, a value out of range): exit 2.
``GaussianEMRuntimeError`` is a failure while running on good input (out of memory, a diverged loss): exit 1.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the CLI reports it in one line and exits with code 2."""


class GaussianEMRuntimeError(RuntimeError):
    """A failure while running on valid input: the CLI reports it in one line and exits with code 1."""
