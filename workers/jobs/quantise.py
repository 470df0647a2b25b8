"""The quantise job: quantise the source run's trained model and evaluate it with the runtime that
executes it (workers/engine/pipelines.py: the same pipeline as `prunescape quantise`)."""

from __future__ import annotations

from typing import Any

from backend.artefact_layout import run_dir
from backend.json_values import finite_or_none
from workers.jobs.common import get_data
from workers.jobs.inputs import Artefact, JobHooks, JobResult, RunInput


def run_quantise(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    from workers.engine.artifacts import load_model
    from workers.engine.errors import ModelError
    from workers.engine.pipelines import QUANTISED_MODES, quantise_and_evaluate

    if not inp.source_model:
        raise ModelError(f"quantise run {inp.run_id}: its source run has no trained model")
    if inp.variant_kind not in QUANTISED_MODES:
        raise ModelError(f"a quantise run cannot quantise to {inp.variant_kind!r}")
    model, _ = load_model(inp.artifact_root / inp.source_model)
    data = get_data(inp)
    onnx_rel = f"{run_dir(inp.study_id, inp.run_id)}/model.onnx"
    evaluation = quantise_and_evaluate(
        model,
        data,
        inp.variant_kind,
        onnx_path=inp.artifact_root / onnx_rel,
        calibration_batches=int(inp.variant_spec.get("calibration_batches", 10)),
        calibration_batch_size=int((inp.spec.get("recipe") or {}).get("batch_size", 128)),
        device=device,
    )
    result = JobResult(
        status="diverged" if inp.source_status == "diverged" else "succeeded",
        top1=evaluation.top1,
        top5=evaluation.top5,
        loss=finite_or_none(evaluation.loss),
        result={
            "source_model": inp.source_model,
            "kind": inp.variant_kind,
            "runtime": evaluation.runtime,
            "device": evaluation.device,
        },
    )
    if evaluation.onnx_path is not None:
        result.model_path = onnx_rel
        result.artefacts.append(Artefact("onnx", onnx_rel, evaluation.onnx_path.stat().st_size))
        result.result["calibration_batches"] = evaluation.calibration_batches
    return result
