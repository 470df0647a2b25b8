"""Sensitivity scans and iterative pruning (docs/spec.md section 4, from the compression reports).

Sensitivity scan: the accuracy of a trained model, pruned by a fraction p and not retrained.
- unstructured, global: `prune_unstructured(scope="global")` of the whole model; row has `sparsity`.
- unstructured, layer: one conv/linear layer at a time pruned by p (L1, `torch.nn.utils.prune`),
  everything else whole; one row per (layer, p).
- structured, global: every prunable layer loses the fraction p of its filters (L1 ranking,
  `prune_with_plan`); row has `flops_ratio`.
- structured, layer: one prunable layer at a time loses p of its filters.
p = 0 is the unpruned model itself, so its row is the reference accuracy.

Iterative pruning: `steps` rounds of prune -> retrain reaching `target` at the last round, on a
geometric schedule (every round removes the same share of what is left, as Han et al. 2015 and
the lottery-ticket experiments do): unstructured sparsity s_k = 1 - (1 - target)^(k/steps);
structured FLOPs ratio r_k = target^(k/steps). During retraining unstructured masks stay attached
so pruned weights stay zero; `retrain="reinit"` re-initialises the surviving weights (He) before
each retraining, `"finetune"` keeps them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from workers.engine.errors import PruningError

if TYPE_CHECKING:
    from workers.engine.data import Data
    from workers.engine.training import Recipe

DEFAULT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
Kind = Literal["unstructured", "structured"]
Scope = Literal["global", "layer"]


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    values = [float(f) for f in fractions]
    if not values:
        raise PruningError("fractions: need at least one fraction")
    for f in values:
        if not 0 <= f < 1:
            raise PruningError(f"fractions must lie in [0, 1), got {f}")
    return values


def _input_shape(model: nn.Module, data: Data | None, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(input_shape)
    if data is not None:
        return tuple(data.input_shape)
    raise PruningError("structured pruning needs the input shape (C, H, W)")


def _weight_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _accuracy(
    model: nn.Module, data: Data, device: torch.device | None, batch_size: int
) -> tuple[float, float]:
    from workers.engine.training import evaluate

    _, top1, top5 = evaluate(model, data, device=device, batch_size=batch_size)
    return top1, top5


def _zero_fraction(model: nn.Module) -> float:
    weights = [dict(model.named_modules())[n].weight for n in _weight_layers(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / total


def sensitivity_scan(
    model: nn.Module,
    data: Data,
    *,
    kind: Kind = "unstructured",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    scope: Scope = "global",
    input_shape: Sequence[int] | None = None,
    device: torch.device | None = None,
    batch_size: int = 1000,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Rows {fraction, layer (None for global), top1, top5, and sparsity | flops_ratio}."""
    if kind not in ("unstructured", "structured"):
        raise PruningError(f"kind must be 'unstructured' or 'structured', got {kind!r}")
    if scope not in ("global", "layer"):
        raise PruningError(f"scope must be 'global' or 'layer', got {scope!r}")
    values = _check_fractions(fractions)
    base = copy.deepcopy(model).eval()
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    reference = _accuracy(base, data, device, batch_size) if 0.0 in values else None

    if kind == "unstructured":
        layers = [None] if scope == "global" else _weight_layers(base)
        for layer in layers:
            for fraction in values:
                if fraction == 0.0:
                    top1, top5 = reference  # type: ignore[misc]
                    sparsity = _zero_fraction(base)
                elif layer is None:
                    from workers.engine.pruning import prune_unstructured

                    result = prune_unstructured(base, amount=fraction, scope="global")  # prunes a copy
                    pruned, sparsity = result.model, result.sparsity
                else:
                    pruned = copy.deepcopy(base)
                    module = pruned.get_submodule(layer)
                    torch_prune.l1_unstructured(module, "weight", amount=fraction)
                    torch_prune.remove(module, "weight")
                    sparsity = _zero_fraction(pruned)
                if fraction != 0.0:
                    top1, top5 = _accuracy(pruned, data, device, batch_size)
                emit({"fraction": fraction, "layer": layer, "top1": top1, "top5": top5, "sparsity": sparsity})
        return rows

    from workers.engine.pruning import prunable_layers, prune_with_plan

    shape = _input_shape(base, data, input_shape)
    names = [info.name for info in prunable_layers(base, shape)]
    layers = [None] if scope == "global" else names
    for layer in layers:
        for fraction in values:
            if fraction == 0.0:
                top1, top5 = reference  # type: ignore[misc]
                flops_ratio = 1.0
            else:
                targets = names if layer is None else [layer]
                # Plans map layer -> fraction of its filters to remove.
                result = prune_with_plan(base, shape, {n: fraction for n in targets})
                flops_ratio = result.flops_ratio
                top1, top5 = _accuracy(result.model, data, device, batch_size)
            emit(
                {"fraction": fraction, "layer": layer, "top1": top1, "top5": top5, "flops_ratio": flops_ratio}
            )
    return rows


