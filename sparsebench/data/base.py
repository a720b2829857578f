"""The dataset type and registry every loader in this package registers with."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..registry import Registry


@dataclass
class Dataset:
    """Samples `x` (float, first dim N), integer labels `y` (N,), and class names."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.x.shape[0])


# A loader takes (path or None, split) and returns a Dataset; split is "train" or "test".
Loader = Callable[[Path | None, str], Dataset]

DATASETS: Registry[Loader] = Registry("dataset", list_command="sparsebench datasets")

SPLITS = ("train", "test")


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader `(path | None, split) -> Dataset` under `name`."""
    return DATASETS.decorator(name, lambda fn: fn)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching a shell-style wildcard."""
    return DATASETS.names(pattern)
