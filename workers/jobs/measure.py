"""The measure job: measure a variant's model once (docs/spec.md section 6) into the variant's columns:
parameters, FLOPs, size on disk, latency, weight histograms and the environment.

The base variant is measured on the model trained at the prior, a pruned one on its pruned model,
an fp16 one on the half-precision copy of its source's model, an int8 / mixed one on the ONNX
model the quantise run at the prior made (measured as it is, not quantised again).

Latency (docs/spec.md section 6) is timed on every runtime by `runtimes.latency_by_runtime` and stored as
its `{runtime name: record}` dict in `variant.latency`: ONNX Runtime CPU and eager torch CPU
always, torch CUDA and ONNX Runtime CUDA on a worker that sees a GPU. What each runtime runs:
- base, structured, unstructured (fp32): the module in torch; in ONNX Runtime its own fp32 export,
  written once as `variant_<id>/model_fp32.onnx` (a variant artefact of kind `onnx`).
- fp16: the half copy in torch; ONNX Runtime CPU gives an explicit not-supported record.
- int8, mixed: the QDQ file of the quantise run at the prior in ONNX Runtime; torch gives an
  explicit not-supported record.
Warm-up and timed runs come from `RunInput.latency_warmup` / `latency_runs` (settings; SPEC
defaults 10 / 50); fewer make every figure say `meets_spec: false`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.artefact_layout import variant_dir
from backend.json_values import json_safe
from workers.jobs.common import get_data, model_shape
from workers.jobs.inputs import Artefact, JobHooks, JobResult, RunInput

LATENCY_BATCHES = (1, 32)


def run_measure(inp: RunInput, hooks: JobHooks | None = None, *, device: Any = None) -> JobResult:
    """Measure the variant's model once (docs/spec.md section 6) into the variant's columns."""
    from workers.engine.artifacts import load_model, save_model, sparse_size_bytes
    from workers.engine.errors import ModelError
    from workers.engine.flops import FLOPS_CONVENTION, count_flops
    from workers.engine.measure import (
        count_params,
        environment_info,
        file_size_bytes,
        weight_histograms,
    )
    from workers.engine.models import build_model
    from workers.engine.quantise import export_onnx

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
        updates["histograms"] = {
            # The exporter folds BatchNorm into the convs: compare the int8 weights with the same
            # folded fp32 weights, not with the unfolded torch ones.
            "before": _folded_fp32_histograms(model, input_shape),
            "before_label": "fp32, BatchNorm folded",
            "after": weight_histograms(str(root / rel)),
        }
    else:
        rel = f"{vdir}/model.pt"
        if kind == "fp16":
            save_model(
                model.half(), root / rel, model_name=meta["model_name"], num_classes=meta["num_classes"],
                input_shape=input_shape, meta={"variant": inp.variant_name},
            )  # fmt: skip
            model = model.float()
        else:
            if inp.source_model != rel:
                save_model(
                    model, root / rel, model_name=meta["model_name"], num_classes=meta["num_classes"],
                    input_shape=input_shape, meta={"variant": inp.variant_name, "weights": weights},
                )  # fmt: skip
            updates["size_sparse_bytes"] = sparse_size_bytes(model)
        updates["histograms"] = weight_histograms(model)
    size = file_size_bytes(root / rel)
    updates["size_bytes"] = size
    artefacts.append(Artefact("onnx" if rel.endswith(".onnx") else "model", rel, size, variant_level=True))
    updates["model_path"] = rel
    if kind in ("int8", "mixed"):
        lat = _latency(inp, None, root / rel, input_shape, precision="int8")
    elif kind == "fp16":
        lat = _latency(inp, model, None, input_shape, precision="fp16")
    else:
        # ONNX Runtime times the variant's own fp32 export; it is kept, so it is made once.
        onnx_rel = f"{vdir}/model_fp32.onnx"
        export_onnx(model, input_shape, root / onnx_rel)
        artefacts.append(Artefact("onnx", onnx_rel, file_size_bytes(root / onnx_rel), variant_level=True))
        lat = _latency(inp, model, root / onnx_rel, input_shape, precision="fp32")
    updates["latency"] = json_safe(lat)  # a JSON column: no inf (images_per_s of a 0 ms median)
    measured["latency_runtimes"] = list(lat)  # the runtimes asked; each record says if it ran
    measured["environment"] = environment_info()
    updates["measured"] = measured
    return JobResult(
        status="succeeded",
        result={"params": total, "params_nonzero": nonzero, "flops": flops, "size_bytes": size},
        model_path=rel,
        artefacts=artefacts,
        variant_updates=updates,
    )


def _latency(
    inp: RunInput, model: Any, onnx_path: Path | None, input_shape: tuple[int, ...], *, precision: str
) -> dict[str, Any]:
    """The variant's `{runtime name: record}` on the CPU runtimes, and the CUDA ones when a GPU is seen."""
    import torch

    from workers.engine.runtimes import latency_by_runtime

    devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    return latency_by_runtime(
        model,
        onnx_path,
        input_shape,
        precision=precision,  # type: ignore[arg-type]
        batch_sizes=LATENCY_BATCHES,
        warmup=inp.latency_warmup,
        runs=inp.latency_runs,
        devices=devices,
    )


def _folded_fp32_histograms(model: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    import tempfile

    from workers.engine.measure import weight_histograms
    from workers.engine.quantise import export_onnx

    with tempfile.TemporaryDirectory(prefix="prunescape-fp32-") as tmp:
        return weight_histograms(export_onnx(model, input_shape, Path(tmp) / "fp32.onnx"))