@dataclass
class IterativeResult:
    model: nn.Module  # the pruned, retrained model of the last step
    history: list[dict[str, Any]]


def iterative_prune(
    model: nn.Module,
    data: Data,
    recipe: Recipe,
    *,
    target: float,
    steps: int,
    kind: Kind = "unstructured",
    retrain: Literal["finetune", "reinit"] = "finetune",
    scope: Scope = "global",
    input_shape: Sequence[int] | None = None,
    device: torch.device | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> IterativeResult:
    """Prune -> retrain `steps` times up to `target` (unstructured: sparsity in (0, 1);
    structured: FLOPs ratio in (0, 1), uniform L1 filter pruning). Returns the final model and the
    history: one row per step {step, sparsity | flops_ratio, params, pruned_top1, pruned_top5,
    top1, top5} (pruned_* before retraining, top* after). The input model is not modified.
    """
    from workers.engine.measure import count_params
    from workers.engine.training import train

    if kind not in ("unstructured", "structured"):
        raise PruningError(f"kind must be 'unstructured' or 'structured', got {kind!r}")
    if retrain not in ("finetune", "reinit"):
        raise PruningError(f"retrain must be 'finetune' or 'reinit', got {retrain!r}")
    if not 0 < target < 1:
        raise PruningError(f"target must be in (0, 1), got {target}")
    if not isinstance(steps, int) or steps < 1:
        raise PruningError(f"steps must be a positive integer, got {steps!r}")

    current = copy.deepcopy(model)
    history: list[dict[str, Any]] = []
    base_flops: int | None = None
    if kind == "structured":
        from workers.engine.flops import count_flops

        shape = _input_shape(current, data, input_shape)
        base_flops = count_flops(current, shape)
    ratio_so_far = 1.0
    for step in range(1, steps + 1):
        row: dict[str, Any] = {"step": step}
        if kind == "unstructured":
            from workers.engine.pruning import prune_unstructured

            sparsity = 1.0 - (1.0 - target) ** (step / steps)
            # The zeros of earlier rounds are the smallest |w|, so pruning `sparsity` of all
            # weights again reaches the cumulative target; masks stay attached for retraining.
            result = prune_unstructured(current, amount=sparsity, scope=scope, permanent=False)
            current = result.model
            row["sparsity"] = result.sparsity
        else:
            from workers.engine.pruning import prune_structured

            wanted = target ** (step / steps)
            result = prune_structured(current, shape, method="uniform", flops_ratio=wanted / ratio_so_far)
            current = result.model
            ratio_so_far = result.flops / base_flops  # type: ignore[operator]
            row["flops_ratio"] = ratio_so_far
        row["pruned_top1"], row["pruned_top5"] = _accuracy(current, data, device, recipe.eval_batch_size)
        outcome = train(current, data, recipe, device=device, reinit=retrain == "reinit")
        if kind == "unstructured":
            from workers.engine.pruning import make_permanent

            make_permanent(current)
        row["top1"], row["top5"] = outcome.top1, outcome.top5
        row["status"] = outcome.status
        row["params"], row["params_nonzero"] = count_params(current)
        history.append(row)
        if on_step is not None:
            on_step(row)
    return IterativeResult(model=current, history=history)
