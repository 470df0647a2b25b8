"""Which filters structured pruning may remove, and what removing them costs in FLOPs.

Prunable layers are the convs whose output channels are *hidden* inside a block (docs/spec.md section 4):
CIFAR / torchvision BasicBlock conv1, Bottleneck conv1 and conv2, the 1x1 expansion conv of an
inverted residual (its removal also narrows the depthwise conv and both BNs), the first 1x1 conv
of a ShuffleNetV2 branch2, and for plain CNNs without such blocks every conv but the first.
The first conv, the classifier and every channel a residual add or a concat ties together are
never candidates. Each candidate is checked against torch-pruning's dependency graph: its pruning
group must contain no other (non-depthwise) conv's output channels and no linear layer's outputs.

`ModelStructure` is the traced summary the planners work from: per-layer channel counts, the
L1 norm of every filter, and a FLOPs model (which conv/linear FLOPs scale with which layer's kept
channels) that predicts a pruned model's FLOPs without building it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn
from torchvision.models import mobilenetv2 as tv_mobilenetv2
from torchvision.models import resnet as tv_resnet
from torchvision.models import shufflenetv2 as tv_shufflenetv2

from workers.engine.errors import PruningError
from workers.engine.flops import count_flops
from workers.engine.models import cifar_resnet, mobilenetv2_cifar


@dataclass(frozen=True)
class LayerInfo:
    """A prunable conv: `name` as `named_modules` gives it, its filter count, and its own share of
    the model's FLOPs (this conv's FLOPs / the whole model's, at the traced input size)."""

    name: str
    out_channels: int
    flops_share: float


@dataclass
class ModelStructure:
    """What pruning needs to know about one model at one input size (see module docstring).

    `module_flops` holds the conv/linear FLOPs at batch 1; `out_source[m]` / `in_source[m]` name the
    prunable layer whose kept channels scale module m's output / input channels. FLOPs outside
    conv/linear modules (functional calls) are `fixed_flops`: they do not change with pruning.
    """

    layers: list[LayerInfo]
    channels: dict[str, int]
    norms: dict[str, torch.Tensor]
    base_flops: int
    module_flops: dict[str, int]
    out_source: dict[str, str] = field(default_factory=dict)
    in_source: dict[str, str] = field(default_factory=dict)

    @property
    def fixed_flops(self) -> int:
        return self.base_flops - sum(self.module_flops.values())

    def flops(self, kept: dict[str, int]) -> int:
        """FLOPs of the model with `kept[layer]` filters left in each prunable layer (others whole).

        Exact in integers: a conv's FLOPs are a multiple of its in- and out-channel counts.
        """
        total = self.fixed_flops
        for module, module_flops in self.module_flops.items():
            numerator, denominator = module_flops, 1
            for source in (self.out_source.get(module), self.in_source.get(module)):
                if source is not None:
                    numerator *= kept.get(source, self.channels[source])
                    denominator *= self.channels[source]
            total += numerator // denominator
        return total


def _block_hidden_convs(model: nn.Module) -> list[str] | None:
    """Names of the hidden convs of the residual blocks model holds; None when it has none."""
    names: list[str] = []
    found_block = False
    for prefix, module in model.named_modules():
        if isinstance(module, cifar_resnet.BasicBlock | tv_resnet.BasicBlock):
            found_block = True
            names.append(f"{prefix}.conv1")
        elif isinstance(module, tv_resnet.Bottleneck):
            found_block = True
            names += [f"{prefix}.conv1", f"{prefix}.conv2"]
        elif isinstance(module, mobilenetv2_cifar.InvertedResidual):
            found_block = True
            names.append(f"{prefix}.conv1")
        elif isinstance(module, tv_mobilenetv2.InvertedResidual):
            found_block = True
            # With expansion the block is [expand 1x1, depthwise, project, BN]; at t=1 the
            # depthwise conv comes first and its channels are the block input's: nothing hidden.
            if len(module.conv) == 4:
                names.append(f"{prefix}.conv.0.0")
        elif isinstance(module, tv_shufflenetv2.InvertedResidual):
            found_block = True
            # branch2 = [1x1, BN, ReLU, depthwise, BN, 1x1, BN, ReLU]; the first 1x1's outputs only
            # feed the depthwise conv. branch1 starts with a depthwise conv on the block input.
            names.append(f"{prefix}.branch2.0")
    return names if found_block else None


def _candidate_convs(model: nn.Module) -> list[str]:
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise PruningError(f"{type(model).__name__} has no conv layers to prune")
    hidden = _block_hidden_convs(model)
    if hidden is not None:
        return hidden
    # A plain CNN: every conv but the stem (the first conv in definition order), never depthwise.
    modules = dict(model.named_modules())
    return [name for name in convs[1:] if not _is_depthwise(modules[name])]


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.out_channels


