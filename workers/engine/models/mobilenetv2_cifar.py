"""MobileNetV2 for 32x32 inputs, as used by the pruning-landscape study (Chen 2018, kuangliu-style).

Exact structure (2,237,770 parameters and 595,043,328 FLOPs at 3x32x32 with 10 classes):

- stem: conv 3x3, 3->32, stride 1, BN, ReLU6 (`conv1`, `bn1`)
- 17 inverted residual blocks in `layers`, (in -> out, expansion t, stride):
  32->16 t1; 16->24; 24->24; 24->32; 32->32 x2; 32->64 s2; 64->64 x3; 64->96; 96->96 x2;
  96->160 s2; 160->160 x2; 160->320 (t6, stride 1 unless noted), so the feature map goes
  32 -> 16 -> 8.
- each block: 1x1 expansion conv in->t*in (present also at t=1) + BN + ReLU6, 3x3 depthwise conv
  (stride s) + BN + ReLU6, 1x1 projection conv t*in->out + BN (linear bottleneck, no activation).
  Identity shortcut only when stride = 1 and in = out; other blocks have no shortcut at all.
  (kuangliu's code adds a 1x1 conv shortcut to stride-1 blocks with in != out; that variant has
  2,297,754 parameters, so the study's figure is the identity-only one built here.)
- head: conv 1x1 320->1280 + BN + ReLU6 (`conv2`, `bn2`), global average pool, linear `fc`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# (in_channels, out_channels, expansion, stride) of every block, in order.
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (32, 16, 1, 1),
    (16, 24, 6, 1),
    (24, 24, 6, 1),
    (24, 32, 6, 1),
    (32, 32, 6, 1),
    (32, 32, 6, 1),
    (32, 64, 6, 2),
    (64, 64, 6, 1),
    (64, 64, 6, 1),
    (64, 64, 6, 1),
    (64, 96, 6, 1),
    (96, 96, 6, 1),
    (96, 96, 6, 1),
    (96, 160, 6, 2),
    (160, 160, 6, 1),
    (160, 160, 6, 1),
    (160, 320, 6, 1),
)


class InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU6(inplace=True)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + x if self.use_residual else out


class MobileNetV2Cifar(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.layers = nn.Sequential(*(InvertedResidual(*block) for block in BLOCKS))
        self.conv2 = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.relu = nn.ReLU6(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = self.relu(self.bn2(self.conv2(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def mobilenetv2_cifar(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2Cifar:
    return MobileNetV2Cifar(num_classes=num_classes, in_channels=in_channels)
