"""The prune job: prune the base model trained at the prior to the variant's target; the result
fixes the variant's architecture (and its finetune starting weights).

With `iterations: k > 1` the target is reached in k equal steps (in FLOPs ratio, or in amount),
each followed by retraining at the prior (its lr and wd, seed 0) in the variant's retrain mode:
`finetune` trains finetune_epochs per round from the surviving weights, `scratch` re-initialises
them (He) and trains the full recipe, `rewind` (unstructured only) resets them to the base prior
run's weights at rewind_epoch and trains the full recipe (iterative magnitude pruning with
rewinding). The per-round records go into the run's `result["iterations"]` (served by
`/variants`); their retraining epochs are the run's epochs, numbered on across rounds. Cancel is
honoured between rounds and between epochs; a redelivered run starts again at round 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from backend.artefact_layout import variant_dir
from workers.jobs.common import get_data, recipe_for
from workers.jobs.inputs import Artefact, JobHooks, JobResult, RunInput

ENGINE_RETRAIN = {"scratch": "reinit", "finetune": "finetune", "rewind": "rewind"}
SCHEDULE = "linear"  # the "k equal steps"; workers/engine/scan.py has the geometric one too
STEP_FIELDS = (
    "step",
    "target",
    "sparsity",
    "flops_ratio",
    "params",
    "params_nonzero",
    "pruned_top1",
    "pruned_top5",
    "top1",
    "top5",
    "status",
    "epochs",
)  # backend/api/schemas.py IterationStep


def run_prune(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Prune the base model trained at the prior to the variant's target (in `iterations`
    rounds when asked); the result fixes the variant's architecture (and its finetune weights)."""
    from workers.engine.artifacts import load_model, save_model
    from workers.engine.errors import ModelError
    from workers.engine.pruning import prune_structured, prune_unstructured

    if not inp.source_model:
        raise ModelError(f"prune run {inp.run_id}: the base run at the prior has no trained model")
    if inp.variant_kind not in ("structured", "unstructured"):
        raise ModelError(f"a prune run cannot prune variant kind {inp.variant_kind!r}")
    base, meta = load_model(inp.artifact_root / inp.source_model)
    input_shape = tuple(meta["input_shape"])
    vspec = inp.variant_spec
    iterations = int(vspec.get("iterations") or 1)
    epochs: list[Any] = []
    if iterations > 1:
        outcome, recipe = _prune_iteratively(inp, base, input_shape, hooks or JobHooks(), device, epochs)
        if outcome.status == "cancelled":
            return JobResult(
                status="cancelled",
                result={"iterations": _step_records(outcome.history), "source_model": inp.source_model},
                epochs=epochs,
                epochs_done=len(epochs),
            )
        model = outcome.model
        updates, summary = _summary(inp, base, model, input_shape, outcome=outcome)
        summary.update(_iteration_summary(inp, outcome, recipe))
    elif inp.variant_kind == "structured":
        pruned = prune_structured(
            base, input_shape, method=vspec.get("method", "uniform"), flops_ratio=float(vspec["flops_ratio"])
        )
        model = pruned.model
        updates, summary = _summary(inp, base, model, input_shape, structured=pruned)
    else:
        pruned_u = prune_unstructured(
            base, amount=float(vspec["amount"]), scope=vspec.get("scope", "layer"), permanent=True
        )
        model = pruned_u.model
        updates, summary = _summary(inp, base, model, input_shape)
    model_rel = f"{variant_dir(inp.study_id, inp.variant_id)}/model.pt"
    size = save_model(
        model.cpu(),
        inp.artifact_root / model_rel,
        model_name=meta["model_name"],
        num_classes=meta["num_classes"],
        input_shape=input_shape,
        meta={"variant": inp.variant_name, "pruned_from": inp.source_model, "iterations": iterations},
    )
    updates["model_path"] = model_rel
    summary["source_model"] = inp.source_model
    return JobResult(
        status="succeeded",
        result=summary,
        model_path=model_rel,
        artefacts=[Artefact("model", model_rel, size, variant_level=True)],
        variant_updates=updates,
        epochs=epochs,
        epochs_done=len(epochs) if epochs else None,
    )


