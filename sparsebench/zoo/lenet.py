"""LeNet-300-100, the fully connected MNIST network of the lottery-ticket experiments."""

from torch import nn

from .base import register_model
from .mlp import MLP


@register_model(
    "lenet_300_100",
    input_shape=(1, 784),
    dataset="mnist",
    description="LeNet-300-100: 784-300-100-10 ReLU MLP (266,610 parameters)",
)
def lenet_300_100(num_classes: int = 10) -> nn.Module:
    """LeNet-300-100 over flattened 28x28 images (layers fc1, fc2, fc3)."""
    return MLP(784, (300, 100), num_classes)
