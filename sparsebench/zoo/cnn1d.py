"""A small 1-D convolutional network for MNIST-1D."""

import torch
from torch import nn

from .base import register_model


class CNN1d(nn.Module):
    """`depth` Conv1d(k=3, pad=1)+ReLU layers of `channels` channels, then a Linear head."""

    def __init__(self, length: int, channels: int, depth: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for _ in range(depth):
            layers += [nn.Conv1d(in_channels, channels, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


@register_model(
    "mnist1d_cnn",
    input_shape=(1, 1, 40),
    dataset="mnist1d",
    description="3-layer 1-D CNN (32 channels) for MNIST-1D",
)
def mnist1d_cnn(num_classes: int = 10, channels: int = 32, depth: int = 3) -> nn.Module:
    """A 1-D CNN over the MNIST-1D signal as one channel of 40 samples."""
    return CNN1d(40, channels, depth, num_classes)