def _summary(
    inp: RunInput,
    base: Any,
    model: Any,
    input_shape: tuple[int, ...],
    *,
    structured: Any = None,
    outcome: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(variant columns, run result) of the pruned `model`, one-shot (`structured` = the engine's
    StructuredResult) or iterative (`outcome` = its IterativeResult)."""
    from workers.engine.measure import count_params
    from workers.engine.pruning.unstructured import prunable_weight_modules, weight_sparsity

    vspec = inp.variant_spec
    if inp.variant_kind == "structured":
        if structured is not None:
            figures = {
                "base_flops": structured.base_flops,
                "flops": structured.flops,
                "flops_ratio": structured.flops_ratio,
                "base_params": structured.base_params,
                "params": structured.params,
                "kept_fractions": dict(structured.kept_fractions),
                "kept_channels": dict(structured.kept_channels),
                "uniform_fraction": structured.uniform_fraction,
            }
        else:
            figures = {
                "base_flops": outcome.base_flops,
                "flops": outcome.flops,
                "flops_ratio": outcome.flops_ratio,
                "base_params": count_params(base)[0],
                "params": count_params(model)[0],
                "kept_fractions": dict(outcome.kept_fractions),
                "kept_channels": dict(outcome.kept_channels),
                "uniform_fraction": None,
            }
        updates = {
            "flops_ratio_achieved": figures["flops_ratio"],
            "kept_fractions": figures.pop("kept_fractions"),
            "flops": figures["flops"],
            "params": figures["params"],
        }
        return updates, {**figures, "target_flops_ratio": float(vspec["flops_ratio"])}
    kept = {
        name: float((module.weight != 0).sum()) / module.weight.numel()
        for name, module in prunable_weight_modules(model)
    }
    zeros, total = weight_sparsity(model)
    summary = {"sparsity": zeros / total, "zero_weights": zeros, "prunable_weights": total}
    return {"flops_ratio_achieved": 1.0, "kept_fractions": kept}, summary


def _prior_input(inp: RunInput) -> RunInput:
    """`inp` at the grid's prior point (lr and wd of index 0, seed 0): where rounds retrain."""
    from backend.spec import GridSpec

    grid = GridSpec.model_validate(inp.spec["grid"])
    return dataclasses.replace(inp, lr=grid.lr_at(0), wd=grid.wd_at(0), seed=0, grid_i=0, grid_j=0)


def _prune_iteratively(
    inp: RunInput,
    base: Any,
    input_shape: tuple[int, ...],
    hooks: JobHooks,
    device: Any,
    epochs: list[Any],
) -> tuple[Any, Any]:
    """(IterativeResult, the rounds' Recipe): workers.engine.scan.iterative_prune with the
    variant's settings; fills `epochs` with the rounds' retraining epochs numbered on (round k,
    epoch e -> (k - 1) x epochs per round + e)."""
    import torch

    from workers.engine.errors import PruningError
    from workers.engine.scan import iterative_prune
    from workers.engine.training import pick_device

    vspec = inp.variant_spec
    retrain = vspec.get("retrain", "scratch")
    prior = _prior_input(inp)
    recipe = recipe_for(prior, epochs=int(vspec["finetune_epochs"]) if retrain == "finetune" else None)
    rewind_state = None
    if retrain == "rewind":
        if not inp.rewind_weights or not (inp.artifact_root / inp.rewind_weights).is_file():
            raise PruningError(
                f"variant {inp.variant_name!r}: the base weights at epoch {vspec.get('rewind_epoch')} are "
                "missing (the base prior run saves them)"
            )
        rewind_state = torch.load(
            inp.artifact_root / inp.rewind_weights, map_location="cpu", weights_only=True
        )

    def on_epoch(step: int, metrics: Any) -> None:
        numbered = dataclasses.replace(metrics, epoch=(step - 1) * recipe.epochs + metrics.epoch)
        epochs.append(numbered)
        if hooks.on_epoch is not None:
            hooks.on_epoch(numbered)

    if inp.variant_kind == "structured":
        target = {"kind": "structured", "target": float(vspec["flops_ratio"])}
        target["method"] = vspec.get("method", "uniform")
    else:
        target = {"kind": "unstructured", "target": float(vspec["amount"])}
        target["scope"] = vspec.get("scope", "layer")
    outcome = iterative_prune(
        base,
        get_data(inp),
        recipe,
        steps=int(vspec["iterations"]),
        retrain=ENGINE_RETRAIN[retrain],
        schedule=SCHEDULE,
        rewind_state=rewind_state,
        input_shape=input_shape,
        device=pick_device(device),
        on_epoch=on_epoch,
        should_stop=hooks.should_stop,
        **target,
    )
    if outcome.status == "diverged":
        done = "; ".join(
            f"round {r['step']}: top-1 {r['pruned_top1']:.1f} pruned, {r['top1']:.1f} retrained"
            for r in outcome.history[:-1]
        )
        raise PruningError(
            f"variant {inp.variant_name!r}: the retraining of round {len(outcome.history)} of "
            f"{vspec['iterations']} diverged at the prior (lr {prior.lr:g}, wd {prior.wd:g}); "
            f"the variant cannot be built this way{' (' + done + ')' if done else ''}"
        )
    return outcome, recipe


def _step_records(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The engine's per-round rows in the API's shape (every field present, null where n/a)."""
    return [{field: row.get(field) for field in STEP_FIELDS} for row in history]


def _iteration_summary(inp: RunInput, outcome: Any, recipe: Any) -> dict[str, Any]:
    return {
        "iterations": _step_records(outcome.history),
        "schedule": SCHEDULE,
        "retrain": inp.variant_spec.get("retrain", "scratch"),
        "epochs_per_round": recipe.epochs,
        "retrain_lr": recipe.lr,
        "retrain_wd": recipe.weight_decay,
    }
