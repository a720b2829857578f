"""Checks shared by the loaders: path arguments and the shape of what a loader returns."""

from pathlib import Path

import numpy as np
import torch

from ..errors import SparsebenchError
from .base import Dataset


def require_path(name: str, path: Path | None, kind: str, example: str) -> Path:
    """The existing `path` a loader needs; `kind` and `example` describe it in the error."""
    if path is None:
        raise SparsebenchError(f"{name} needs a local {kind}: --data {name}:{example}")
    return existing(path)


def existing(path: str | Path) -> Path:
    """`path` as a Path, or a SparsebenchError when nothing is there."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SparsebenchError(f"no such file or directory: {path}")
    return path


def refuse_path(name: str, path: Path | None) -> None:
    """Loaders of bundled or generated data take no path; say so instead of ignoring one."""
    if path is not None:
        raise SparsebenchError(f"dataset '{name}' is built in and takes no path (got {path})")


def build_dataset(name: str, x, y, classes: list[str] | None, source: str) -> Dataset:
    """A validated Dataset: float32 `x` with N samples, int64 labels (N,), class names.

    `source` names where the data came from in error messages. Missing classes become
    "0".."max(y)".
    """
    x, y = (v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)) for v in (x, y))
    if x.layout != torch.strided or y.layout != torch.strided:
        raise SparsebenchError(f"{source}: samples and labels must be dense tensors")
    if x.device.type != "cpu" or y.device.type != "cpu":
        raise SparsebenchError(f"{source}: samples and labels must be CPU tensors")
    if x.dim() < 1 or len(x) == 0:
        raise SparsebenchError(f"{source}: no samples")
    if not (x.is_floating_point() or x.dtype in _INT_DTYPES):
        raise SparsebenchError(f"{source}: samples must be numbers, not {x.dtype}")
    if y.dtype not in _INT_DTYPES or y.dim() != 1:
        raise SparsebenchError(
            f"{source}: labels must be a 1-D integer array, got {y.dtype} of shape {tuple(y.shape)}"
        )
    y = y.to(torch.int64)
    if len(x) != len(y):
        raise SparsebenchError(f"{source}: {len(x)} samples but {len(y)} labels")
    if int(y.min()) < 0:
        raise SparsebenchError(f"{source}: labels must be >= 0, found {int(y.min())}")
    top = int(y.max())
    classes = [str(c) for c in classes] if classes is not None else [str(i) for i in range(top + 1)]
    if top >= len(classes):
        raise SparsebenchError(f"{source}: label {top} but only {len(classes)} class names")
    return Dataset(name, x.to(torch.float32).contiguous(), y, classes)


_INT_DTYPES = (
    *(torch.int8, torch.int16, torch.int32, torch.int64),
    *(torch.uint8, torch.uint16, torch.uint32, torch.uint64),
)
