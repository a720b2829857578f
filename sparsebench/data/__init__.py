"""Offline datasets and user-data loaders behind one call: `load_dataset(spec, split)`.

A spec is a registered name (`mnist1d`, `digits`, `mnist`), `name:PATH` for loaders that read a
local directory or file (`cifar10:DIR`, `cifar100:DIR`, `imagefolder:DIR`, `tensors:FILE`), or a
bare path whose kind is detected (a `.pt`/`.npz` file, a CIFAR directory, an ImageFolder tree).
Unlabelled inputs for latency-only runs come from `synthetic.synthetic_inputs`.
"""

from pathlib import Path

from ..errors import SparsebenchError
from .base import DATASETS, SPLITS, Dataset, Loader, list_datasets, register_dataset

__all__ = [
    "DATASETS",
    "SPLITS",
    "Dataset",
    "Loader",
    "detect_kind",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "resolve_spec",
]


def load_dataset(spec: str, split: str = "test") -> Dataset:
    """Load `spec`: a registered name, `name:PATH`, or a bare path whose kind is detected."""
    if split not in SPLITS:
        raise SparsebenchError(f"split must be one of {', '.join(SPLITS)}, not '{split}'")
    name, path = resolve_spec(spec)
    return DATASETS.get(name)(path, split)


def resolve_spec(spec: str) -> tuple[str, Path | None]:
    """The loader name and path a dataset spec refers to (see the module docstring)."""
    if spec in DATASETS:
        return spec, None
    name, sep, rest = spec.partition(":")
    if sep and name in DATASETS and rest:
        return name, Path(rest).expanduser()
    path = Path(spec).expanduser()
    if path.exists():
        return detect_kind(path), path
    if sep or "/" in spec or "\\" in spec or path.suffix:
        raise SparsebenchError(f"no such file or directory: {spec}")
    raise SparsebenchError(
        f"unknown dataset '{spec}': use one of {', '.join(list_datasets())}, "
        "NAME:PATH, or a path to a .pt/.npz file, a CIFAR directory or an image-folder tree"
    )


def detect_kind(path: Path) -> str:
    """The loader for an existing path: tensors file, CIFAR directory or image folders."""
    if path.is_dir():
        return cifar.detect_cifar(path) or "imagefolder"
    if path.suffix.lower() in tensors.TENSOR_SUFFIXES:
        return "tensors"
    raise SparsebenchError(
        f"cannot tell what kind of dataset {path} is; "
        f"pass a {', '.join(tensors.TENSOR_SUFFIXES)} file or a directory"
    )


from . import cifar, digits, imagefolder, mnist, mnist1d, tensors  # noqa: E402,F401  (registers)
