"""Atomic file output: no reader sees a half-written file, and nothing is overwritten unasked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import SparsebenchError


def check_writable(path: str | Path, force: bool = False) -> Path:
    """Refuse an existing file unless `force`, and a missing parent directory."""
    path = Path(path)
    if path.is_dir():
        raise SparsebenchError(f"{path} is a directory, not a file")
    if path.exists() and not force:
        raise SparsebenchError(f"{path} already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise SparsebenchError(f"directory {path.parent} does not exist")
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], force: bool = False) -> Path:
    """Call `write` on a temporary file beside `path`, then rename it into place."""
    path = check_writable(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give a normal file's mode
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str, force: bool = False) -> Path:
    """Atomically write UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), force=force)
