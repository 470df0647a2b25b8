"""The bridge from a run to the engine: one small function per run kind. No Celery, no database.

The caller (workers/tasks.py) reads the run, its variant and the study spec from the database into
a `RunInput`, passes callbacks (`JobHooks`) and stores the `JobResult`. Paths in both are relative
to the artefact directory (`settings.artifact_dir`, shared by every worker and the API).

Layout under the artefact directory:
    study_<id>/run_<id>/checkpoint.pt   training checkpoint (a redelivered run resumes from it)
    study_<id>/run_<id>/model.pt        the trained model (artifacts.save_model)
    study_<id>/run_<id>/rewind_e<t>.pt  base weights at epoch t (prior run only, for rewind variants)
    study_<id>/run_<id>/model.onnx      an int8 / mixed model of a quantise run
    study_<id>/variant_<id>/model.*     the variant's model: pruned architecture + weights, or what
                                        its measure run measured
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RETRAIN_MODES = ("scratch", "finetune", "rewind")
LATENCY_BATCHES = (1, 32)


@dataclass
class RunInput:
    """What a job needs of its run, read from the database by the caller."""

    run_id: int
    study_id: int
    kind: str  # train | prune | quantise | measure
    variant_id: int
    variant_name: str
    variant_kind: str  # base | structured | unstructured | int8 | mixed | fp16
    variant_spec: dict[str, Any]
    spec: dict[str, Any]  # the study spec (backend/spec.py StudySpec, as stored)
    artifact_root: Path
    lr: float | None = None
    wd: float | None = None
    seed: int = 0
    grid_i: int | None = None
    grid_j: int | None = None
    # Resolved inputs (relative paths):
    source_model: str | None = None  # prune: trained base prior; quantise: trained source run;
    #                                  measure: the model of the variant it measures from
    source_status: str | None = None  # status of the run `source_model` came from
    variant_model: str | None = None  # the pruned variant's model (train of a pruned variant)
    rewind_weights: str | None = None  # base weights at the rewind epoch (rewind retraining)


@dataclass
class JobHooks:
    on_epoch: Callable[[Any], None] | None = None  # engine EpochMetrics
    should_stop: Callable[[], bool] | None = None


@dataclass
class Artefact:
    kind: str  # model | checkpoint | onnx | snapshot
    path: str  # relative to the artefact directory
    bytes: int
    variant_level: bool = False  # belongs to the variant (pruned model, measured model)


@dataclass
class JobResult:
    status: str  # succeeded | diverged | cancelled
    top1: float | None = None
    top5: float | None = None
    loss: float | None = None
    epochs_done: int | None = None
    result: dict[str, Any] = field(default_factory=dict)
    model_path: str | None = None
    checkpoint_path: str | None = None
    artefacts: list[Artefact] = field(default_factory=list)
    variant_updates: dict[str, Any] = field(default_factory=dict)  # columns of the variant row
    epochs: list[Any] = field(default_factory=list)  # every EpochMetrics of a train run


def run_dir(study_id: int, run_id: int) -> str:
    return f"study_{study_id}/run_{run_id}"


def variant_dir(study_id: int, variant_id: int) -> str:
    return f"study_{study_id}/variant_{variant_id}"


def checkpoint_rel(study_id: int, run_id: int) -> str:
    return f"{run_dir(study_id, run_id)}/checkpoint.pt"


def rewind_rel(study_id: int, run_id: int, epoch: int) -> str:
    return f"{run_dir(study_id, run_id)}/rewind_e{epoch}.pt"


# --- shared pieces ---------------------------------------------------------------------------------
_data_cache: dict[str, Any] = {}


def get_data(dataset: dict[str, Any]) -> Any:
    """The engine's Data for a spec's dataset; the last one is kept (a worker runs many runs of
    one study in a row). The path is confined to this worker's data roots again (the study may
    have been stored before they changed) and the decoded size capped, both from the settings."""
    from backend.settings import get_settings
    from workers.engine.data import DatasetSpec, load_dataset

    settings = get_settings()
    roots, max_bytes = settings.dataset_roots, settings.max_dataset_bytes
    key = json.dumps([dataset, [str(r) for r in roots], max_bytes], sort_keys=True)
    if key not in _data_cache:
        _data_cache.clear()
        _data_cache[key] = load_dataset(DatasetSpec.from_dict(dataset), roots=roots, max_bytes=max_bytes)
    return _data_cache[key]


def model_shape(spec: dict[str, Any], data: Any) -> tuple[int, tuple[int, int, int]]:
    """(num_classes, input_shape) of the study's model: the spec's override, else the data's."""
    model = spec.get("model") or {}
    num_classes = model.get("num_classes") or data.num_classes
    input_shape = tuple(model.get("input_shape") or data.input_shape)
    return int(num_classes), input_shape  # type: ignore[return-value]


