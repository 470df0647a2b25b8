"""A small CNN for scikit-learn's 8x8 digits: the embedded demo and the fast tests.

stem conv 3x3 1->32 (never pruned) -> conv 3x3 32->64 -> max pool 2 (8x8 -> 4x4) -> conv 3x3
64->64 -> global average pool -> linear 64->10. Every conv has BN + ReLU. `conv2` and `conv3` are
the hidden layers whose filters structured pruning removes; `conv1` and `fc` stay whole.
About 56 k parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DigitsCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = self.relu(self.bn3(self.conv3(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def digits_cnn(num_classes: int = 10, in_channels: int = 1) -> DigitsCNN:
    return DigitsCNN(num_classes=num_classes, in_channels=in_channels)
