"""The train job: one grid point of the base or a pruned variant (docs/spec.md section 2, steps 1 and 3),
alone (`run_train`) or with other runs of its variant in one fused group (`run_train_group`,
docs/spec.md section 8). Both prepare a run (`prepare_train`) and assemble its result
(`train_result`) the same way; a grouped run's result adds `group` (the run ids trained together).

Its checkpoint carries the run's identity (study, run, variant, data set): a redelivered run
resumes from its own checkpoint only; anything else found at its path is discarded. The checkpoint
is in the solo format in a group too, so a run resumes grouped or alone whichever way it started.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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


@dataclass
class PreparedTrain:
    """One train run made ready for `train()` or a fused group: its model (built, or the pruned
    variant's, rewound or masked), recipe, checkpoint and snapshot paths, checkpoint identity."""

    inp: RunInput
    model: Any
    recipe: Any
    model_name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    retrain: str
    reinit: bool
    checkpoint: str  # relative to the artefact directory
    identity: dict[str, Any]
    initial_state: dict[str, Any]  # the model before training: a foreign checkpoint means starting over
    snapshot_epoch: int | None = None
    snapshot_path: Path | None = None
    discarded: str | None = None  # the foreign checkpoint that was thrown away, if one was

    @property
    def checkpoint_path(self) -> Path:
        return self.inp.artifact_root / self.checkpoint

    def discard_checkpoint(self, reason: str) -> None:
        """Forget a checkpoint of another run found at this run's path: train from the start."""
        self.discarded = reason
        log.warning("run %s: %s; training from scratch", self.inp.run_id, reason)
        self.checkpoint_path.unlink(missing_ok=True)
        self.model.load_state_dict(self.initial_state)


def prepare_train(inp: RunInput, data: Any) -> PreparedTrain:
    """Everything `run_train` and `run_train_group` need of one run before it trains."""
    from workers.engine.artifacts import load_model
    from workers.engine.errors import ModelError
    from workers.engine.models import build_model

    root = inp.artifact_root
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
    checkpoint = checkpoint_rel(inp.study_id, inp.run_id)
    (root / checkpoint).parent.mkdir(parents=True, exist_ok=True)
    return PreparedTrain(
        inp=inp,
        model=model,
        recipe=recipe_for(inp, epochs=epochs),
        model_name=model_name,
        num_classes=num_classes,
        input_shape=input_shape,
        retrain=retrain,
        reinit=reinit,
        checkpoint=checkpoint,
        identity=checkpoint_identity(inp),
        initial_state=copy.deepcopy(model.state_dict()),
        snapshot_epoch=snapshot_epoch,
        snapshot_path=snapshot_path,
    )


def run_train(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Train one grid point of the base or a pruned variant (docs/spec.md section 2, steps 1 and 3)."""
    from workers.engine.training import pick_device

    data = get_data(inp)
    return _train_solo(prepare_train(inp, data), data, hooks or JobHooks(), pick_device(device))


def _train_solo(prep: PreparedTrain, data: Any, hooks: JobHooks, device: Any) -> JobResult:
    from workers.engine.training import ForeignCheckpointError, train

    train_args = dict(
        device=device,
        checkpoint_path=prep.checkpoint_path,
        on_epoch=hooks.on_epoch,
        should_stop=hooks.should_stop,
        reinit=prep.reinit,
        snapshot_epoch=prep.snapshot_epoch,
        snapshot_path=prep.snapshot_path,
        checkpoint_identity=prep.identity,
    )
    try:
        outcome = train(prep.model, data, prep.recipe, **train_args)
    except ForeignCheckpointError as exc:
        prep.discard_checkpoint(str(exc))
        outcome = train(prep.model, data, prep.recipe, **train_args)
    return train_result(prep, outcome)


def train_result(prep: PreparedTrain, outcome: Any, group: list[int] | None = None) -> JobResult:
    """The JobResult of a trained run (solo, or in the fused `group` of these run ids): its
    metrics, its model saved (unless cancelled), its rewind snapshot, the speed switches in effect."""
    from workers.engine.artifacts import save_model
    from workers.engine.pruning import make_permanent

    inp, root, model = prep.inp, prep.inp.artifact_root, prep.model
    if inp.variant_kind == "unstructured":
        make_permanent(model)
    last = outcome.history[-1]
    fast_path = {"fused": False, **outcome.fast_path}  # the speed switches that took effect on this device
    result = JobResult(
        status=outcome.status,
        top1=finite_or_none(outcome.top1),
        top5=finite_or_none(outcome.top5),
        loss=finite_or_none(last.val_loss),
        epochs_done=outcome.epochs,
        checkpoint_path=prep.checkpoint,
        epochs=list(outcome.history),
        result={
            "device": outcome.device,
            "seconds": outcome.seconds,
            "optimizer": outcome.optimizer,
            "fast_path": fast_path,
            "recipe": prep.recipe.to_dict(),
            "retrain": None if inp.variant_kind == "base" else prep.retrain,
            "train_top1": finite_or_none(last.train_top1),
            "train_loss": finite_or_none(last.train_loss),
        },
    )
    if group is not None:
        result.result["group"] = {"run_ids": list(group), "size": len(group)}
    if prep.discarded is not None:
        result.result["discarded_checkpoint"] = prep.discarded
    if outcome.status != "cancelled":
        model_rel = f"{run_dir(inp.study_id, inp.run_id)}/model.pt"
        size = save_model(
            model.cpu(),
            root / model_rel,
            model_name=prep.model_name,
            num_classes=prep.num_classes,
            input_shape=prep.input_shape,
            meta={"run_id": inp.run_id, "variant": inp.variant_name, "status": outcome.status},
        )
        result.model_path = model_rel
        result.artefacts.append(Artefact("model", model_rel, size))
    snapshot_path = prep.snapshot_path
    if snapshot_path is not None and Path(snapshot_path).exists():
        rel = rewind_rel(inp.study_id, inp.run_id, prep.snapshot_epoch)  # type: ignore[arg-type]
        result.artefacts.append(Artefact("snapshot", rel, Path(snapshot_path).stat().st_size))
        result.result["rewind_snapshot"] = rel
    return result


# --- fused groups (docs/spec.md section 8) ----------------------------------------------------------
_auto_sizes: dict[tuple[Any, ...], int] = {}  # the memory probe's answer per study, variant and device


def group_size_for(inp: RunInput, setting: int | str, *, device: Any = None) -> int:
    """How many runs to train fused with `inp` (itself included): 1 when its recipe opts out
    (`fused` false) or cannot be fused (`compile`), else the worker's setting, `auto` resolved by
    `fused.probe.auto_group_size` (a memory probe on CUDA, kept per study and variant)."""
    from workers.engine.fused.probe import CPU_AUTO_GROUP_SIZE, auto_group_size
    from workers.engine.training import pick_device

    recipe = recipe_for(inp)
    if inp.kind != "train" or not recipe.fused or recipe.compile:
        return 1
    if setting != "auto":
        return int(setting)
    dev = pick_device(device)
    if dev.type != "cuda":
        return CPU_AUTO_GROUP_SIZE
    key = (inp.study_id, inp.variant_id, str(dev))
    if key not in _auto_sizes:
        data = get_data(inp)
        prep = prepare_train(inp, data)
        _auto_sizes[key] = auto_group_size(prep.model, prep.recipe, prep.input_shape, prep.num_classes, dev)
        log.info("run %s: auto fused group size %d on %s", inp.run_id, _auto_sizes[key], dev)
    return _auto_sizes[key]


def run_train_group(
    inputs: Sequence[RunInput],
    hooks: Mapping[int, JobHooks] | None = None,
    *,
    on_result: Callable[[int, JobResult | Exception], None] | None = None,
    device: Any = None,
) -> dict[int, JobResult | Exception]:
    """Train the train runs `inputs` (one study, one variant) as one fused group: each run is the
    run `run_train` would train, with its own hooks (`hooks[run_id]`), checkpoint, snapshot and
    result. `on_result(run_id, outcome)` is called as soon as a run has left the group (finished,
    diverged, cancelled), so it can be stored while the others train on. A run that cannot be
    prepared, resumed or stored gets its exception as outcome and the others go on; an error of the
    group's training raises (it is every run's). Returns every run's outcome by run id."""
    from workers.engine.checkpoint import CheckpointError
    from workers.engine.fused import train_group
    from workers.engine.training import ForeignCheckpointError, TrainingError, pick_device

    hooks = hooks or {}
    dev = pick_device(device)
    outcomes: dict[int, JobResult | Exception] = {}

    def settle(run_id: int, outcome: JobResult | Exception) -> None:
        outcomes[run_id] = outcome
        if on_result is not None:
            on_result(run_id, outcome)

    data = get_data(inputs[0]) if inputs else None
    members: list[PreparedTrain] = []
    for inp in inputs:
        try:
            members.append(prepare_train(inp, data))
        except Exception as exc:  # noqa: BLE001 - this run fails alone (the caller sorts the error)
            settle(inp.run_id, exc)
    while len(members) > 1:
        ids = [m.inp.run_id for m in members]

        def leave(
            index: int, outcome: Any, members: list[PreparedTrain] = members, ids: list[int] = ids
        ) -> None:
            prep = members[index]
            try:
                result: JobResult | Exception = train_result(prep, outcome, group=ids)
            except Exception as exc:  # noqa: BLE001 - storing this run failed, not the group
                result = exc
            settle(prep.inp.run_id, result)

        try:
            train_group(
                [m.model for m in members],
                data,
                [m.recipe for m in members],
                device=dev,
                checkpoint_paths=[m.checkpoint_path for m in members],
                on_epoch=lambda i, metrics, ids=ids: _call(hooks.get(ids[i]), "on_epoch", metrics),
                should_stop=lambda i, ids=ids: bool(_call(hooks.get(ids[i]), "should_stop")),
                reinit=members[0].reinit,
                snapshots=[
                    None if m.snapshot_epoch is None else (m.snapshot_epoch, m.snapshot_path) for m in members
                ],
                checkpoint_identities=[m.identity for m in members],
                on_leave=leave,
            )
            return outcomes
        except (CheckpointError, TrainingError) as exc:
            # One member's checkpoint (foreign, unreadable, another recipe or device) or missing
            # snapshot: that member alone is the problem; the others start again, resuming.
            culprit = next((m for m in members if os.fspath(m.checkpoint_path) in str(exc)), None)
            if culprit is None or culprit.inp.run_id in outcomes:
                raise
            if isinstance(exc, ForeignCheckpointError):
                culprit.discard_checkpoint(str(exc))
            else:
                members.remove(culprit)
                settle(culprit.inp.run_id, exc)
            for m in members:
                m.model.load_state_dict(m.initial_state)
    for prep in members:  # one left: it trains alone (an error of its training raises, as the group's)
        settle(prep.inp.run_id, _train_solo(prep, data, hooks.get(prep.inp.run_id) or JobHooks(), dev))
    return outcomes


def _call(hooks: JobHooks | None, name: str, *args: Any) -> Any:
    hook = getattr(hooks, name, None) if hooks is not None else None
    return hook(*args) if hook is not None else None


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
