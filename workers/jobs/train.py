"""The train job: one grid point of the base or a pruned variant (docs/spec.md section 2, steps 1 and 3).

Its checkpoint carries the run's identity (study, run, variant, data set): a redelivered run
resumes from its own checkpoint only; anything else found at its path is discarded.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from backend.artefact_layout import checkpoint_rel, rewind_rel, run_dir
from backend.json_values import finite_or_none
from workers.jobs.common import attach_masks, get_data, is_prior, model_shape, recipe_for, rewind_epoch_of
from workers.jobs.inputs import Artefact, JobHooks, JobResult, RunInput

log = logging.getLogger(__name__)


def checkpoint_identity(inp: RunInput) -> dict[str, Any]:
    """What a checkpoint must belong to before this run resumes from it."""
    return {
        "study_id": inp.study_id,
        "run_id": inp.run_id,
        "variant": inp.variant_name,
        "dataset": inp.spec.get("dataset"),
    }


def run_train(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Train one grid point of the base or a pruned variant (docs/spec.md section 2, steps 1 and 3)."""
    from workers.engine.artifacts import load_model, save_model
    from workers.engine.errors import ModelError
    from workers.engine.models import build_model
    from workers.engine.pruning import make_permanent
    from workers.engine.training import ForeignCheckpointError, pick_device, train

    hooks = hooks or JobHooks()
    root = inp.artifact_root
    data = get_data(inp)
    num_classes, input_shape = model_shape(inp.spec, data)
    model_name = inp.spec["model"]["name"]
    retrain = inp.variant_spec.get("retrain", "scratch")
    reinit, epochs, snapshot_epoch, snapshot_path = True, None, None, None
    if inp.variant_kind == "base":
        model = build_model(model_name, num_classes=num_classes, input_shape=input_shape)
        rewind_at = rewind_epoch_of(inp.spec)
        if rewind_at is not None and is_prior(inp):
            snapshot_epoch = rewind_at
            snapshot_path = root / rewind_rel(inp.study_id, inp.run_id, rewind_at)
    elif inp.variant_kind in ("structured", "unstructured"):
        if not inp.variant_model:
            raise ModelError(f"variant {inp.variant_name!r} has no pruned model yet (its prune run)")
        model, _ = load_model(root / inp.variant_model)
        if retrain == "finetune":
            reinit, epochs = False, int(inp.variant_spec["finetune_epochs"])
        elif retrain == "rewind":
            model = _rewound(inp, model)
            reinit = False
        if inp.variant_kind == "unstructured":
            attach_masks(model)
    else:
        raise ModelError(f"a train run cannot train variant kind {inp.variant_kind!r}")
    recipe = recipe_for(inp, epochs=epochs)
    checkpoint = checkpoint_rel(inp.study_id, inp.run_id)
    (root / checkpoint).parent.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    identity = checkpoint_identity(inp)
    train_args = dict(
        device=dev,
        checkpoint_path=root / checkpoint,
        on_epoch=hooks.on_epoch,
        should_stop=hooks.should_stop,
        reinit=reinit,
        snapshot_epoch=snapshot_epoch,
        snapshot_path=snapshot_path,
        checkpoint_identity=identity,
    )
    initial_state = copy.deepcopy(model.state_dict())  # a foreign checkpoint means starting over
    discarded = None
    try:
        outcome = train(model, data, recipe, **train_args)
    except ForeignCheckpointError as exc:
        discarded = str(exc)
        log.warning("run %s: %s; training from scratch", inp.run_id, exc)
        (root / checkpoint).unlink(missing_ok=True)
        model.load_state_dict(initial_state)
        outcome = train(model, data, recipe, **train_args)
    if inp.variant_kind == "unstructured":
        make_permanent(model)
    last = outcome.history[-1]
    result = JobResult(
        status=outcome.status,
        top1=finite_or_none(outcome.top1),
        top5=finite_or_none(outcome.top5),
        loss=finite_or_none(last.val_loss),
        epochs_done=outcome.epochs,
        checkpoint_path=checkpoint,
        epochs=list(outcome.history),
        result={
            "device": outcome.device,
            "seconds": outcome.seconds,
            "optimizer": outcome.optimizer,
            "fast_path": outcome.fast_path,  # the speed switches that took effect on this device
            "recipe": recipe.to_dict(),
            "retrain": None if inp.variant_kind == "base" else retrain,
            "train_top1": finite_or_none(last.train_top1),
            "train_loss": finite_or_none(last.train_loss),
        },
    )
    if discarded is not None:
        result.result["discarded_checkpoint"] = discarded
    if outcome.status != "cancelled":
        model_rel = f"{run_dir(inp.study_id, inp.run_id)}/model.pt"
        size = save_model(
            model.cpu(),
            root / model_rel,
            model_name=model_name,
            num_classes=num_classes,
            input_shape=input_shape,
            meta={"run_id": inp.run_id, "variant": inp.variant_name, "status": outcome.status},
        )
        result.model_path = model_rel
        result.artefacts.append(Artefact("model", model_rel, size))
    if snapshot_path is not None and Path(snapshot_path).exists():
        rel = rewind_rel(inp.study_id, inp.run_id, snapshot_epoch)  # type: ignore[arg-type]
        result.artefacts.append(Artefact("snapshot", rel, Path(snapshot_path).stat().st_size))
        result.result["rewind_snapshot"] = rel
    return result


def _rewound(inp: RunInput, pruned: Any) -> Any:
    """The pruned model with the base run's weights at the rewind epoch (unstructured only: the
    same architecture, so the surviving weights are reset and the zero pattern kept)."""
    import torch

    from workers.engine.errors import PruningError

    if inp.variant_kind != "unstructured":
        raise PruningError(
            f"variant {inp.variant_name!r}: rewind retraining is supported for unstructured variants only; "
            "use retrain 'scratch' or 'finetune' for structured pruning"
        )
    if not inp.rewind_weights or not (inp.artifact_root / inp.rewind_weights).is_file():
        raise PruningError(
            f"variant {inp.variant_name!r}: the base weights at epoch "
            f"{inp.variant_spec.get('rewind_epoch')} are missing (the base prior run saves them)"
        )
    masks = {name: p.detach() != 0 for name, p in pruned.named_parameters() if name.endswith("weight")}
    state = torch.load(inp.artifact_root / inp.rewind_weights, map_location="cpu", weights_only=True)
    pruned.load_state_dict(state)
    with torch.no_grad():
        for name, param in pruned.named_parameters():
            if name in masks and param.dim() > 1:
                param.mul_(masks[name])
    return pruned
