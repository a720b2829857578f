"""Fully connected classifiers: the MNIST-1D MLP (and the layer stack LeNet-300-100 reuses)."""

from collections import OrderedDict

from torch import nn

from .base import register_model


class MLP(nn.Sequential):
    """Flatten, then Linear+ReLU hidden layers named fc1, fc2, ... and a Linear head."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int):
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        sizes = [in_features, *hidden]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
            layers += [(f"fc{i}", nn.Linear(fan_in, fan_out)), (f"relu{i}", nn.ReLU())]
        layers.append((f"fc{len(sizes)}", nn.Linear(sizes[-1], num_classes)))
        super().__init__(OrderedDict(layers))


@register_model(
    "mnist1d_mlp",
    input_shape=(1, 40),
    dataset="mnist1d",
    description="40-100-100-10 ReLU MLP for MNIST-1D",
)
def mnist1d_mlp(num_classes: int = 10, hidden: tuple[int, ...] = (100, 100)) -> nn.Module:
    """A ReLU MLP over the 40-sample MNIST-1D signal."""
    return MLP(40, tuple(hidden), num_classes)
