"""The text log every command leaves in its output folder (``FOLDER/gaussianem.log``, appended).

:func:`command_log` wraps one command: it collects the log records (INFO and up) from the start, in memory, and
a command calls :func:`attach` with its output folder once that folder is known and checked (never an input,
never an existing output refused); the collected records are then written there, the rest streamed as they come.
A command refused (exit 2) takes its section back out, leaving the folder as it was. A section starts with the
time, the version and the command line, and ends with the exit status and the duration. Staged outputs attach to
their staging folder: the log moves with it. Commands run inside another (the demo's stages) log into their own
folder and into the outer command's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from gaussianem import __version__
from gaussianem.errors import InputError

LOG_NAME = "gaussianem.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_active: list[CommandLog] = []


class CommandLog(logging.Handler):
    """Records of one command: held in memory until :meth:`attach`, then appended to ``FOLDER/gaussianem.log``."""

    def __init__(self, command_line: str) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        self.started = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        self._lines = [f"=== {stamp} gaussianem {__version__}: {command_line}"]
        self._stream = None
        self.path: Path | None = None
        self.status = "failed"  # the caller sets the exit status

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:  # a log that cannot be written must never stop the command
            self.handleError(record)

    def _write(self, line: str) -> None:
        if self._stream is None:
            self._lines.append(line)
        else:
            self._stream.write(line + "\n")
            self._stream.flush()

    def attach(self, folder: Path) -> None:
        """Write the records so far into ``folder/gaussianem.log`` and stream the next ones there."""
        if self._stream is not None:
            return
        self.path = Path(folder) / LOG_NAME
        self._size = self.path.stat().st_size if self.path.is_file() else None
        self._stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._stream.write("".join(line + "\n" for line in self._lines))
        self._stream.flush()
        self._lines = []

    def discard(self) -> None:
        """Take this command's section back out of the file (a refused command leaves its folder as it was)."""
        if self._stream is None or self.path is None:
            self._lines = []
            return
        with contextlib.suppress(OSError):
            self._stream.close()
            if self._size is None:
                self.path.unlink()
            else:
                os.truncate(self.path, self._size)
        self._stream, self._lines = None, []
        self._discarded = True

    def finish(self) -> None:
        if getattr(self, "_discarded", False):
            return
        self._write(f"=== {self.status} after {time.time() - self.started:.1f} s")

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None
        super().close()


def attach(folder: str | Path) -> None:
    """The running command's output folder is ``folder``: its log goes to ``folder/gaussianem.log`` (no-op outside a
    :func:`command_log`, e.g. a command's ``main`` called from Python)."""
    if _active:
        try:
            _active[-1].attach(Path(folder))
        except OSError as exc:
            logging.getLogger(__name__).warning("cannot write the log into %s (%s)", folder, exc.strerror or exc)


@contextlib.contextmanager
def command_log(command_line: str) -> Iterator[CommandLog]:
    """Collect the records of the command run inside the block (INFO and up; the root logger is lowered to INFO
    while it runs when it was higher)."""
    root = logging.getLogger()
    handler = CommandLog(command_line)
    level = root.level
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    _active.append(handler)
    try:
        yield handler
    except InputError:  # refused: nothing written (docs/CONTRACTS.md, exit codes)
        handler.discard()
        raise
    except KeyboardInterrupt:
        handler.status = "interrupted"
        raise
    finally:
        _active.remove(handler)
        root.removeHandler(handler)
        root.setLevel(level)
        handler.finish()
        handler.close()


def note(line: str) -> None:
    """A line for the running commands' logs only (e.g. the one-line error already printed on stderr)."""
    for handler in _active:
        handler._write(line)
