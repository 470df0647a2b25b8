"""Post-training quantisation (docs/spec.md section 4): ONNX export, int8 / mixed with ONNX Runtime, fp16.

Choices and why:
- Export uses torch's `torch.export`-based exporter (`dynamo=True`, opset 20). On torch 2.14 the
  legacy TorchScript exporter is deprecated and leaves Identity/Shape/Gather clutter around the
  option-A shortcuts of the CIFAR ResNets; the new one gives a clean Conv/Relu/Add graph with
  BatchNorm already folded into the convs, and keeps weight names (`conv1.weight`), so layers can be
  matched before and after int8. It costs seconds per model (13 s for ResNet-56 on one core).
- int8 = ONNX Runtime static PTQ (`quantize_static`): QDQ format, per-channel symmetric int8
  weights, per-tensor asymmetric uint8 activations, MinMax calibration over fixed training
  batches, after `quant_pre_process` (shape inference + graph clean-up). `torch.ao.quantization`
  is deprecated, so the runtime that executes the model (ORT on CPU) also measures its accuracy.
- mixed = the same with the classifier (the graph's last Gemm/MatMul) in `nodes_to_exclude`.
- fp16 = torch half precision (weights and activations). Torch runs half convs on CPU and GPU;
  ORT's CPU provider has few fp16 kernels and would insert casts back to fp32, which would not
  measure fp16 arithmetic. `to_fp16` returns a module taking and returning float32 tensors so
  the usual `training.evaluate` and `measure.latency` work unchanged.
- Unstructured pruning and int8 combine in both orders: prune-then-quantise prunes the torch
  model (zeros quantise to exactly 0 with symmetric weights and stay 0 through BN folding) and
  quantises it; quantise-then-prune quantises first and then zeroes the smallest-magnitude
  dequantised int8 weights (|q - zero_point| * scale) in the ONNX initializers, so what is
  pruned is exactly what the runtime executes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor, nn

from workers.engine.errors import QuantisationError

if TYPE_CHECKING:
    import onnx

    from workers.engine.data import Data

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 20
# Ops whose input 1 is a weight tensor we quantise, prune and histogram.
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")

Order = Literal["prune_then_quantise", "quantise_then_prune"]


def _as_path(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _check_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise QuantisationError(f"input_shape must be (C, H, W) positive integers, got {tuple(input_shape)}")
    return shape  # type: ignore[return-value]


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | os.PathLike[str]) -> Path:
    """Write `model` (eval mode, fp32, CPU) as a single-file ONNX model with a dynamic batch axis.

    The caller's model is not touched: a CPU copy is exported. Input `input` (N, C, H, W),
    output `logits` (N, classes).
    """
    shape = _check_shape(input_shape)
    out = _as_path(path)
    exported = copy.deepcopy(model).to("cpu", torch.float32).eval()
    # Batch 2, not 1: torch.export specialises a dimension whose example size is 0 or 1.
    example = torch.zeros((2, *shape))
    try:
        # The exporter reports progress on stdout even when verbose=False in some versions;
        # `--json` CLI output must stay clean.
        with contextlib.redirect_stdout(io.StringIO()), _quiet_exporter_logs(), torch.no_grad():
            torch.onnx.export(
                exported,
                (example,),
                str(out),
                dynamo=True,
                verbose=False,
                external_data=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
    except Exception as exc:  # noqa: BLE001 - every exporter failure is the same user-facing error
        raise QuantisationError(f"ONNX export of {type(model).__name__} to {out} failed: {exc}") from exc
    return out


# The dynamo exporter's optimiser passes log every rewrite at INFO; a worker logging at INFO would
# print dozens of lines per quantised run.
_EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class _BatchReader:
    """CalibrationDataReader over fixed CPU batches (ORT duck-types the reader: get_next/rewind)."""

    def __init__(self, batches: Sequence[Tensor | np.ndarray]) -> None:
        self._arrays = [np.ascontiguousarray(_to_numpy(b)) for b in batches]
        self._iter: Iterator[np.ndarray] = iter(self._arrays)

    def get_next(self) -> dict[str, np.ndarray] | None:
        array = next(self._iter, None)
        return None if array is None else {INPUT_NAME: array}

    def rewind(self) -> None:
        self._iter = iter(self._arrays)


def _to_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def classifier_node(model_proto: onnx.ModelProto) -> str:
    """Name of the classifier: the last Gemm/MatMul of the (topologically sorted) graph."""
    names = [n.name for n in model_proto.graph.node if n.op_type in ("Gemm", "MatMul")]
    if not names:
        raise QuantisationError("mixed precision: the model has no Gemm/MatMul classifier to keep in fp32")
    return names[-1]


def quantise_int8(
    model: nn.Module,
    calib_batches: Sequence[Tensor | np.ndarray],
    path: str | os.PathLike[str],
    *,
    mixed: bool = False,
) -> Path:
    """Static int8 PTQ of `model` into a QDQ ONNX file at `path`; returns the path.

    `calib_batches` are fixed, normalised training batches (N, C, H, W); their shape gives the
    input shape. `mixed=True` keeps the classifier in fp32.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calib_batches) == 0:
        raise QuantisationError("calib_batches: need at least one calibration batch, got none")
    first = _to_numpy(calib_batches[0])
    if first.ndim != 4:
        raise QuantisationError(f"calib_batches: expected (N, C, H, W) batches, got shape {first.shape}")
    out = _as_path(path)
    with tempfile.TemporaryDirectory(prefix="prunescape-q-") as tmp:
        fp32_path = export_onnx(model, first.shape[1:], Path(tmp) / "fp32.onnx")
        pre_path = Path(tmp) / "pre.onnx"
        try:
            quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=False)
            exclude = [classifier_node(onnx.load(str(pre_path)))] if mixed else []
            quantize_static(
                str(pre_path),
                str(out),
                _BatchReader(calib_batches),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=exclude,
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        except QuantisationError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise QuantisationError(
                f"int8 quantisation of {type(model).__name__} to {out} failed: {exc}"
            ) from exc
    return out


class HalfPrecision(nn.Module):
    """A half-precision copy of a model behind a float32 interface (casts in, computes fp16, casts out)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).half().eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.half()).float()


def to_fp16(model: nn.Module) -> HalfPrecision:
    """fp16 weights and activations; evaluate/measure it like any float32 module (see module doc)."""
    return HalfPrecision(model)


def _topk_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    k = min(5, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    hits = top == labels[:, None]
    return int(hits[:, 0].sum()), int(hits.any(axis=1).sum())


class OnnxClassifier:
    """An ONNX classifier run by ONNX Runtime on CPU: the runtime that executes int8 measures it."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise QuantisationError(f"ONNX model {self.path} does not exist")
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise QuantisationError(f"threads must be >= 1, got {threads}")
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001
            raise QuantisationError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, x: Tensor | np.ndarray) -> np.ndarray:
        """Logits (N, classes) as float32."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(_to_numpy(x))})[0]

    def evaluate(self, data: Data, batch_size: int = 1000) -> tuple[float, float]:
        """(top1, top5) in percent over the full validation set."""
        correct1 = correct5 = seen = 0
        for x, y in data.val_batches(batch_size, device=torch.device("cpu")):
            c1, c5 = _topk_correct(self.predict(x), y.numpy())
            correct1, correct5, seen = correct1 + c1, correct5 + c5, seen + len(y)
        if seen == 0:
            raise QuantisationError("evaluate: the validation set is empty")
        return 100.0 * correct1 / seen, 100.0 * correct5 / seen


# --- int8 weights inside a QDQ graph -------------------------------------------------------------


@dataclass
class QuantisedWeight:
    """One conv/linear weight of an ONNX graph: int8 + scale (QDQ) or plain float."""

    layer: str  # torch module name when the exporter kept it (`conv1`), else the node name
    initializer: str
    values: np.ndarray  # stored values (int8 for QDQ, float for plain)
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    axis: int

    def dequantised(self) -> np.ndarray:
        if self.scale is None:
            return self.values.astype(np.float32)
        shape = [1] * self.values.ndim
        if self.scale.size > 1:
            shape[self.axis] = -1
        scale = self.scale.reshape(shape).astype(np.float32)
        zero = 0 if self.zero_point is None else self.zero_point.reshape(shape).astype(np.int32)
        return (self.values.astype(np.int32) - zero).astype(np.float32) * scale


def _layer_name(initializer: str, node_name: str) -> str:
    for suffix in ("_quantized", ".weight"):
        initializer = initializer.removesuffix(suffix)
    return initializer if not initializer.startswith(("onnx::", "val_")) else node_name


def onnx_weights(model_proto: onnx.ModelProto) -> list[QuantisedWeight]:
    """Weights (input 1) of every Conv/Gemm/MatMul, following a DequantizeLinear when present."""
    from onnx import numpy_helper

    graph = model_proto.graph
    inits = {i.name: i for i in graph.initializer}
    dequant = {n.output[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    weights = []
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        source = node.input[1]
        if source in dequant:
            dq = dequant[source]
            if dq.input[0] not in inits:
                continue
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            zero = numpy_helper.to_array(inits[dq.input[2]]) if len(dq.input) > 2 and dq.input[2] else None
            weights.append(
                QuantisedWeight(
                    layer=_layer_name(dq.input[0], node.name),
                    initializer=dq.input[0],
                    values=numpy_helper.to_array(inits[dq.input[0]]),
                    scale=numpy_helper.to_array(inits[dq.input[1]]),
                    zero_point=zero,
                    axis=axis,
                )
            )
        elif source in inits:
            weights.append(
                QuantisedWeight(
                    layer=_layer_name(source, node.name),
                    initializer=source,
                    values=numpy_helper.to_array(inits[source]),
                    scale=None,
                    zero_point=None,
                    axis=0,
                )
            )
    return weights


@dataclass
class OnnxPruneResult:
    path: Path
    sparsity: float  # zero weights / prunable weights, over the int8 conv/linear weights
    zero_weights: int
    prunable_weights: int


def onnx_weight_sparsity(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(zero weights, weights) over the conv/linear weights of an ONNX model, as the runtime sees them."""
    import onnx

    weights = onnx_weights(onnx.load(str(path)))
    zero = sum(int((w.dequantised() == 0).sum()) for w in weights)
    return zero, sum(w.values.size for w in weights)