def recipe_for(inp: RunInput, *, epochs: int | None = None) -> Any:
    from backend.spec import RecipeSpec
    from workers.engine.training import Recipe

    recipe = RecipeSpec.model_validate(inp.spec.get("recipe") or {})
    values = recipe.to_recipe_dict(lr=float(inp.lr), weight_decay=float(inp.wd), seed=int(inp.seed))
    if epochs is not None:
        values["epochs"] = epochs
    return Recipe.from_dict(values)


def rewind_epoch_of(spec: dict[str, Any]) -> int | None:
    """The epoch whose base weights the study's rewind variants start from (one per study)."""
    epochs = sorted({v["rewind_epoch"] for v in spec.get("variants", []) if v.get("retrain") == "rewind"})
    return epochs[0] if epochs else None


def is_prior(inp: RunInput) -> bool:
    return inp.grid_i == 0 and inp.grid_j == 0 and inp.seed == 0


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def attach_masks(model: Any) -> Any:
    """Attach `torch.nn.utils.prune` masks that keep the zero weights of every conv/linear at zero
    while retraining (an unstructured variant's sparsity pattern is its zero pattern)."""
    from torch.nn.utils import prune

    from workers.engine.pruning.unstructured import prunable_weight_modules

    for _, module in prunable_weight_modules(model):
        prune.custom_from_mask(module, "weight", mask=(module.weight.detach() != 0))
    return model


