"""One variant's latency on every runtime, each figure named by its runtime (docs/spec.md section 6).

A latency ratio means something only within one runtime: fp32 eager torch against int8 ONNX
Runtime credits int8 with the change of runtime too. So every variant is timed on the same
runtimes, under fixed names:

  onnxruntime-cpu   ONNX Runtime, CPUExecutionProvider: the fp32 ONNX export of the variant's own
                    model (base, pruned), or its QDQ file (int8, mixed). The default runtime.
  torch-cpu         eager torch on the CPU: the module itself (fp32, or the half copy for fp16).
  torch-cuda        eager torch on the GPU, synchronised around every timed run.
  onnxruntime-cuda  ONNX Runtime, CUDAExecutionProvider (only with the onnxruntime-gpu package), inputs
                    and outputs bound on the GPU so no host copy is timed.

A runtime that cannot run a precision gives an explicit record, never a figure of something else:
- int8 on torch-*: the QDQ model has no eager-torch form here (`torch.ao.quantization` is
  deprecated; ONNX Runtime is the one runtime that executes our int8).
- fp16 on onnxruntime-cpu: ORT's CPU provider runs an fp16 graph by casting it back to fp32
  (checked on ORT 1.32 with ResNet-20: the optimised graph's convolutions are fp32 NCHWc kernels
  with inserted "PrecisionFreeCast" nodes, and it times the same as the fp32 file), so the figure
  would be fp32 arithmetic under an fp16 label.
- int8 on onnxruntime-cuda: the CUDA provider has no int8 convolution kernels for QDQ graphs
  (int8 on NVIDIA GPUs goes through TensorRT), so it would time fp32 kernels plus (de)quantisation.
- a runtime whose device or provider is absent here names what is missing.

Records (JSON-ready; `docs/contracts.md`, "latency by runtime"): a measured one holds what
`measure.latency` holds (device, device_name, threads, warmup, runs, meets_spec, input_shape,
by_batch, load_average_1m) with `runtime` set to the fixed name, plus `supported: true`,
`precision`, `library`, `library_version`, `model_format` and `max_abs_diff_vs_torch`; an
unsupported one is `{"runtime", "supported": false, "precision", "reason"}`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from workers.engine.measure import (
    LatencyProtocol,
    MeasurementError,
    cpu_model_name,
    latency,
    latency_protocol,
    time_runs,
    timing_summary,
)

ORT_CPU = "onnxruntime-cpu"
TORCH_CPU = "torch-cpu"
TORCH_CUDA = "torch-cuda"
ORT_CUDA = "onnxruntime-cuda"
# Display order; the API and the pages default to the first. backend.analysis.latency keeps the
# same tuple (it may not import the engine); a test pins that they agree.
RUNTIMES = (ORT_CPU, TORCH_CPU, TORCH_CUDA, ORT_CUDA)
DEFAULT_RUNTIME = ORT_CPU
RUNTIMES_BY_DEVICE = {"cpu": (ORT_CPU, TORCH_CPU), "cuda": (TORCH_CUDA, ORT_CUDA)}

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS = ("fp32", "fp16", "int8")

# What ORT was given, as `model_format` of a record.
FORMAT_TORCH = "torch"
FORMAT_ONNX_FP32 = "onnx-fp32"
FORMAT_ONNX_FP16 = "onnx-fp16"
FORMAT_ONNX_QDQ = "onnx-qdq"

# An fp32 export runs the same arithmetic as its module up to BatchNorm folding and summation
# order (~1e-6 relative); another model's export (the base's for a pruned variant) is off by the
# size of the logits themselves.
EXPORT_RTOL = 1e-3

REASON_INT8_TORCH = (
    "int8 runs only in ONNX Runtime here: the QDQ model has no eager-torch form "
    "(torch.ao.quantization is deprecated)"
)
REASON_FP16_ORT_CPU = (
    "ONNX Runtime's CPU provider casts an fp16 graph back to fp32 (its convolutions run as fp32 "
    "kernels), so the figure would time fp32 arithmetic, not fp16"
)
REASON_INT8_ORT_CUDA = (
    "ONNX Runtime's CUDA provider has no int8 convolution kernels for a QDQ graph (int8 on NVIDIA "
    "GPUs needs TensorRT), so the figure would time fp32 kernels plus (de)quantisation"
)
REASON_NO_MODULE = "no torch module was given for this variant, only its ONNX file"


def runtimes_for(devices: Sequence[str]) -> tuple[str, ...]:
    """The runtime names timed for `devices` ("cpu", "cuda"), in `RUNTIMES` order."""
    if isinstance(devices, str) or not devices:
        raise MeasurementError(f"devices: expected a non-empty list of 'cpu' / 'cuda', got {devices!r}")
    unknown = [d for d in devices if d not in RUNTIMES_BY_DEVICE]
    if unknown:
        raise MeasurementError(f"devices: unknown device(s) {unknown}; expected 'cpu' and/or 'cuda'")
    wanted = {rt for d in devices for rt in RUNTIMES_BY_DEVICE[d]}
    return tuple(rt for rt in RUNTIMES if rt in wanted)


def unsupported(runtime: str, precision: str, reason: str) -> dict[str, Any]:
    """The explicit record of a runtime that gives no figure for this variant."""
    return {"runtime": runtime, "supported": False, "precision": precision, "reason": reason}


def unavailable_reason(runtime: str) -> str | None:
    """Why `runtime` cannot run on this machine at all (missing device or provider), else None."""
    if runtime in (ORT_CPU, TORCH_CPU):
        return None
    if runtime == TORCH_CUDA:
        return None if torch.cuda.is_available() else f"torch {torch.__version__} sees no CUDA device"
    if runtime == ORT_CUDA:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        if "CUDAExecutionProvider" not in providers:
            return (
                f"onnxruntime {ort.__version__} offers {providers}, not CUDAExecutionProvider "
                "(install onnxruntime-gpu in place of onnxruntime on a CUDA worker)"
            )
        if not torch.cuda.is_available():
            return "CUDAExecutionProvider is installed but no CUDA device is visible"
        return None
    raise MeasurementError(f"runtime: unknown runtime {runtime!r}; expected one of {list(RUNTIMES)}")


def precision_reason(runtime: str, precision: str) -> str | None:
    """Why `runtime` gives no honest figure at `precision` (module docstring), else None."""
    if precision == "int8" and runtime in (TORCH_CPU, TORCH_CUDA):
        return REASON_INT8_TORCH
    if precision == "fp16" and runtime == ORT_CPU:
        return REASON_FP16_ORT_CPU
    if precision == "int8" and runtime == ORT_CUDA:
        return REASON_INT8_ORT_CUDA
    return None


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise MeasurementError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    return precision


# --- the files ONNX Runtime runs ---------------------------------------------------------------------


def is_qdq(path: str | os.PathLike[str]) -> bool:
    """Whether an ONNX file is a quantised (QDQ) graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


