"""Structured (filter) pruning to a FLOPs target: a physically smaller dense copy of the model.

`prune_structured` plans with the pure functions of `plans` on the traced `ModelStructure`, then
removes the chosen filters of a deep copy through torch-pruning's dependency graph, which also
removes the matching BN channels, depthwise channels and consumer input channels. The reported
FLOPs are measured on the pruned model by the one FLOP counter, not predicted.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch_pruning as tp
from torch import nn

from workers.engine.errors import PruningError
from workers.engine.flops import count_flops
from workers.engine.pruning.layers import (
    ModelStructure,
    analyse_structure,
    build_dependency_graph,
    example_input,
)
from workers.engine.pruning.plans import (
    filters_to_remove,
    plan_nonuniform,
    plan_uniform,
    validate_plan,
)

METHODS = ("uniform", "nonuniform")


@dataclass
class StructuredResult:
    """A pruned model and its figures. `kept_fractions` / `kept_channels` cover every prunable
    layer (1.0 / its full width where nothing was removed). `uniform_fraction` is the fraction
    removed per layer by the uniform method (None otherwise)."""

    model: nn.Module
    base_flops: int
    flops: int
    flops_ratio: float
    base_params: int
    params: int
    kept_fractions: dict[str, float]
    kept_channels: dict[str, int]
    target_flops_ratio: float | None = None
    uniform_fraction: float | None = None


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _apply(
    model: nn.Module, input_shape: Sequence[int], kept: Mapping[str, int]
) -> tuple[nn.Module, ModelStructure]:
    """Deep copy of `model` with each listed layer cut to its lowest-L1-pruned `kept` filters."""
    pruned = copy.deepcopy(model)
    graph = build_dependency_graph(pruned, example_input(pruned, input_shape))
    structure = analyse_structure(pruned, input_shape, graph=graph)
    modules = dict(pruned.named_modules())
    for name, indices in filters_to_remove(structure.norms, kept).items():
        group = graph.get_pruning_group(modules[name], tp.prune_conv_out_channels, indices)
        group.prune()
    return pruned, structure


def _result(
    model: nn.Module,
    pruned: nn.Module,
    input_shape: Sequence[int],
    structure: ModelStructure,
    *,
    target: float | None = None,
    uniform_fraction: float | None = None,
) -> StructuredResult:
    modules = dict(pruned.named_modules())
    kept_channels = {name: modules[name].out_channels for name in structure.channels}
    flops = count_flops(pruned, input_shape)
    return StructuredResult(
        model=pruned,
        base_flops=structure.base_flops,
        flops=flops,
        flops_ratio=flops / structure.base_flops,
        base_params=_param_count(model),
        params=_param_count(pruned),
        kept_fractions={n: kept_channels[n] / c for n, c in structure.channels.items()},
        kept_channels=kept_channels,
        target_flops_ratio=target,
        uniform_fraction=uniform_fraction,
    )


def prune_structured(
    model: nn.Module, input_shape: Sequence[int], *, method: str, flops_ratio: float
) -> StructuredResult:
    """Prune a copy of `model` (left untouched) to keep `flops_ratio` of its FLOPs.

    method="uniform": the same fraction p of every prunable layer (kept = floor(C (1 - p)), >= 1),
    p chosen so the FLOPs ratio is the closest any uniform fraction gives.
    method="nonuniform": one global L1 ranking of all prunable filters; the lowest are removed
    until the FLOPs ratio is within FLOPS_TOLERANCE of the target (>= 1 filter kept per layer).
    Raises PruningError for an unknown method, a ratio outside (0, 1], or an unreachable ratio.
    """
    if method not in METHODS:
        raise PruningError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if (
        isinstance(flops_ratio, bool)
        or not isinstance(flops_ratio, int | float)
        or not math.isfinite(flops_ratio)
        or not 0 < flops_ratio <= 1
    ):
        raise PruningError(f"flops_ratio must be a number in (0, 1], got {flops_ratio!r}")
    structure = analyse_structure(model, input_shape)
    uniform_fraction = None
    if method == "uniform":
        uniform_fraction, kept = plan_uniform(
            structure.channels, structure.flops, structure.base_flops, float(flops_ratio)
        )
    else:
        kept = plan_nonuniform(
            structure.channels, structure.norms, structure.flops, structure.base_flops, float(flops_ratio)
        )
    pruned, structure = _apply(model, input_shape, kept)
    result = _result(
        model, pruned, input_shape, structure, target=float(flops_ratio), uniform_fraction=uniform_fraction
    )
    predicted = structure.flops(kept)
    if result.flops != predicted:
        # The plan's FLOPs model and the counter disagree: a structure we do not model correctly,
        # so the target the plan aimed at is not what the model got.
        raise PruningError(
            f"{type(model).__name__}: the pruned model has {result.flops} FLOPs where the plan predicted "
            f"{predicted}; this architecture's channel dependencies are not supported"
        )
    return result


def prune_with_plan(
    model: nn.Module, input_shape: Sequence[int], plan: Mapping[str, float]
) -> StructuredResult:
    """Prune a copy of `model`: `plan[layer]` is the fraction of that layer's filters to remove
    (kept = floor(C (1 - fraction)), >= 1), lowest L1 norm first. Layers not named stay whole.
    Unknown or non-prunable names and fractions outside [0, 1) raise PruningError naming the key."""
    structure = analyse_structure(model, input_shape)
    kept = validate_plan(plan, structure.channels)
    pruned, structure = _apply(model, input_shape, kept)
    return _result(model, pruned, input_shape, structure)