def prune_quantised(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    amount: float,
    scope: Literal["layer", "global"] = "layer",
) -> OnnxPruneResult:
    """Quantise-then-prune: zero the smallest |dequantised| int8 weights of a QDQ model.

    Only quantised weights (those behind a DequantizeLinear) are pruned; a mixed model's fp32
    classifier stays whole, as does any fp32 layer. Setting q = zero_point makes the weight exactly 0.
    """
    import onnx
    from onnx import numpy_helper

    if not 0 <= amount < 1:
        raise QuantisationError(f"amount must be in [0, 1), got {amount}")
    if scope not in ("layer", "global"):
        raise QuantisationError(f"scope must be 'layer' or 'global', got {scope!r}")
    model_proto = onnx.load(str(src))
    weights = [w for w in onnx_weights(model_proto) if w.scale is not None]
    if not weights:
        raise QuantisationError(f"{src} has no int8 weights to prune; quantise it first")
    magnitudes = [np.abs(w.dequantised()) for w in weights]
    if scope == "global":
        everything = np.concatenate([m.ravel() for m in magnitudes])
        n_prune = round(amount * everything.size)
        # Rank positions, not values, so ties at the threshold cannot prune more than asked.
        order = np.argsort(everything, kind="stable")[:n_prune]
        flat_mask = np.zeros(everything.size, dtype=bool)
        flat_mask[order] = True
        masks, start = [], 0
        for m in magnitudes:
            masks.append(flat_mask[start : start + m.size].reshape(m.shape))
            start += m.size
    else:
        masks = []
        for m in magnitudes:
            mask = np.zeros(m.size, dtype=bool)
            mask[np.argsort(m.ravel(), kind="stable")[: round(amount * m.size)]] = True
            masks.append(mask.reshape(m.shape))
    inits = {i.name: i for i in model_proto.graph.initializer}
    for w, mask in zip(weights, masks, strict=True):
        values = w.values.copy()
        if w.zero_point is None:
            fill = np.zeros_like(values)
        else:
            shape = [1] * values.ndim
            if w.zero_point.size > 1:
                shape[w.axis] = -1
            fill = np.broadcast_to(w.zero_point.reshape(shape), values.shape).astype(values.dtype)
        values[mask] = fill[mask]
        inits[w.initializer].CopyFrom(numpy_helper.from_array(values, w.initializer))
    out = _as_path(dst)
    onnx.save(model_proto, str(out))
    zero, total = onnx_weight_sparsity(out)
    return OnnxPruneResult(out, zero / total, zero, total)


def prune_and_quantise(
    model: nn.Module,
    calib_batches: Sequence[Tensor | np.ndarray],
    path: str | os.PathLike[str],
    *,
    amount: float,
    scope: Literal["layer", "global"] = "layer",
    order: Order = "prune_then_quantise",
) -> OnnxPruneResult:
    """Unstructured pruning combined with int8 in either order; sparsity is read back from the file."""
    if order == "prune_then_quantise":
        from workers.engine.pruning import prune_unstructured

        # prune_unstructured prunes a copy; the caller's model is untouched.
        pruned = prune_unstructured(model, amount=amount, scope=scope, permanent=True).model
        out = quantise_int8(pruned, calib_batches, path)
        zero, total = onnx_weight_sparsity(out)
        return OnnxPruneResult(out, zero / total, zero, total)
    if order == "quantise_then_prune":
        out = _as_path(path)
        with tempfile.TemporaryDirectory(prefix="prunescape-qp-") as tmp:
            dense = quantise_int8(model, calib_batches, Path(tmp) / "int8.onnx")
            return prune_quantised(dense, out, amount=amount, scope=scope)
    raise QuantisationError(f"order must be 'prune_then_quantise' or 'quantise_then_prune', got {order!r}")