def _module_flops(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Conv/linear FLOPs per module at batch 1 (2 per MAC, the FLOPS_CONVENTION)."""
    flops: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs = output.numel() * (module.in_channels // module.groups) * kh * kw
            else:
                macs = output.numel() * module.in_features
            flops[name] = flops.get(name, 0) + 2 * macs

        return record

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return flops


def default_input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, 64, 64) with C read off the first conv: every registered model runs at 64x64, and the
    conv FLOPs shares of fully convolutional nets barely depend on the spatial size."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        raise PruningError(f"{type(model).__name__} has no conv layers to prune")
    return (first.in_channels, 64, 64)


def example_input(model: nn.Module, input_shape: Sequence[int]) -> torch.Tensor:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise PruningError(f"input_shape must be (C, H, W) positive integers, got {tuple(input_shape)}")
    parameter = next(model.parameters())
    return torch.zeros((1, *shape), device=parameter.device, dtype=parameter.dtype)


def build_dependency_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    """torch-pruning's graph of `model`; its tracing switches to eval mode, so the flags are restored."""
    training = {module: module.training for module in model.modules()}
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    except Exception as exc:  # noqa: BLE001 - torch-pruning fails on some ops (ShuffleNet's channel shuffle)
        raise PruningError(
            f"{type(model).__name__}: structured pruning cannot trace this architecture's channel "
            f"dependencies ({type(exc).__name__}: {exc}); use unstructured pruning instead"
        ) from exc
    finally:
        for module, flag in training.items():
            module.training = flag


def check_no_masks(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if hasattr(module, "weight_mask"):
            raise PruningError(
                f"{name}: carries an unstructured pruning mask; call make_permanent(model) before "
                "structured pruning"
            )


def analyse_structure(
    model: nn.Module, input_shape: Sequence[int], graph: tp.DependencyGraph | None = None
) -> ModelStructure:
    """Trace `model` (left unchanged) and summarise what structured pruning needs."""
    check_no_masks(model)
    example = example_input(model, input_shape)
    if graph is None:
        graph = build_dependency_graph(model, example)
    modules = dict(model.named_modules())
    names_of = {module: name for name, module in modules.items()}
    first_conv = next(name for name, m in modules.items() if isinstance(m, nn.Conv2d))
    was_training = {module: module.training for module in model.modules()}
    model.eval()
    try:
        module_flops = _module_flops(model, example)
        base_flops = count_flops(model, tuple(example.shape[1:]))
    finally:
        for module, flag in was_training.items():
            module.training = flag

    out_source: dict[str, str] = {}
    in_source: dict[str, str] = {}
    accepted: list[str] = []
    for name in _candidate_convs(model):
        conv = modules.get(name)
        if not isinstance(conv, nn.Conv2d) or name == first_conv or conv not in graph.module2node:
            continue
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, [0])
        outs, ins, coupled = [], [], False
        for dep, _ in group:
            target = dep.target.module
            if not isinstance(target, nn.Conv2d | nn.Linear):
                continue
            target_name = names_of[target]
            if graph.is_out_channel_pruning_fn(dep.handler):
                if target is conv or _is_depthwise(target):
                    outs.append(target_name)
                else:
                    coupled = True  # a residual add or a classifier's outputs: not hidden
            elif isinstance(target, nn.Conv2d) and target.groups > 1:
                coupled = True  # grouped consumer: the FLOPs model and the plan would not hold
            else:
                ins.append(target_name)
        if coupled or any(m in out_source for m in outs) or any(m in in_source for m in ins):
            continue
        accepted.append(name)
        out_source.update(dict.fromkeys(outs, name))
        in_source.update(dict.fromkeys(ins, name))

    if not accepted:
        raise PruningError(f"{type(model).__name__}: no conv has hidden channels that can be pruned")
    layers = [
        LayerInfo(name, modules[name].out_channels, module_flops.get(name, 0) / base_flops)
        for name in accepted
    ]
    norms = {
        name: modules[name].weight.detach().abs().flatten(1).sum(dim=1).float().cpu() for name in accepted
    }
    return ModelStructure(
        layers=layers,
        channels={layer.name: layer.out_channels for layer in layers},
        norms=norms,
        base_flops=base_flops,
        module_flops=module_flops,
        out_source=out_source,
        in_source=in_source,
    )


def prunable_layers(model: nn.Module, input_shape: Sequence[int] | None = None) -> list[LayerInfo]:
    """The convs whose filters structured pruning may remove, in definition order.

    `input_shape` (C, H, W) sets the size the FLOPs shares are measured at; by default
    `default_input_shape(model)`.
    """
    shape = default_input_shape(model) if input_shape is None else input_shape
    return analyse_structure(model, shape).layers
