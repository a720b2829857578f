"""CIFAR ResNets of He et al. (depth 6n+2: 3 stages of n BasicBlocks with 16/32/64 channels).

Shortcuts that change shape use a 1x1 conv + BN (option B). Module names follow
chenyaofo/pytorch-cifar-models, so its state_dicts load as they are.
"""

import torch
from torch import nn

from ..errors import SparsebenchError
from .base import register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with a residual connection."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class CifarResNet(nn.Module):
    """conv-BN-ReLU stem, three stages of BasicBlocks, global average pool, Linear head."""

    def __init__(self, depth: int = 20, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise SparsebenchError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56...), not {depth}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        first = BasicBlock(in_planes, planes, stride)
        return nn.Sequential(first, *(BasicBlock(planes, planes) for _ in range(blocks - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model(
    "resnet20",
    input_shape=(1, 3, 32, 32),
    dataset="cifar10",
    description="CIFAR ResNet-20 (He et al.), 1x1-conv shortcuts",
    depth=20,
)
@register_model(
    "resnet56",
    input_shape=(1, 3, 32, 32),
    dataset="cifar10",
    description="CIFAR ResNet-56 (He et al.), 1x1-conv shortcuts",
    depth=56,
)
def cifar_resnet(depth: int = 20, num_classes: int = 10) -> nn.Module:
    """A CIFAR ResNet of `depth` = 6n+2 layers for 32x32 RGB images."""
    return CifarResNet(depth, num_classes)