def _fp32_module(model: nn.Module) -> nn.Module:
    """The fp32 module behind `model`: itself, or a float copy of a half model or `HalfPrecision` wrapper."""
    from workers.engine.quantise import HalfPrecision

    inner = model.model if isinstance(model, HalfPrecision) else model
    if all(p.dtype == torch.float32 for p in inner.parameters()):
        return inner
    import copy

    return copy.deepcopy(inner).float()


def export_matches(model: nn.Module, onnx_path: str | os.PathLike[str], input_shape: Sequence[int]) -> float:
    """Max |logit difference| between `model` (fp32, eval) and its ONNX file on a fixed input.

    Raises MeasurementError when the file is not an export of this model (say the base's export
    given for a pruned variant): beyond `EXPORT_RTOL` of the largest logit.
    """
    from workers.engine.quantise import OnnxClassifier

    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, *input_shape), dtype=np.float32))
    module = _fp32_module(model)
    was_training = {m: m.training for m in module.modules()}
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    try:
        module.eval()
        with torch.inference_mode():
            expected = module(x.to(device)).float().cpu().numpy()
    finally:
        for m, flag in was_training.items():
            m.training = flag
    got = OnnxClassifier(onnx_path).predict(x)
    if got.shape != expected.shape:
        raise MeasurementError(
            f"onnx_path {onnx_path} is not an export of this model: logits of shape {got.shape}, "
            f"the module gives {expected.shape}"
        )
    diff = float(np.abs(got - expected).max())
    if not diff <= EXPORT_RTOL * max(1.0, float(np.abs(expected).max())):
        raise MeasurementError(
            f"onnx_path {onnx_path} is not an export of this model: its logits differ by {diff:.3g} "
            "(time each variant on its own export)"
        )
    return diff


