"""The prune job: prune the base model trained at the prior to the variant's target; the result
fixes the variant's architecture (and its finetune starting weights)."""

from __future__ import annotations

from typing import Any

from backend.artefact_layout import variant_dir
from workers.jobs.inputs import Artefact, JobHooks, JobResult, RunInput


def run_prune(inp: RunInput, hooks: JobHooks | None = None) -> JobResult:
    """Prune the base model trained at the prior to the variant's target; the result fixes the
    variant's architecture (and its finetune starting weights)."""
    from workers.engine.artifacts import load_model, save_model
    from workers.engine.errors import ModelError
    from workers.engine.pruning import prune_structured, prune_unstructured
    from workers.engine.pruning.unstructured import prunable_weight_modules

    if not inp.source_model:
        raise ModelError(f"prune run {inp.run_id}: the base run at the prior has no trained model")
    base, meta = load_model(inp.artifact_root / inp.source_model)
    input_shape = tuple(meta["input_shape"])
    vspec = inp.variant_spec
    updates: dict[str, Any] = {}
    if inp.variant_kind == "structured":
        pruned = prune_structured(
            base, input_shape, method=vspec.get("method", "uniform"), flops_ratio=float(vspec["flops_ratio"])
        )
        model = pruned.model
        updates.update(
            flops_ratio_achieved=pruned.flops_ratio,
            kept_fractions=dict(pruned.kept_fractions),
            flops=pruned.flops,
            params=pruned.params,
        )
        summary = {
            "base_flops": pruned.base_flops,
            "flops": pruned.flops,
            "flops_ratio": pruned.flops_ratio,
            "target_flops_ratio": float(vspec["flops_ratio"]),
            "base_params": pruned.base_params,
            "params": pruned.params,
            "kept_channels": dict(pruned.kept_channels),
            "uniform_fraction": pruned.uniform_fraction,
        }
    elif inp.variant_kind == "unstructured":
        pruned_u = prune_unstructured(
            base, amount=float(vspec["amount"]), scope=vspec.get("scope", "layer"), permanent=True
        )
        model = pruned_u.model
        kept = {}
        for name, module in prunable_weight_modules(model):
            kept[name] = float((module.weight != 0).sum()) / module.weight.numel()
        updates.update(flops_ratio_achieved=1.0, kept_fractions=kept)
        summary = {
            "sparsity": pruned_u.sparsity,
            "zero_weights": pruned_u.zero_weights,
            "prunable_weights": pruned_u.prunable_weights,
        }
    else:
        raise ModelError(f"a prune run cannot prune variant kind {inp.variant_kind!r}")
    model_rel = f"{variant_dir(inp.study_id, inp.variant_id)}/model.pt"
    size = save_model(
        model,
        inp.artifact_root / model_rel,
        model_name=meta["model_name"],
        num_classes=meta["num_classes"],
        input_shape=input_shape,
        meta={"variant": inp.variant_name, "pruned_from": inp.source_model},
    )
    updates["model_path"] = model_rel
    summary["source_model"] = inp.source_model
    return JobResult(
        status="succeeded",
        result=summary,
        model_path=model_rel,
        artefacts=[Artefact("model", model_rel, size, variant_level=True)],
        variant_updates=updates,
    )
