"""Sensitivity scans and iterative pruning (docs/spec.md section 4, from the compression reports).

Sensitivity scan: the accuracy of a trained model, pruned by a fraction p and not retrained.
- unstructured, global: `prune_unstructured(scope="global")` of the whole model; row has `sparsity`.
- unstructured, layer: one conv/linear layer at a time pruned by p (L1, `torch.nn.utils.prune`),
  everything else whole; one row per (layer, p).
- structured, global: every prunable layer loses the fraction p of its filters (L1 ranking,
  `prune_with_plan`); row has `flops_ratio`.
- structured, layer: one prunable layer at a time loses p of its filters.
p = 0 is the unpruned model itself, so its row is the reference accuracy.

Iterative pruning: `steps` rounds of prune -> retrain reaching `target` at the last round.
Schedules: `geometric` (every round removes the same share of what is left, as Han et al. 2015 and
the lottery-ticket experiments do): unstructured sparsity s_k = 1 - (1 - target)^(k/steps),
structured FLOPs ratio r_k = target^(k/steps); `linear` (k equal steps in the amount or in the
FLOPs ratio, what a study's `iterations` asks for): s_k = target * k / steps,
r_k = 1 - (1 - target) * k / steps. During retraining unstructured masks stay attached so pruned
weights stay zero; `retrain="reinit"` re-initialises the surviving weights (He) before each
retraining, `"finetune"` keeps them, `"rewind"` (unstructured only) resets them to given weights
(the base model's at an early epoch: iterative magnitude pruning with rewinding, Frankle et al.).
`should_stop()` is asked before every round and after every epoch of its retraining (cooperative
cancel); a stopped or diverged round ends the run with that status and the rounds done so far.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
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
Schedule = Literal["geometric", "linear"]
SCHEDULES = ("geometric", "linear")
RETRAIN_MODES = ("finetune", "reinit", "rewind")


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
    should_stop: Callable[[], bool] | None = None,
) -> list[dict[str, Any]]:
    """Rows {fraction, layer (None for global), top1, top5, and sparsity | flops_ratio}.

    `should_stop()` is asked before every pruned evaluation; when it says so the rows so far are
    returned (the caller knows it asked to stop)."""
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
    base.cpu()  # prune on the CPU (as the prune job does); each pruned copy is evaluated on `device`

    def stopped() -> bool:
        return should_stop is not None and bool(should_stop())

    if kind == "unstructured":
        layers = [None] if scope == "global" else _weight_layers(base)
        for layer in layers:
            for fraction in values:
                if fraction != 0.0 and stopped():
                    return rows
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
            if fraction != 0.0 and stopped():
                return rows
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
    """`model`: the pruned, retrained model of the last round done. `history`: one row per round.
    `status`: `succeeded`, or `cancelled` / `diverged` when a round's retraining ended so (the
    rounds after it were not run). Structured: `base_flops`, `flops`, `flops_ratio` (of the input
    model's FLOPs), `kept_fractions` / `kept_channels` per prunable layer relative to the input
    model; unstructured: `sparsity` (zero weights / prunable weights) of `model`."""

    model: nn.Module
    history: list[dict[str, Any]]
    status: str = "succeeded"
    base_flops: int | None = None
    flops: int | None = None
    flops_ratio: float | None = None
    kept_fractions: dict[str, float] | None = None
    kept_channels: dict[str, int] | None = None
    sparsity: float | None = None


def step_targets(target: float, steps: int, *, kind: Kind, schedule: Schedule = "geometric") -> list[float]:
    """The cumulative target of every round: unstructured sparsity, structured FLOPs ratio."""
    if schedule not in SCHEDULES:
        raise PruningError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    ks = range(1, steps + 1)
    if kind == "unstructured":
        if schedule == "linear":
            return [target * k / steps for k in ks]
        return [1.0 - (1.0 - target) ** (k / steps) for k in ks]
    if schedule == "linear":
        return [1.0 - (1.0 - target) * k / steps for k in ks]
    return [target ** (k / steps) for k in ks]


def _rewind_to(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load `state` (a plain state dict of the same architecture) into `model`, whose pruned
    layers carry `torch.nn.utils.prune` masks: weights go to `weight_orig`, so the masks keep the
    pruned ones at zero."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for key, value in state.items():
            dest = params.get(f"{key}_orig")
            if dest is None:
                dest = params.get(key)
            if dest is None:
                dest = buffers.get(key)
            if dest is None or tuple(dest.shape) != tuple(value.shape):
                raise PruningError(f"rewind weights do not fit the pruned model at {key!r}")
            dest.copy_(value)
        for (
            module
        ) in model.modules():  # `weight` = weight_orig x mask, refreshed now, not at the next forward
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, torch_prune.BasePruningMethod):
                    setattr(module, hook._tensor_name, hook.apply_mask(module))


def iterative_prune(
    model: nn.Module,
    data: Data,
    recipe: Recipe,
    *,
    target: float,
    steps: int,
    kind: Kind = "unstructured",
    retrain: Literal["finetune", "reinit", "rewind"] = "finetune",
    scope: Scope = "global",
    method: Literal["uniform", "nonuniform"] = "uniform",
    schedule: Schedule = "geometric",
    rewind_state: Mapping[str, torch.Tensor] | None = None,
    input_shape: Sequence[int] | None = None,
    device: torch.device | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[int, Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> IterativeResult:
    """Prune -> retrain `steps` times up to `target` (unstructured: sparsity in (0, 1), `scope`
    layer | global; structured: FLOPs ratio in (0, 1), L1 filter pruning by `method`), each
    retraining by `recipe`. Returns the final model and the history: one row per step {step,
    target, sparsity | flops_ratio (achieved, of the input model), params, params_nonzero,
    pruned_top1, pruned_top5, top1, top5, status, epochs} (pruned_* before retraining, top* after).
    `on_epoch(step, EpochMetrics)` follows the retraining. The input model is not modified.
    """
    from workers.engine.measure import count_params
    from workers.engine.training import train

    if kind not in ("unstructured", "structured"):
        raise PruningError(f"kind must be 'unstructured' or 'structured', got {kind!r}")
    if retrain not in RETRAIN_MODES:
        raise PruningError(f"retrain must be one of {', '.join(RETRAIN_MODES)}, got {retrain!r}")
    if retrain == "rewind" and kind != "unstructured":
        raise PruningError("rewind retraining is supported for unstructured pruning only")
    if retrain == "rewind" and rewind_state is None:
        raise PruningError("rewind retraining needs the weights to rewind to (rewind_state)")
    if not isinstance(target, int | float) or not 0 < target < 1:
        raise PruningError(f"target must be in (0, 1), got {target}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PruningError(f"steps must be a positive integer, got {steps!r}")
    targets = step_targets(float(target), steps, kind=kind, schedule=schedule)

    current = copy.deepcopy(model).cpu()
    history: list[dict[str, Any]] = []
    out = IterativeResult(model=current, history=history)
    if kind == "structured":
        from workers.engine.flops import count_flops
        from workers.engine.pruning import prunable_layers, prune_structured

        shape = _input_shape(current, data, input_shape)
        out.base_flops = count_flops(current, shape)
        base_channels = {info.name: info.out_channels for info in prunable_layers(current, shape)}
        out.flops, out.flops_ratio = out.base_flops, 1.0
    for step, wanted in enumerate(targets, start=1):
        if should_stop is not None and should_stop():
            out.status = "cancelled"
            break
        row: dict[str, Any] = {"step": step, "target": wanted}
        if kind == "unstructured":
            from workers.engine.pruning import prune_unstructured

            # The zeros of earlier rounds are the smallest |w|, so pruning `wanted` of all weights
            # again reaches the cumulative target; masks stay attached for retraining.
            result = prune_unstructured(current, amount=wanted, scope=scope, permanent=False)
            current = result.model
            row["sparsity"] = result.sparsity
        else:
            # Each round prunes the current (smaller) model; its own ratio is relative to it.
            relative = min(1.0, wanted / out.flops_ratio)  # type: ignore[operator]
            result = prune_structured(current, shape, method=method, flops_ratio=relative)
            current = result.model
            out.flops = result.flops
            out.flops_ratio = result.flops / out.base_flops  # type: ignore[operator]
            out.kept_channels = {**(out.kept_channels or base_channels), **result.kept_channels}
            out.kept_fractions = {
                name: out.kept_channels[name] / base_channels[name] for name in base_channels
            }
            row["flops_ratio"] = out.flops_ratio
        row["pruned_top1"], row["pruned_top5"] = _accuracy(current, data, device, recipe.eval_batch_size)
        if retrain == "rewind":
            _rewind_to(current, rewind_state)  # type: ignore[arg-type]
        outcome = train(
            current,
            data,
            recipe,
            device=device,
            reinit=retrain == "reinit",
            on_epoch=None if on_epoch is None else (lambda metrics, step=step: on_epoch(step, metrics)),
            should_stop=should_stop,
        )
        current.cpu()
        if kind == "unstructured":
            from workers.engine.pruning import make_permanent

            make_permanent(current)
        row["top1"], row["top5"] = outcome.top1, outcome.top5
        row["status"] = outcome.status
        row["epochs"] = outcome.epochs
        row["params"], row["params_nonzero"] = count_params(current)
        history.append(row)
        out.model = current
        if on_step is not None:
            on_step(row)
        if outcome.status != "succeeded":
            out.status = outcome.status
            break
    if kind == "unstructured":
        out.sparsity = _zero_fraction(out.model)
    return out
