"""scikit-learn's bundled 8x8 handwritten digits (1,797 images), split 80/20 stratified."""

from pathlib import Path

from ._checks import build_dataset, refuse_path
from .base import Dataset, register_dataset


@register_dataset("digits")
def load_digits(path: Path | None, split: str) -> Dataset:
    """x (N, 1, 8, 8) in [0, 1]; a fixed stratified split (20% test, random_state=0)."""
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    refuse_path("digits", path)
    bunch = sk_load_digits()
    x = (bunch.images / 16.0).reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(
        x, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target
    )
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    return build_dataset("digits", x, y, [str(c) for c in bunch.target_names], "digits")
