"""Atomic file output: no reader sees a half-written file, and nothing is overwritten unasked.

`atomic_write` writes beside the target, to a temporary file named
``.{name}.{pid}.XXXXXXXX.tmp``, fsyncs it, renames it over the target and fsyncs the
directory. Only a regular file is ever replaced: a symlink, a device node (``/dev/null``), a
FIFO, a socket or a directory is refused even with ``force``. The temporary file is removed
on every exit that can be caught (exceptions, Ctrl-C, SIGTERM); one left by a writer that
was killed outright is removed by the next write to the same target, once its writer's
process is gone (never while that process lives).
"""

from __future__ import annotations

import os
import re
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import psutil

from .errors import SparsebenchError

LEGACY_TEMP_STALE_S = 3600.0  # temp names without a writer pid (older versions) expire
PID_START_SLACK_S = 1.0  # clock granularity between a process's start time and a file's mtime


def check_writable(path: str | Path, force: bool = False) -> Path:
    """Refuse a target that is not a regular file, an existing file unless `force`, and a
    missing parent directory. Symlinks are not followed: a link (even dangling) is refused."""
    path = Path(path)
    mode = _lstat_mode(path)
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise SparsebenchError(f"{path} is a directory, not a file")
        if not stat.S_ISREG(mode):
            raise SparsebenchError(
                f"{path} exists and is not a regular file; refusing to replace it"
            )
        if not force:
            raise SparsebenchError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        if path.parent.exists():
            raise SparsebenchError(f"{path.parent} is not a directory")
        raise SparsebenchError(f"directory {path.parent} does not exist")
    return path


def _lstat_mode(path: Path) -> int | None:
    """The mode of `path` itself (a symlink is not followed), or None if nothing is there."""
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], force: bool = False) -> Path:
    """Call `write` on a temporary file beside `path`, fsync it, then rename it into place.

    The target is checked with `check_writable` before writing and again just before the
    rename. Stale temporary files of earlier, killed writes to `path` are removed first.
    """
    path = check_writable(path, force)
    remove_stale_temps(path)
    with _sigterm_raises():
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            check_writable(path, force)  # it may have appeared or changed while we wrote
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _fsync_directory(path.parent)
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str, force: bool = False) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), force=force)


# --- temporary files: names, and removal of those killed writers left behind ---------------


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _temp_pattern(path: Path) -> re.Pattern[str]:
    """Matches the temp names of `path`: the writer's pid (absent in older versions), then
    mkstemp's 8 random characters (which never contain a dot)."""
    return re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp")


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temporary files of earlier writes to `path` whose writer is gone.

    A temp file names its writer's pid; it is stale once no process has that pid, or the
    process that has it started after the file was last written (the pid was reused). A temp
    name without a pid (older versions) is stale after `LEGACY_TEMP_STALE_S`. Best effort:
    errors are ignored. Returns the paths removed.
    """
    path = Path(path)
    pattern = _temp_pattern(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                continue
            pid = int(match.group(1)) if match.group(1) else None
            if _is_stale(pid, info.st_mtime):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _is_stale(pid: int | None, mtime: float) -> bool:
    if pid is None:
        return time.time() - mtime > LEGACY_TEMP_STALE_S
    if pid == os.getpid():
        return False
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, OSError, ValueError):
        return False  # cannot tell: keep it
    return started > mtime + PID_START_SLACK_S


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable; best effort (not every platform allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- SIGTERM: turned into an exception while a temp file exists, then re-delivered ---------


class _Terminated(SystemExit):
    """Raised by the temporary SIGTERM handler so that cleanup code runs."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises `_Terminated` (so `finally` and `except` clauses
    run) instead of killing the process outright; afterwards it is re-delivered, so the
    process still dies of it. Only in the main thread, and only where SIGTERM has its
    default action (a handler someone else installed is left alone)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise _Terminated(128 + signum)

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise  # where the signal does not kill at once (another thread takes it)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
