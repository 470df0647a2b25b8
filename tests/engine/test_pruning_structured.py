"""Structured L1 filter pruning (docs/spec.md section 4): FLOPs targets, dependency groups, L1 ranking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

from workers.engine.errors import PruningError
from workers.engine.flops import count_flops
from workers.engine.models import build_model
from workers.engine.pruning import prunable_layers, prune_structured, prune_with_plan
from workers.engine.pruning.layers import analyse_structure, build_dependency_graph, example_input
from workers.engine.pruning.plans import uniform_kept

CIFAR = (3, 32, 32)
DIGITS = (1, 8, 8)


def _model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name)


@pytest.fixture(scope="module")
def resnet56() -> nn.Module:
    return _model("resnet56")


@pytest.fixture(scope="module")
def mobilenet() -> nn.Module:
    return _model("mobilenetv2_cifar")


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _trains(model: nn.Module, input_shape: tuple[int, int, int]) -> None:
    """One SGD step on a batch of 2 changes the weights and leaves them finite."""
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.randn(2, *input_shape)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    optimiser.step()
    after = list(model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(torch.isfinite(p).all() for p in after)


def _check_common(original: nn.Module, result, input_shape, method: str, ratio: float) -> None:
    pruned = result.model
    assert pruned is not original
    assert pruned(torch.randn(2, *input_shape)).shape == (2, 10)
    assert result.flops == count_flops(pruned, input_shape)
    assert result.base_flops == count_flops(original, input_shape)
    assert result.flops_ratio == pytest.approx(result.flops / result.base_flops)
    assert result.params == sum(p.numel() for p in pruned.parameters()) < result.base_params
    # First conv and classifier untouched (shape and values).
    assert torch.equal(pruned.conv1.weight, original.conv1.weight)
    assert torch.equal(pruned.fc.weight, original.fc.weight)
    modules = dict(pruned.named_modules())
    for name, kept in result.kept_channels.items():
        assert modules[name].out_channels == kept >= 1
        assert result.kept_fractions[name] == pytest.approx(
            kept / dict(original.named_modules())[name].out_channels
        )
    if method == "nonuniform":
        assert abs(result.flops_ratio - ratio) <= 0.01
        assert len({round(f, 6) for f in result.kept_fractions.values()}) > 2
        assert result.uniform_fraction is None
    else:
        # Uniform steps are coarse; the figure reported is the achieved one and it is near.
        assert abs(result.flops_ratio - ratio) <= 0.02
        original_widths = {n: dict(original.named_modules())[n].out_channels for n in result.kept_channels}
        assert result.kept_channels == uniform_kept(original_widths, result.uniform_fraction)


@pytest.mark.parametrize("method", ["uniform", "nonuniform"])
@pytest.mark.parametrize("ratio", [0.6, 0.2])
def test_resnet56(resnet56: nn.Module, method: str, ratio: float) -> None:
    before = _state_copy(resnet56)
    result = prune_structured(resnet56, CIFAR, method=method, flops_ratio=ratio)
    for key, value in resnet56.state_dict().items():
        assert torch.equal(value, before[key]), f"input model changed at {key}"
    _check_common(resnet56, result, CIFAR, method, ratio)
    pruned = result.model
    assert len(result.kept_channels) == 27
    for stage, width in (("layer1", 16), ("layer2", 32), ("layer3", 64)):
        for block in getattr(pruned, stage):
            # Residual widths: the block's output and its input are what the residual adds tie.
            assert block.conv2.out_channels == block.bn2.num_features == width
            assert block.conv2.in_channels == block.conv1.out_channels == block.bn1.num_features
    assert pruned.fc.in_features == 64
    _trains(pruned, CIFAR)


def test_uniform_is_the_closest_uniform_plan(resnet56: nn.Module) -> None:
    result = prune_structured(resnet56, CIFAR, method="uniform", flops_ratio=0.6)
    structure = analyse_structure(resnet56, CIFAR)
    # Brute force over a fine grid of fractions, independent of the planner's own enumeration.
    gaps = [
        abs(structure.flops(uniform_kept(structure.channels, p)) / structure.base_flops - 0.6)
        for p in np.linspace(0.0, 0.999, 4000)
    ]
    assert abs(result.flops_ratio - 0.6) == pytest.approx(min(gaps), abs=1e-12)


@pytest.mark.parametrize("method", ["uniform", "nonuniform"])
@pytest.mark.parametrize("ratio", [0.6, 0.4])
def test_mobilenetv2_cifar(mobilenet: nn.Module, method: str, ratio: float) -> None:
    result = prune_structured(mobilenet, CIFAR, method=method, flops_ratio=ratio)
    _check_common(mobilenet, result, CIFAR, method, ratio)
    pruned = result.model
    assert len(result.kept_channels) == 17
    for block, original in zip(pruned.layers, mobilenet.layers, strict=True):
        hidden = block.conv1.out_channels
        assert block.conv1.in_channels == original.conv1.in_channels
        assert block.conv3.out_channels == original.conv3.out_channels
        # The depthwise conv and both BNs follow the expansion conv's kept channels.
        assert block.conv2.in_channels == block.conv2.out_channels == block.conv2.groups == hidden
        assert block.bn1.num_features == block.bn2.num_features == block.conv3.in_channels == hidden
    assert torch.equal(pruned.conv2.weight, mobilenet.conv2.weight)
    _trains(pruned, CIFAR)


def test_nonuniform_follows_one_global_l1_ranking(resnet56: nn.Module) -> None:
    result = prune_structured(resnet56, CIFAR, method="nonuniform", flops_ratio=0.5)
    original = dict(resnet56.named_modules())
    pruned = dict(result.model.named_modules())
    removed_max, kept_min = -math.inf, math.inf
    for name, kept in result.kept_channels.items():
        weight = original[name].weight.detach()
        norms = weight.abs().flatten(1).sum(1)
        order = torch.argsort(norms, descending=True, stable=True)
        survivors = torch.sort(order[:kept]).values
        # The surviving filters are the layer's highest-L1 ones, in their original order.
        assert torch.equal(pruned[name].weight, weight[survivors])
        if kept < len(norms):
            removed_max = max(removed_max, norms[order[kept:]].max().item())
        if kept > 1:  # each layer's top filter is protected, so it says nothing about the ranking
            kept_min = min(kept_min, norms[order[1:kept]].min().item())
    assert removed_max <= kept_min


def _digits_with_known_norms() -> nn.Module:
    """digits_cnn whose conv2 filter i has L1 norm 1000 * (i + 1) and conv3 filter j has j + 1."""
    model = _model("digits_cnn")
    with torch.no_grad():
        conv2, conv3 = model.conv2.weight, model.conv3.weight
        order2, order3 = torch.randperm(conv2.shape[0]), torch.randperm(conv3.shape[0])
        for rank, i in enumerate(order2.tolist()):
            conv2[i] = 1000.0 * (rank + 1) / conv2[i].numel()
        for rank, j in enumerate(order3.tolist()):
            conv3[j] = -(rank + 1) / conv3[j].numel()  # negative: L1 uses |w|
    model.order2, model.order3 = order2, order3  # ranks, low to high
    return model


def test_plan_keeps_the_highest_l1_filters_and_their_dependents() -> None:
    model = _digits_with_known_norms()
    result = prune_with_plan(model, DIGITS, {"conv2": 0.5})
    survivors = torch.sort(model.order2[32:]).values
    pruned = result.model
    assert result.kept_channels == {"conv2": 32, "conv3": 64}
    assert torch.equal(pruned.conv2.weight, model.conv2.weight[survivors])
    assert torch.equal(pruned.bn2.weight, model.bn2.weight[survivors])
    assert torch.equal(pruned.bn2.running_mean, model.bn2.running_mean[survivors])
    assert torch.equal(pruned.conv3.weight, model.conv3.weight[:, survivors])
    assert torch.equal(pruned.conv1.weight, model.conv1.weight)


def test_nonuniform_removes_the_globally_smallest_filters_first() -> None:
    model = _digits_with_known_norms()
    result = prune_structured(model, DIGITS, method="nonuniform", flops_ratio=0.8)
    # Every conv3 filter is smaller than every conv2 filter, and conv3 alone can give 20 %.
    assert result.kept_channels["conv2"] == 64
    kept = result.kept_channels["conv3"]
    assert kept < 64
    survivors = torch.sort(model.order3[64 - kept :]).values
    assert torch.equal(result.model.conv3.weight, model.conv3.weight[survivors])
    assert abs(result.flops_ratio - 0.8) <= 0.01


def test_filter_norm_matches_torch_pruning_magnitude_importance() -> None:
    model = _model("resnet20")
    structure = analyse_structure(model, CIFAR)
    graph = build_dependency_graph(model, example_input(model, CIFAR))
    importance = tp.importance.MagnitudeImportance(p=1, group_reduction="first", normalizer=None)
    conv = model.layer2[1].conv1
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, list(range(conv.out_channels)))
    assert torch.allclose(importance(group).float(), structure.norms["layer2.1.conv1"], rtol=1e-5)


def test_prunable_layers() -> None:
    resnet = _model("resnet56")
    layers = prunable_layers(resnet, CIFAR)
    assert [layer.name for layer in layers] == [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(9)]
    assert [layer.out_channels for layer in layers[::9]] == [16, 32, 64]
    # layer1.0.conv1: 2 x (32 x 32 outputs) x 16 filters x (16 x 3 x 3) MACs.
    assert layers[0].flops_share == pytest.approx(2 * 32 * 32 * 16 * 16 * 9 / 250_971_392)
    assert [layer.name for layer in prunable_layers(_model("digits_cnn"), DIGITS)] == ["conv2", "conv3"]
    mobilenet_names = [layer.name for layer in prunable_layers(_model("mobilenetv2_cifar"))]
    assert mobilenet_names == [f"layers.{i}.conv1" for i in range(17)]
    resnet50_names = {layer.name for layer in prunable_layers(_model("resnet50"), (3, 32, 32))}
    assert {"layer1.0.conv1", "layer1.0.conv2", "layer4.2.conv2"} <= resnet50_names
    assert not any(n.endswith(("conv3", "downsample.0")) or n == "conv1" for n in resnet50_names)
    # Plain CNN: every conv but the stem, and the model's training flag survives the tracing.
    alexnet = _model("alexnet").train()
    assert [layer.name for layer in prunable_layers(alexnet, (3, 64, 64))] == [
        "features.3",
        "features.6",
        "features.8",
        "features.10",
    ]
    assert all(m.training for m in alexnet.modules())


def test_digits_cnn_prunes_both_ways() -> None:
    model = _model("digits_cnn")
    for method in ("uniform", "nonuniform"):
        result = prune_structured(model, DIGITS, method=method, flops_ratio=0.5)
        assert abs(result.flops_ratio - 0.5) <= 0.01
        assert result.model(torch.randn(2, *DIGITS)).shape == (2, 10)
        assert result.model.conv1.out_channels == 32 and result.model.fc.out_features == 10
        assert result.model.fc.in_features == result.kept_channels["conv3"]
        _trains(result.model, DIGITS)


def test_ratio_one_prunes_nothing() -> None:
    model = _model("digits_cnn")
    result = prune_structured(model, DIGITS, method="nonuniform", flops_ratio=1.0)
    assert result.flops == result.base_flops and result.kept_fractions == {"conv2": 1.0, "conv3": 1.0}


@pytest.mark.parametrize(
    ("plan", "key"),
    [
        ({"conv1": 0.5}, "conv1"),
        ({"fc": 0.5}, "fc"),
        ({"nope": 0.1}, "nope"),
        ({"conv2": 1.0}, "conv2"),
        ({"conv3": -0.1}, "conv3"),
        ({"conv3": float("nan")}, "conv3"),
    ],
)
def test_plan_errors_name_the_key(plan: dict[str, float], key: str) -> None:
    with pytest.raises(PruningError, match=rf"plan\['{key}'\]"):
        prune_with_plan(_model("digits_cnn"), DIGITS, plan)


def test_unreachable_and_invalid_targets_raise() -> None:
    model = _model("digits_cnn")
    for method in ("uniform", "nonuniform"):
        with pytest.raises(PruningError, match="unreachable"):
            prune_structured(model, DIGITS, method=method, flops_ratio=0.001)
    for ratio in (0.0, 1.5, -0.2):
        with pytest.raises(PruningError, match="flops_ratio"):
            prune_structured(model, DIGITS, method="uniform", flops_ratio=ratio)
    with pytest.raises(PruningError, match="method"):
        prune_structured(model, DIGITS, method="global", flops_ratio=0.5)


def test_shufflenet_is_refused_with_a_clear_error() -> None:
    with pytest.raises(PruningError, match="ShuffleNetV2"):
        prune_structured(_model("shufflenet_v2_x1_0"), (3, 32, 32), method="uniform", flops_ratio=0.5)


def test_training_mode_is_restored() -> None:
    model = _model("digits_cnn").train()
    result = prune_structured(model, DIGITS, method="uniform", flops_ratio=0.5)
    assert all(m.training for m in model.modules())
    assert all(m.training for m in result.model.modules())
