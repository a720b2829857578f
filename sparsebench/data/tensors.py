"""Labelled samples from a .pt/.pth file (torch.load, weights_only) or an .npz file."""

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import SparsebenchError
from ..metadata import check_tensor, check_zip_members
from ._checks import build_dataset, require_path
from .base import Dataset, register_dataset

TENSOR_SUFFIXES = (".pt", ".pth", ".npz")
KEY_PAIRS = (("x", "y"), ("inputs", "targets"), ("data", "labels"))
MAX_CLASSES = 100_000


def read_arrays(path: Path) -> dict:
    """The file's top-level dict (a saved (x, y) pair becomes {"x": ..., "y": ...})."""
    is_npz = path.suffix.lower() == ".npz"
    if is_npz and not zipfile.is_zipfile(path):
        raise SparsebenchError(f"cannot read {path}: not an .npz (zip) archive")
    try:
        if is_npz:
            with np.load(path, allow_pickle=False) as npz:
                check_zip_members(npz.zip, path)
                wanted = {key for pair in KEY_PAIRS for key in pair} | {"classes"}
                return {key: npz[key] for key in npz.files if key in wanted}  # only these
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                check_zip_members(archive, path)
        with torch.sparse.check_sparse_tensor_invariants():  # crafted indices: an error
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged files and weights_only refusals fail in many ways
        raise SparsebenchError(f"cannot read {path}: {_reason(exc)}") from None
    if isinstance(obj, tuple | list) and len(obj) == 2:
        return {"x": obj[0], "y": obj[1]}
    if isinstance(obj, dict):
        return obj
    kind = type(obj).__name__
    raise SparsebenchError(f"{path} holds a {kind}; expected a dict or an (x, y) pair")


def _samples(value, path: Path, what: str):
    """A tensor or array of samples or labels, checked like any tensor read from a file."""
    if isinstance(value, torch.Tensor):
        return check_tensor(value, f"{path}: {what}")
    if isinstance(value, np.ndarray):
        return value
    raise SparsebenchError(
        f"{path}: {what} must be a tensor or an array, not {type(value).__name__}"
    )


def _classes(value, path: Path) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        value = value.reshape(-1).tolist()
    ok = isinstance(value, list | tuple) and len(value) <= MAX_CLASSES
    if not ok or not all(isinstance(c, str | int) and len(str(c)) <= 1000 for c in value):
        raise SparsebenchError(f"{path}: classes must be a list of at most {MAX_CLASSES:,} names")
    return [str(c) for c in value]


def _reason(exc: Exception) -> str:
    """One short line out of torch.load's and np.load's long error messages."""
    text = str(exc)
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return f"it holds a pickled {refused.group(1)} (only tensors and plain containers load)"
    if isinstance(exc, pickle.UnpicklingError):
        return "not a file written by torch.save"
    first = text.strip().split(". ")[0].splitlines()[0] if text.strip() else ""
    return first or type(exc).__name__


def pick_samples(arrays: dict, path: Path) -> tuple[object, object]:
    """The (samples, labels) under the first key pair present: x/y, inputs/targets, data/labels."""
    for x_key, y_key in KEY_PAIRS:
        if x_key in arrays and y_key in arrays:
            return arrays[x_key], arrays[y_key]
    pairs = ", ".join(f"{a}/{b}" for a, b in KEY_PAIRS)
    found = ", ".join(map(str, arrays)) or "nothing"
    raise SparsebenchError(f"{path} needs samples and labels under {pairs}; found {found}")


@register_dataset("tensors")
def load_tensors(path: Path | None, split: str) -> Dataset:
    """Samples and labels from one file (the file is the split); optional "classes" names."""
    path = require_path("tensors", path, "file", "/path/to/data.pt")
    if path.suffix.lower() not in TENSOR_SUFFIXES:
        raise SparsebenchError(f"tensors reads {', '.join(TENSOR_SUFFIXES)} files, not {path}")
    arrays = read_arrays(path)
    x, y = pick_samples(arrays, path)
    x, y = _samples(x, path, "samples"), _samples(y, path, "labels")
    classes = _classes(arrays.get("classes"), path)
    try:
        return build_dataset("tensors", x, y, classes, str(path))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise SparsebenchError(f"{path}: samples and labels must be numeric ({exc})") from None