# --- train -----------------------------------------------------------------------------------------
def run_train(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Train one grid point of the base or a pruned variant (SPEC section 2, steps 1 and 3)."""
    from workers.engine.artifacts import load_model, save_model
    from workers.engine.errors import ModelError
    from workers.engine.models import build_model
    from workers.engine.pruning import make_permanent
    from workers.engine.training import pick_device, train

    hooks = hooks or JobHooks()
    root = inp.artifact_root
    data = get_data(inp.spec["dataset"])
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
    outcome = train(
        model,
        data,
        recipe,
        device=dev,
        checkpoint_path=root / checkpoint,
        on_epoch=hooks.on_epoch,
        should_stop=hooks.should_stop,
        reinit=reinit,
        snapshot_epoch=snapshot_epoch,
        snapshot_path=snapshot_path,
    )
    if inp.variant_kind == "unstructured":
        make_permanent(model)
    last = outcome.history[-1]
    result = JobResult(
        status=outcome.status,
        top1=_finite(outcome.top1),
        top5=_finite(outcome.top5),
        loss=_finite(last.val_loss),
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
            "train_top1": _finite(last.train_top1),
            "train_loss": _finite(last.train_loss),
        },
    )
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


# --- prune -----------------------------------------------------------------------------------------
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


# --- quantise --------------------------------------------------------------------------------------
def run_quantise(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Quantise the source run's trained model and evaluate it with the runtime that executes it:
    int8 / mixed with ONNX Runtime on the CPU, fp16 with torch (on the GPU when there is one)."""
    from workers.engine.artifacts import load_model
    from workers.engine.errors import ModelError
    from workers.engine.quantise import OnnxClassifier, quantise_int8, to_fp16
    from workers.engine.training import evaluate, pick_device

    if not inp.source_model:
        raise ModelError(f"quantise run {inp.run_id}: its source run has no trained model")
    model, _ = load_model(inp.artifact_root / inp.source_model)
    data = get_data(inp.spec["dataset"])
    status = "diverged" if inp.source_status == "diverged" else "succeeded"
    result = JobResult(status=status, result={"source_model": inp.source_model, "kind": inp.variant_kind})
    if inp.variant_kind in ("int8", "mixed"):
        n_batches = int(inp.variant_spec.get("calibration_batches", 10))
        batch_size = int((inp.spec.get("recipe") or {}).get("batch_size", 128))
        calib = data.calibration_batches(n_batches, batch_size)
        onnx_rel = f"{run_dir(inp.study_id, inp.run_id)}/model.onnx"
        path = inp.artifact_root / onnx_rel
        path.parent.mkdir(parents=True, exist_ok=True)
        quantise_int8(model, calib, path, mixed=inp.variant_kind == "mixed")
        top1, top5 = OnnxClassifier(path).evaluate(data)
        result.model_path = onnx_rel
        result.artefacts.append(Artefact("onnx", onnx_rel, path.stat().st_size))
        result.result.update(runtime="onnxruntime", device="cpu", calibration_batches=n_batches)
    elif inp.variant_kind == "fp16":
        dev = pick_device(device)
        loss, top1, top5 = evaluate(to_fp16(model), data, device=dev)
        result.loss = _finite(loss)
        result.result.update(runtime="torch", device=str(dev))
    else:
        raise ModelError(f"a quantise run cannot quantise to {inp.variant_kind!r}")
    result.top1, result.top5 = top1, top5
    return result


# --- measure ---------------------------------------------------------------------------------------
def run_measure(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Measure the variant's model once (SPEC section 6) into the variant's columns."""
    import torch

    from workers.engine.artifacts import load_model, save_model, sparse_size_bytes
    from workers.engine.errors import ModelError
    from workers.engine.flops import FLOPS_CONVENTION, count_flops
    from workers.engine.measure import (
        count_params,
        environment_info,
        file_size_bytes,
        latency,
        weight_histograms,
    )
    from workers.engine.models import build_model
    from workers.engine.quantise import quantise_int8, to_fp16

    root = inp.artifact_root
    vdir = variant_dir(inp.study_id, inp.variant_id)
    (root / vdir).mkdir(parents=True, exist_ok=True)
    kind = inp.variant_kind
    data = None
    if inp.source_model:
        model, meta = load_model(root / inp.source_model)
        input_shape, weights = tuple(meta["input_shape"]), inp.source_model
    elif kind == "base":
        data = get_data(inp.spec["dataset"])
        num_classes, input_shape = model_shape(inp.spec, data)
        model = build_model(inp.spec["model"]["name"], num_classes=num_classes, input_shape=input_shape)
        meta, weights = {"model_name": inp.spec["model"]["name"], "num_classes": num_classes}, "initial"
    else:
        raise ModelError(f"measure run {inp.run_id}: variant {inp.variant_name!r} has no model to measure")
    model.eval()
    total, nonzero = count_params(model)
    flops = count_flops(model, input_shape)
    updates: dict[str, Any] = {"params": total, "params_nonzero": nonzero, "flops": flops}
    artefacts: list[Artefact] = []
    measured: dict[str, Any] = {"weights": weights, "flops_convention": FLOPS_CONVENTION}

    if kind in ("int8", "mixed"):
        data = data or get_data(inp.spec["dataset"])
        n_batches = int(inp.variant_spec.get("calibration_batches", 10))
        batch_size = int((inp.spec.get("recipe") or {}).get("batch_size", 128))
        rel = f"{vdir}/model.onnx"
        quantise_int8(
            model, data.calibration_batches(n_batches, batch_size), root / rel, mixed=kind == "mixed"
        )
        target: Any = str(root / rel)
        updates["histograms"] = {
            # The exporter folds BatchNorm into the convs: compare the int8 weights with the same
            # folded fp32 weights, not with the unfolded torch ones.
            "before": _folded_fp32_histograms(model, input_shape),
            "before_label": "fp32, BatchNorm folded",
            "after": weight_histograms(target),
        }
        measured["runtime"] = "onnxruntime"
    else:
        rel = f"{vdir}/model.pt"
        if kind == "fp16":
            measured_model = to_fp16(model)
            save_model(
                model.half(), root / rel, model_name=meta["model_name"], num_classes=meta["num_classes"],
                input_shape=input_shape, meta={"variant": inp.variant_name},
            )  # fmt: skip
            model = model.float()
        else:
            measured_model = model
            if inp.source_model != rel:
                save_model(
                    model, root / rel, model_name=meta["model_name"], num_classes=meta["num_classes"],
                    input_shape=input_shape, meta={"variant": inp.variant_name, "weights": weights},
                )  # fmt: skip
            updates["size_sparse_bytes"] = sparse_size_bytes(model)
        target = measured_model
        updates["histograms"] = weight_histograms(model)
        measured["runtime"] = "torch"
    size = file_size_bytes(root / rel)
    updates["size_bytes"] = size
    artefacts.append(Artefact("onnx" if rel.endswith(".onnx") else "model", rel, size, variant_level=True))
    updates["model_path"] = rel
    cpu = latency(target, input_shape, batch_sizes=LATENCY_BATCHES, device="cpu")
    lat: dict[str, Any] = {**cpu, "batches": cpu["by_batch"]}
    if torch.cuda.is_available() and not isinstance(target, str):
        lat["cuda"] = latency(target, input_shape, batch_sizes=LATENCY_BATCHES, device="cuda")
    updates["latency"] = lat
    measured["environment"] = environment_info()
    updates["measured"] = measured
    return JobResult(
        status="succeeded",
        result={"params": total, "params_nonzero": nonzero, "flops": flops, "size_bytes": size},
        model_path=rel,
        artefacts=artefacts,
        variant_updates=updates,
    )


def _folded_fp32_histograms(model: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    import tempfile

    from workers.engine.measure import weight_histograms
    from workers.engine.quantise import export_onnx

    with tempfile.TemporaryDirectory(prefix="prunescape-fp32-") as tmp:
        return weight_histograms(export_onnx(model, input_shape, Path(tmp) / "fp32.onnx"))


JOBS: dict[str, Callable[..., JobResult]] = {
    "train": run_train,
    "prune": run_prune,
    "quantise": run_quantise,
    "measure": run_measure,
}
