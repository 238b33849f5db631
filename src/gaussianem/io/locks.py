"""One writer per folder: an advisory ``flock`` on a lock file, with the holder's pid written in it.

:func:`folder_lock` is held for the whole of a command that writes into a run or dataset folder. A second writer
fails at once with a one-line :class:`~gaussianem.errors.GaussianEMRuntimeError` naming the other process.
The lock file is removed on release; a lock left by a killed process is no obstacle (the kernel drops a dead
process's flock), and its file is taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from gaussianem.errors import GaussianEMRuntimeError, InputError

log = logging.getLogger(__name__)

LOCK_NAME = ".gaussianem.lock"


def lock_path_for(folder: str | Path, inside: bool = True) -> Path:
    """The lock file of ``folder``: inside it (a run folder), or beside it as ``.NAME.lock`` (a folder that is
    only created at the end, such as a dataset folder installed from a staging folder)."""
    folder = Path(folder)
    return folder / LOCK_NAME if inside else folder.parent / f".{folder.name}.lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    pid, _, command = text.partition(" ")
    return f"pid {pid}" + (f" ({command})" if command else "") if pid.isdigit() else "another process"


@contextlib.contextmanager
def folder_lock(folder: str | Path, command: str = "gaussianem", inside: bool = True) -> Iterator[Path]:
    """Hold the advisory lock of ``folder`` (see :func:`lock_path_for`) for the body of the ``with``.

    Creates the lock's folder when needed (and removes it again on exit when it created it and it is empty).
    Raises :class:`GaussianEMRuntimeError` when another process holds the lock."""
    folder = Path(folder)
    path = lock_path_for(folder, inside)
    created = []
    for d in reversed([path.parent, *path.parent.parents]):
        if not d.exists():
            created.append(d)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path.parent}: cannot create the folder ({exc.strerror or exc})") from None
    fd = _acquire(path, folder, command)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        for d in reversed(created):  # only folders this call made, and only while empty
            with contextlib.suppress(OSError):
                d.rmdir()


def _acquire(path: Path, folder: Path, command: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise InputError(f"{path}: cannot create the lock file ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise GaussianEMRuntimeError(
                    f"{folder} is in use by another gaussianem process ({_holder(path)}); wait for it to finish "
                    "(one writer per folder)") from None
            raise InputError(f"{path}: cannot lock ({exc.strerror or exc})") from None
        # the holder before us may have removed the file after we opened it: lock the file that is there now
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {command}\n".encode())
        return fd
