"""Offline datasets and user-data loaders behind one call: `load_dataset(spec, split, image=)`.

A spec is a registered name (`mnist1d`, `digits`, `mnist`), `name:PATH` for loaders that read a
local directory or file (`cifar10:DIR`, `cifar100:DIR`, `imagefolder:DIR`, `tensors:FILE`), or a
bare path whose kind is detected (a `.pt`/`.npz` file, a CIFAR directory, an ImageFolder tree).
`image` (an `ImageOptions`: resize, center crop, mean/std) applies to image folders only.
Unlabelled inputs for latency-only runs come from `synthetic.synthetic_inputs`.
"""

from pathlib import Path

from ..errors import SparsebenchError
from .base import DATASETS, SPLITS, Dataset, LazySamples, Loader, list_datasets, register_dataset
from .imagefolder import ImageOptions

__all__ = [
    "DATASETS",
    "SPLITS",
    "Dataset",
    "ImageOptions",
    "LazySamples",
    "Loader",
    "detect_kind",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "resolve_spec",
]


def load_dataset(spec: str, split: str = "test", image: ImageOptions | None = None) -> Dataset:
    """Load `spec`: a registered name, `name:PATH`, or a bare path whose kind is detected.

    `image` transforms image-folder samples; options that change nothing (all None) are
    accepted for any dataset, any others only for a loader that takes image options.
    """
    if split not in SPLITS:
        raise SparsebenchError(f"split must be one of {', '.join(SPLITS)}, not '{split}'")
    name, path = resolve_spec(spec)
    loader = DATASETS.get(name)
    if getattr(loader, "takes_image_options", False):
        return loader(path, split, image=image)
    if image is not None and not image.is_identity:
        raise SparsebenchError(
            "--resize/--center-crop/--mean/--std/--normalize apply to imagefolder datasets "
            f"only, not '{name}'"
        )
    return loader(path, split)


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
