"""Unstructured pruning: zero the smallest-|w| weights of every conv and linear layer.

Uses `torch.nn.utils.prune` L1 magnitude pruning, per layer (`l1_unstructured` with the same
amount in each layer) or globally (`global_unstructured` over all of them at once). Biases and BN
are never pruned. With permanent=False the masks stay attached (`weight = weight_orig * mask`
is recomputed on every forward), so retraining keeps the pruned weights at zero; `make_permanent`
then folds them in.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from workers.engine.errors import PruningError

SCOPES = ("layer", "global")


@dataclass
class UnstructuredResult:
    """`sparsity` = zero_weights / prunable_weights over the conv and linear weights."""

    model: nn.Module
    sparsity: float
    zero_weights: int
    prunable_weights: int


def prunable_weight_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def weight_sparsity(model: nn.Module) -> tuple[int, int]:
    """(zero weights, prunable weights) over the conv and linear weights (masks applied)."""
    zeros = total = 0
    for _, module in prunable_weight_modules(model):
        weight = module.weight
        if hasattr(module, "weight_mask"):
            # `weight` is only refreshed on forward; the mask is the truth between steps.
            weight = module.weight_orig * module.weight_mask
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros, total


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold every attached pruning mask into its weight (in place) and return the model."""
    for _, module in model.named_modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
    return model


def prune_unstructured(
    model: nn.Module, *, amount: float, scope: str = "layer", permanent: bool = True
) -> UnstructuredResult:
    """Prune a copy of `model` (left untouched): zero the `amount` fraction of smallest-|w| weights,
    in each conv/linear layer (scope="layer") or across all of them (scope="global")."""
    if scope not in SCOPES:
        raise PruningError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if (
        isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or not math.isfinite(amount)
        or not 0 <= amount < 1
    ):
        raise PruningError(f"amount must be a number in [0, 1), got {amount!r}")
    pruned = copy.deepcopy(model)
    modules = prunable_weight_modules(pruned)
    if not modules:
        raise PruningError(f"{type(model).__name__} has no conv or linear weights to prune")
    with torch.no_grad():
        if scope == "layer":
            for _, module in modules:
                prune.l1_unstructured(module, "weight", amount=float(amount))
        else:
            prune.global_unstructured(
                [(module, "weight") for _, module in modules],
                pruning_method=prune.L1Unstructured,
                amount=float(amount),
            )
    if permanent:
        make_permanent(pruned)
    zeros, total = weight_sparsity(pruned)
    return UnstructuredResult(
        model=pruned, sparsity=zeros / total, zero_weights=zeros, prunable_weights=total
    )
