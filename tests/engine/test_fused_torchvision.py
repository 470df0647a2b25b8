"""Fused groups of 4 torchvision nets match their solo runs (CPU, float64, 1e-9 relative per
tensor, tests/engine/fused_cases.py; bit for bit on the previous test machine, within 1e-10 of
tensors of size 1-10 on the Zen 4 one): ResNet-18 (downsample shortcuts, in-place residual add, max pool),
MobileNetV2 (depthwise convs, dropout before the classifier), ShuffleNetV2 (chunk, cat and the
channel shuffle's view/transpose on the channel dimension) and AlexNet (two dropouts, flatten,
a stack of linear layers) at small inputs, one full batch per epoch.

These nets run in NCHW (`channels_last=False` on both sides). In NHWC a few float64 CPU
kernels round differently on the group's (N, B*C, ...) tensors than on one model's (ResNet-18's
stem backward; the 1x1 feature maps of MobileNetV2 and ShuffleNetV2 at these inputs, whose NCHW
and NHWC strides coincide so kernels pick layouts by other rules), and at 16x16 inputs (1x1
feature maps, BatchNorm over 8 values) these nets amplify a one-ulp difference to O(1) within a
few steps, solo run against solo run as much as fused against solo. The CIFAR nets are checked
in NHWC, the default (test_fused_equivalence.py)."""

from __future__ import annotations

import functools

import pytest
from torch import nn

from tests.engine.fused_cases import FLOAT64, assert_matches_solo, group_recipes, tiny_images
from workers.engine.fused import train_group
from workers.engine.models import build_model


def narrow_alexnet(shape: tuple[int, int, int]) -> nn.Module:
    # AlexNet's classifier is 9216 -> 4096 -> 4096: four float64 copies with gradients and momentum
    # took 10 GB and two minutes here. Same layers, same dropouts, 64 units wide (checked full size
    # by hand: the same match).
    model = build_model("alexnet", num_classes=10, input_shape=shape)
    model.classifier[1] = nn.Linear(256 * 6 * 6, 64)
    model.classifier[4] = nn.Linear(64, 64)
    model.classifier[6] = nn.Linear(64, 10)
    return model


CASES = {
    "resnet18": (
        (3, 16, 16),
        functools.partial(build_model, "resnet18", num_classes=10, input_shape=(3, 16, 16)),
    ),
    "mobilenet_v2": (
        (3, 16, 16),
        functools.partial(build_model, "mobilenet_v2", num_classes=10, input_shape=(3, 16, 16)),
    ),
    "shufflenet_v2_x1_0": (
        (3, 16, 16),
        functools.partial(build_model, "shufflenet_v2_x1_0", num_classes=10, input_shape=(3, 16, 16)),
    ),
    "alexnet": ((3, 63, 63), functools.partial(narrow_alexnet, (3, 63, 63))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_group_of_four_matches_solo_runs(case):
    shape, make = CASES[case]
    data = tiny_images(shape, n_train=8, n_val=8)
    recipes = group_recipes(channels_last=False)
    models = [make() for _ in recipes]
    results = train_group(models, data, recipes, dtype=FLOAT64)
    assert len({r.history[-1].train_loss for r in results}) == 4
    assert_matches_solo(make, data, recipes, models, results)
