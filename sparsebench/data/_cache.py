"""An on-disk cache of generated arrays under $SPARSEBENCH_CACHE or ~/.cache/sparsebench."""

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..io import atomic_write


def cache_dir() -> Path:
    """Where sparsebench caches generated data: $SPARSEBENCH_CACHE, else ~/.cache/sparsebench."""
    root = os.environ.get("SPARSEBENCH_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "sparsebench"


Arrays = dict[str, np.ndarray]


def cached_arrays(filename: str, keys: tuple[str, ...], build: Callable[[], Arrays]) -> Arrays:
    """Arrays `keys` from `cache_dir()/filename`, or `build()` them and cache them as an .npz.

    A cache file that is unreadable or lacks a key is rebuilt; an unwritable cache directory
    only costs the caching.
    """
    path = cache_dir() / filename
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                if set(keys) <= set(npz.files):
                    return {key: npz[key] for key in keys}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            pass
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, **arrays), force=True)
    except OSError:
        pass
    return arrays