def convert_fp16(fp32_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """An fp16 copy of an fp32 ONNX model (weights and activations), float32 input and output kept."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    half = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    onnx.save(half, str(out))
    return Path(out)


class _OnnxFiles:
    """The ONNX files of one variant, made on first use: the fp32 export (taken or written into a
    temporary folder) and its fp16 conversion; and whether the export was checked against the module."""

    def __init__(self, model: nn.Module | None, onnx_path: Path | None, shape: tuple[int, ...], tmp: Path):
        self.model, self.given, self.shape, self.tmp = model, onnx_path, shape, tmp
        self._fp32: Path | None = None
        self._fp16: Path | None = None
        self.max_abs_diff: float | None = None

    def fp32(self) -> Path:
        if self._fp32 is None:
            if self.given is not None:
                if self.model is not None:
                    self.max_abs_diff = export_matches(self.model, self.given, self.shape)
                self._fp32 = self.given
            else:
                from workers.engine.quantise import export_onnx

                assert self.model is not None  # checked by the caller
                self._fp32 = export_onnx(_fp32_module(self.model), self.shape, self.tmp / "fp32.onnx")
                self.max_abs_diff = export_matches(self.model, self._fp32, self.shape)
        return self._fp32

    def fp16(self) -> Path:
        if self._fp16 is None:
            self._fp16 = convert_fp16(self.fp32(), self.tmp / "fp16.onnx")
        return self._fp16


# --- timing on one runtime -----------------------------------------------------------------------------


def _torch_target(model: nn.Module, precision: str) -> nn.Module:
    from workers.engine.quantise import HalfPrecision, to_fp16

    if precision == "fp16":
        return model if isinstance(model, HalfPrecision) else to_fp16(_fp32_module(model))
    return model


def _check_fp32(model: nn.Module) -> None:
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes - {torch.float32}:
        raise MeasurementError(
            f"precision 'fp32' but the model holds {sorted(map(str, dtypes))} weights; "
            "pass precision='fp16' for a half-precision variant"
        )


class _Unsupported(Exception):
    """Raised inside a runtime's timing when it turns out it cannot run (its reason is the message)."""


def ort_bound_latency(
    path: Path, protocol: LatencyProtocol, *, provider: str, device_type: str, device_id: int = 0
) -> dict[str, Any]:
    """`measure.latency` for ONNX Runtime with input and output bound on `device_type` (IOBinding).

    On CUDA this keeps host-device copies out of the timed runs, as torch-cuda times a module
    whose input is already on the GPU. The same code runs with the CPU provider, which is how it
    is tested on a machine without a GPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = protocol.threads
    options.inter_op_num_threads = 1
    providers: list[Any] = [(provider, {"device_id": device_id}) if device_type == "cuda" else provider]
    if provider != "CPUExecutionProvider":
        providers.append(
            "CPUExecutionProvider"
        )  # ORT places shape ops there; the main provider runs the rest
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - a provider that cannot load this model gives no figure
        raise _Unsupported(f"ONNX Runtime's {provider} cannot load {path.name}: {exc}") from exc
    if session.get_providers()[0] != provider:
        # ORT falls back to the CPU with only a warning when the CUDA libraries do not load.
        raise _Unsupported(f"ONNX Runtime could not start {provider} (got {session.get_providers()})")
    input_name = session.get_inputs()[0].name
    output_name = session.get_outputs()[0].name
    result = protocol.record()
    name = torch.cuda.get_device_name(device_id) if device_type == "cuda" else cpu_model_name()
    result.update(runtime="onnxruntime", device=device_type, device_name=name)
    for batch in protocol.batch_sizes:
        x = np.random.default_rng(0).standard_normal((batch, *protocol.input_shape), dtype=np.float32)
        x_bound = ort.OrtValue.ortvalue_from_numpy(x, device_type, device_id)  # held until timed
        binding = session.io_binding()
        binding.bind_ortvalue_input(input_name, x_bound)
        binding.bind_output(output_name, device_type, device_id)
        times = time_runs(
            lambda binding=binding: session.run_with_iobinding(binding),
            protocol.warmup,
            protocol.runs,
            binding.synchronize_outputs,
        )
        del x_bound
        result["by_batch"][str(batch)] = timing_summary(times, batch)
    return result


def _measure_on(
    runtime: str,
    model: nn.Module | None,
    files: _OnnxFiles,
    qdq: Path | None,
    protocol: LatencyProtocol,
    precision: str,
) -> dict[str, Any]:
    reason = unavailable_reason(runtime) or precision_reason(runtime, precision)
    if reason is None and runtime in (TORCH_CPU, TORCH_CUDA) and model is None:
        reason = REASON_NO_MODULE
    if reason is not None:
        return unsupported(runtime, precision, reason)
    args = {
        "batch_sizes": protocol.batch_sizes,
        "warmup": protocol.warmup,
        "runs": protocol.runs,
        "threads": protocol.threads,
    }
    if runtime in (TORCH_CPU, TORCH_CUDA):
        assert model is not None
        device = "cuda" if runtime == TORCH_CUDA else "cpu"
        record = latency(_torch_target(model, precision), protocol.input_shape, device=device, **args)
        extra = {
            "library": "torch",
            "library_version": torch.__version__,
            "model_format": FORMAT_TORCH,
            "max_abs_diff_vs_torch": None,
        }
    else:
        import onnxruntime as ort

        if precision == "int8":
            path, fmt = qdq, FORMAT_ONNX_QDQ
        elif precision == "fp16":
            path, fmt = files.fp16(), FORMAT_ONNX_FP16
        else:
            path, fmt = files.fp32(), FORMAT_ONNX_FP32
        assert path is not None
        try:
            if runtime == ORT_CUDA:
                record = ort_bound_latency(
                    path,
                    protocol,
                    provider="CUDAExecutionProvider",
                    device_type="cuda",
                    device_id=torch.cuda.current_device(),
                )
            else:
                record = latency(path, protocol.input_shape, **args)
        except _Unsupported as exc:
            return unsupported(runtime, precision, str(exc))
        extra = {"library": "onnxruntime", "library_version": ort.__version__, "model_format": fmt}
        # How closely the timed file reproduces the module: for the fp32 export, checked above.
        extra["max_abs_diff_vs_torch"] = files.max_abs_diff if fmt == FORMAT_ONNX_FP32 else None
    del record["runtime"]  # "torch" / "onnxruntime": the fixed name below says runtime and device
    return {"runtime": runtime, "supported": True, "precision": precision, **record, **extra}


def latency_by_runtime(
    model: nn.Module | None,
    onnx_path: str | os.PathLike[str] | None,
    input_shape: Sequence[int],
    *,
    precision: Precision = "fp32",
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 10,
    runs: int = 50,
    threads: int | None = None,
    devices: Sequence[str] = ("cpu",),
    runtimes: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time one variant on every runtime of `devices`: {runtime name: record} in `RUNTIMES` order.

    - precision "fp32" (base, structured, unstructured): `model` is the fp32 module; `onnx_path`
      its fp32 ONNX export if the caller has one (it is checked to be this model's export), else
      the model is exported into a temporary folder. ORT times that export, torch the module.
    - "fp16": `model` is the fp32 source or its `to_fp16` copy; torch times the half copy, ORT's
      CUDA provider an fp16 conversion of the fp32 export; ORT CPU is unsupported (see module doc).
    - "int8" (int8, mixed): `onnx_path` is the QDQ file, required; torch runtimes are unsupported.
    `runtimes` narrows the runtimes timed (names from `RUNTIMES`; default: all of `devices`').
    Thread count, warm-up and runs are the same on every runtime; fewer than docs/spec.md section 6 asks
    give `meets_spec: false`.
    """
    protocol = latency_protocol(
        input_shape, batch_sizes=batch_sizes, warmup=warmup, runs=runs, threads=threads
    )
    precision = _check_precision(precision)  # type: ignore[assignment]
    wanted = runtimes_for(devices)
    if runtimes is not None:
        unknown = [rt for rt in runtimes if rt not in RUNTIMES]
        if unknown:
            raise MeasurementError(
                f"runtimes: unknown runtime(s) {unknown}; expected some of {list(RUNTIMES)}"
            )
        wanted = tuple(rt for rt in wanted if rt in runtimes)
    if model is not None and not isinstance(model, nn.Module):
        raise MeasurementError(f"model: expected a torch module or None, got {type(model).__name__}")
    path = Path(onnx_path) if onnx_path is not None else None
    if path is not None and not path.is_file():
        raise MeasurementError(f"onnx_path: {path} does not exist")
    qdq: Path | None = None
    if precision == "int8":
        if path is None:
            raise MeasurementError("onnx_path: precision 'int8' needs the variant's QDQ ONNX file")
        if not is_qdq(path):
            raise MeasurementError(
                f"onnx_path: {path} holds no QuantizeLinear/DequantizeLinear, not an int8 model"
            )
        qdq, path = path, None
    elif path is not None and is_qdq(path):
        raise MeasurementError(f"onnx_path: {path} is a quantised (QDQ) model but precision is {precision!r}")
    elif model is None and (path is None or precision == "fp16"):
        raise MeasurementError(f"model: precision {precision!r} needs the variant's torch module")
    if model is not None and precision == "fp32":
        _check_fp32(model)
    with tempfile.TemporaryDirectory(prefix="prunescape-rt-") as tmp:
        files = _OnnxFiles(model if precision != "int8" else None, path, protocol.input_shape, Path(tmp))
        return {rt: _measure_on(rt, model, files, qdq, protocol, precision) for rt in wanted}


def latency_on(
    runtime: str,
    model: nn.Module | None,
    onnx_path: str | os.PathLike[str] | None,
    input_shape: Sequence[int],
    **kwargs: Any,
) -> dict[str, Any]:
    """The record of one runtime (same arguments as `latency_by_runtime`): the bench's interleaved rounds."""
    if runtime not in RUNTIMES:
        raise MeasurementError(f"runtime: unknown runtime {runtime!r}; expected one of {list(RUNTIMES)}")
    devices = [d for d, names in RUNTIMES_BY_DEVICE.items() if runtime in names]
    kwargs.pop("devices", None)
    return latency_by_runtime(model, onnx_path, input_shape, devices=devices, runtimes=[runtime], **kwargs)[
        runtime
    ]
