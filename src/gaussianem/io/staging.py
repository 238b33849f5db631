"""Output folders that appear complete or not at all, and the sweeping of what killed runs left behind.

:func:`staged_folder` yields ``.NAME.staging-PID`` beside the target folder; the command writes everything there.
On success the files are flushed to disk and the folder is renamed to its final name (an existing target, allowed
by ``--overwrite``, is moved aside first and removed after); on any failure the staging folder is removed.
:func:`sweep_leftovers` removes the staging folders, set-aside folders and atomic-write temporary files of
processes that are no longer alive (it runs at the start of the commands that write them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# .NAME.staging-PID, .NAME.old-PID (this module); .NAME.XXXXXXXX.tmp (the old staging of preprocess); atomic-write
# temporaries .STEM.XXXXXXXX.tmp.SUFFIX (io.writes.atomic_path)
_OURS = re.compile(r"^\.(?P<name>.+)\.(?:staging|old)-(?P<pid>\d+)$")
_TMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp(?:\.[A-Za-z0-9]+)*$")


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def staging_path(target: str | Path) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}.staging-{os.getpid()}"


def fsync_tree(root: Path) -> None:
    """Flush every file under ``root`` (and the folders) to disk."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        with contextlib.suppress(OSError):
            fd = os.open(dirpath, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sweep_leftovers(folder: str | Path, name: str | None = None, locked: bool = False) -> list[Path]:
    """Remove in ``folder`` what killed runs left: staging and set-aside folders of dead processes and, when the
    caller holds the folder's lock (``locked``: no other writer can be using them), atomic-write temporaries.
    ``name`` limits the sweep to leftovers of that target name. Returns the removed paths."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _OURS.match(p.name)
        if m and (name is None or m.group("name") == name) and int(m.group("pid")) != os.getpid() \
                and not pid_alive(int(m.group("pid"))):
            _remove(p)
            removed.append(p)
            continue
        m = _TMP.match(p.name)
        if m and locked and (name is None or m.group("name") == name):
            _remove(p)
            removed.append(p)
    for p in removed:
        log.info("removed %s, left by an interrupted run", p)
    return removed


@contextlib.contextmanager
def staged_folder(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging folder for ``target``; rename it to ``target`` when the body succeeds.

    ``target`` must not exist unless ``overwrite`` (the caller checks and words the refusal); with
    ``overwrite`` the old folder is replaced only once the new one is complete."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(target.parent, target.name)
    tmp = staging_path(target)
    _remove(tmp)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        install(tmp, target, overwrite)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        renamed = as_final(exc, tmp, target)
        if renamed is not exc:
            raise renamed from None
        raise


def as_final(exc: BaseException, tmp: Path, target: Path) -> BaseException:
    """An OSError about a file in the staging folder ``tmp``, naming the same file under ``target`` instead (what
    the user asked for); any other exception unchanged."""
    name = getattr(exc, "filename", None)
    if not isinstance(exc, OSError) or not isinstance(name, str | os.PathLike):
        return exc
    name = os.fspath(name)
    if not name.startswith(str(tmp)):
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(target) + name[len(str(tmp)):])


def install(tmp: Path, target: Path, overwrite: bool = False) -> None:
    """Rename the finished folder ``tmp`` to ``target`` (replacing it only when ``overwrite``)."""
    old = None
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        target.rmdir()  # an empty folder made beforehand (e.g. by the user) is no output to keep
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(17, "exists (use --overwrite to replace it)", str(target))
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        _remove(old)
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        _remove(old)
    with contextlib.suppress(OSError):
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------------ output guards
def _resolved(p: str | Path) -> Path:
    return Path(os.path.abspath(os.path.realpath(os.fspath(p))))


def check_writable_parent(path: str | Path) -> None:
    """Raise NotADirectoryError when some existing ancestor of ``path`` is not a folder (``-o /etc/passwd/x``)."""
    p = Path(os.path.abspath(path))
    for parent in [p, *p.parents][1:]:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(20, "Not a directory", str(parent))
            return


def check_output(out: str | Path, inputs: list[str | Path | None], overwrite: bool, folder: bool = True) -> None:
    """Refuse an output that is, contains or lies inside one of ``inputs`` (files or folders the command reads),
    an impossible path, and an existing output without ``overwrite`` (an existing empty folder is fine).

    Raises :class:`InputError` (one line naming both paths) or NotADirectoryError."""
    from gaussianem.errors import InputError

    out_r = _resolved(out)
    for inp in inputs:
        if inp is None:
            continue
        in_r = _resolved(inp)
        if out_r == in_r:
            raise InputError(f"the output {out} is an input of this command ({inp}): choose another output")
        if out_r in in_r.parents:
            raise InputError(f"the output {out} contains an input of this command ({inp}): choose another output")
        if in_r in out_r.parents and not in_r.is_dir():
            raise InputError(f"the output {out} lies inside an input of this command ({inp})")
    check_writable_parent(out)
    p = Path(out)
    if folder:
        if p.exists() and not p.is_dir():  # never replaced by a folder, --overwrite or not: it may be an input
            raise InputError(f"{p} exists and is not a folder; give a folder name")
        if p.is_dir() and any(p.iterdir()) and not overwrite:
            raise InputError(f"{p} exists and is not empty (use --overwrite to replace it)")
    else:
        if p.is_dir():
            raise InputError(f"{p} is a folder; give a file name")
        if p.exists() and not overwrite:
            raise InputError(f"{p} exists (use --overwrite to replace it)")
