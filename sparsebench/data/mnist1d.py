"""MNIST-1D (Greydanus, 2020): generated offline with the `mnist1d` package, then cached."""

import random
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ._cache import cached_arrays
from ._checks import build_dataset, refuse_path
from .base import Dataset, register_dataset


def _generate() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global `random` and NumPy generators; put them back afterwards.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {
        "x_train": data["x"].astype(np.float32),
        "y_train": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32),
        "y_test": data["y_test"].astype(np.int64),
    }


@register_dataset("mnist1d")
def load_mnist1d(path: Path | None, split: str) -> Dataset:
    """The default MNIST-1D: x (N, 40), 4000 train / 1000 test samples, 10 classes."""
    refuse_path("mnist1d", path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    arrays = cached_arrays(f"mnist1d-{version('mnist1d')}.npz", keys, _generate)
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    return build_dataset("mnist1d", x, y, [str(i) for i in range(10)], "mnist1d")
