"""VGG16 with batch norm for 32x32 CIFAR images.

Same module layout (and so state_dict keys) as the widely used CIFAR VGG16-BN of
chenyaofo/pytorch-cifar-models: `features` (conv+BN+ReLU, max pools) then a 3-layer `classifier`.
"""

import torch
from torch import nn

from .base import register_model

VGG16_CFG: tuple[int | str, ...] = (
    *(64, 64, "M", 128, 128, "M"),
    *(256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
)


def make_features(cfg: tuple[int | str, ...], in_channels: int = 3) -> nn.Sequential:
    """Conv2d(k3, pad1)+BatchNorm2d+ReLU per int in `cfg`, MaxPool2d(2) per "M"."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [
                nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1),
                nn.BatchNorm2d(int(v)),
                nn.ReLU(inplace=True),
            ]
            in_channels = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """CIFAR VGG: convolutional `features` down to 1x1x512, then a 512-512-classes MLP."""

    def __init__(self, cfg: tuple[int | str, ...], num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.features = make_features(cfg)
        self.classifier = nn.Sequential(
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


@register_model(
    "vgg16_bn",
    input_shape=(1, 3, 32, 32),
    dataset="cifar10",
    description="VGG16 with batch norm for CIFAR-10 (chenyaofo/pytorch-cifar-models layout)",
)
def vgg16_bn(num_classes: int = 10) -> nn.Module:
    """VGG16-BN for 32x32 RGB images."""
    return VGG(VGG16_CFG, num_classes)


@register_model(
    "vgg16_bn_cifar100",
    input_shape=(1, 3, 32, 32),
    dataset="cifar100",
    description="VGG16 with batch norm for CIFAR-100 (chenyaofo/pytorch-cifar-models layout)",
)
def vgg16_bn_cifar100(num_classes: int = 100) -> nn.Module:
    """VGG16-BN for 32x32 RGB images with a 100-way head."""
    return VGG(VGG16_CFG, num_classes)
