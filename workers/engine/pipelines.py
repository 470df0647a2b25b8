"""Compression pipelines that both the study's jobs (workers/jobs/) and the `prunescape` command
line (workers/engine/cli.py) run, so a number means the same wherever it was made.

- `quantise_and_evaluate`: int8 / mixed -> static PTQ into a QDQ ONNX file, evaluated by ONNX
  Runtime on the CPU (the runtime that executes it); fp16 -> half-precision torch, evaluated on
  the given device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workers.engine.data import Data
from workers.engine.errors import QuantisationError

QUANTISED_MODES = ("int8", "mixed", "fp16")


@dataclass
class QuantisedEvaluation:
    mode: str  # int8 | mixed | fp16
    top1: float
    top5: float
    loss: float | None  # fp16 only (ONNX Runtime gives logits; the jobs store no loss for int8)
    runtime: str  # onnxruntime | torch
    device: str
    onnx_path: Path | None  # the QDQ model of int8 / mixed
    model: Any  # what runs: an OnnxClassifier or the fp16 module wrapper
    calibration_batches: int | None


def quantise_and_evaluate(
    model: nn.Module,
    data: Data,
    mode: str,
    *,
    onnx_path: str | Path | None = None,
    calibration_batches: int = 10,
    calibration_batch_size: int = 128,
    device: torch.device | str | None = None,
) -> QuantisedEvaluation:
    """Quantise a trained fp32 `model` to `mode` and evaluate it on the full validation set."""
    from workers.engine.quantise import OnnxClassifier, quantise_int8, to_fp16
    from workers.engine.training import evaluate, pick_device

    if mode in ("int8", "mixed"):
        if onnx_path is None:
            raise QuantisationError(f"{mode}: an output path for the ONNX model is needed")
        path = Path(onnx_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        calib = data.calibration_batches(calibration_batches, calibration_batch_size)
        quantise_int8(model, calib, path, mixed=mode == "mixed")
        runner = OnnxClassifier(path)
        top1, top5 = runner.evaluate(data)
        return QuantisedEvaluation(
            mode, top1, top5, None, "onnxruntime", "cpu", path, runner, calibration_batches
        )
    if mode == "fp16":
        dev = pick_device(device)
        half = to_fp16(model)
        loss, top1, top5 = evaluate(half, data, device=dev)
        return QuantisedEvaluation(mode, top1, top5, loss, "torch", str(dev), None, half, None)
    raise QuantisationError(f"unknown quantisation mode {mode!r}; choose one of {', '.join(QUANTISED_MODES)}")
