"""The torchvision architectures of the compression reports, built without weights.

Nothing is downloaded: every builder gets `weights=None`. A single-channel input (FashionMNIST)
replaces the first conv by one with the same geometry and `in_channels` inputs; the rest of the
architecture is torchvision's.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision import models as tv

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": tv.resnet18,
    "resnet50": tv.resnet50,
    "mobilenet_v2": tv.mobilenet_v2,
    "shufflenet_v2_x1_0": tv.shufflenet_v2_x1_0,
    "alexnet": tv.alexnet,
}


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the stem conv for one reading `in_channels` channels (same kernel, stride, padding)."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                stem = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    child.kernel_size,
                    stride=child.stride,
                    padding=child.padding,
                    bias=child.bias is not None,
                )
                setattr(parent, child_name, stem)
                return


def build_torchvision(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    model = BUILDERS[name](weights=None, num_classes=num_classes)
    if in_channels != 3:
        _replace_first_conv(model, in_channels)
    return model
