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


@register_dataset("digits32")
def load_digits32(path: Path | None, split: str) -> Dataset:
    """The digits upsampled (bilinear) to 3x32x32 and scaled to [-1, 1]: an offline,
    CIFAR-shaped stand-in for the recipes and benchmarks that need one (1,437 / 360)."""
    import torch.nn.functional as F

    refuse_path("digits32", path)
    digits = load_digits(None, split)
    x = F.interpolate(digits.x, size=(32, 32), mode="bilinear", align_corners=False)
    x = ((x.repeat(1, 3, 1, 1) - 0.5) / 0.5).contiguous()
    return Dataset("digits32", x, digits.y, digits.classes,
                   ["digits upsampled to 3x32x32: an offline stand-in for CIFAR"])  # fmt: skip
