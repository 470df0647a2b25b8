"""The one FLOP counter: docs/spec.md section 3 golden figures and its convention."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from workers.engine.flops import FLOPS_CONVENTION, count_flops
from workers.engine.models import build_model


@pytest.mark.parametrize(
    ("name", "input_shape", "flops"),
    [
        ("resnet56", (3, 32, 32), 250_971_392),
        ("mobilenetv2_cifar", (3, 32, 32), 595_043_328),
        ("resnet18", (3, 224, 224), 3_628_146_688),
        ("resnet50", (3, 224, 224), 8_178_368_512),
    ],
)
def test_golden_flops(name, input_shape, flops):
    assert count_flops(build_model(name), input_shape) == flops


def test_counts_two_per_mac_of_conv_and_linear_only():
    # conv 3->8 3x3 on 10x10 (padding 1): 8*3*9*100 MACs; linear 8->4: 32 MACs.
    # BN, ReLU, pooling and the residual add contribute nothing.
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            y = y + y * 2.0
            y = torch.softmax(y, dim=1)
            return self.fc(self.pool(y).flatten(1))

    assert count_flops(Tiny(), (3, 10, 10)) == 2 * (8 * 3 * 9 * 100 + 8 * 4)


def test_flops_scale_with_input_size_and_restore_training_mode():
    model = build_model("resnet20")
    model.train()
    model.layer1.eval()  # a deliberately frozen part must stay frozen
    small = count_flops(model, (3, 16, 16))
    assert count_flops(model, (3, 32, 32)) == 4 * small - 3 * 2 * 64 * 10  # the classifier does not scale
    assert model.training and model.layer2.training and not model.layer1.training
    # eval mode and no_grad: BN running statistics untouched
    assert torch.all(model.bn1.running_mean == 0)


def test_every_flops_figure_a_user_reads_states_the_convention(capsys):
    """The command line prints the convention next to the FLOPs it counts, and its JSON carries
    it; the API's /compare serves the same words (tests/backend/test_api_studies.py)."""
    from backend.cli.main import main

    assert main(["measure", "--model", "resnet20"]) == 0
    flops_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("FLOPs"))
    assert f"{count_flops(build_model('resnet20'), (3, 32, 32)):,}" in flops_line
    assert FLOPS_CONVENTION in flops_line
    assert main(["measure", "--model", "resnet20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["flops_convention"] == FLOPS_CONVENTION
