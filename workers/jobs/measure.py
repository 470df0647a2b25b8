"""The measure job: measure a variant's model once (docs/spec.md section 6) into the variant's columns:
parameters, FLOPs, size on disk, latency, weight histograms and the environment.

The base variant is measured on the model trained at the prior, a pruned one on its pruned model,
an fp16 one on the half-precision copy of its source's model, an int8 / mixed one on the ONNX
model the quantise run at the prior made (measured as it is, not quantised again).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.artefact_layout import variant_dir
from workers.jobs.common import get_data, model_shape
from workers.jobs.inputs import Artefact, JobHooks, JobResult, RunInput

LATENCY_BATCHES = (1, 32)


def run_measure(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Measure the variant's model once (docs/spec.md section 6) into the variant's columns."""
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
    from workers.engine.quantise import to_fp16

    root = inp.artifact_root
    vdir = variant_dir(inp.study_id, inp.variant_id)
    (root / vdir).mkdir(parents=True, exist_ok=True)
    kind = inp.variant_kind
    data = None
    if inp.source_model:
        model, meta = load_model(root / inp.source_model)
        input_shape, weights = tuple(meta["input_shape"]), inp.source_model
    elif kind == "base":  # a study from before measure waited on the prior run: He-initialised weights
        data = get_data(inp)
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
        if not inp.quantised_model:
            raise ModelError(
                f"measure run {inp.run_id}: the quantise run at the prior of {inp.variant_name!r} left no "
                "ONNX model to measure"
            )
        rel = inp.quantised_model  # what the quantise run at the prior made: measured, not redone
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
    lat: dict[str, Any] = latency(target, input_shape, batch_sizes=LATENCY_BATCHES, device="cpu")
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
