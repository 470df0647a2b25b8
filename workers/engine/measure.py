"""Measurements of a model (docs/spec.md section 6): parameters, size, latency, weight histograms, environment.

Latency protocol: a fixed thread count (recorded), >= 10 warm-up and >= 50 timed runs per batch
size, median and p90 in milliseconds per batch, `torch.cuda.synchronize` around every timed CUDA
run. Smaller `warmup`/`runs` are allowed (quick checks, tests) but the result then says
`meets_spec: false`, so such a figure is never shown as a docs/spec.md measurement. `latency` times one
runtime per call; `workers.engine.runtimes.latency_by_runtime` times a variant on every runtime
under fixed names, which is what a variant's measurement stores.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workers.engine.errors import EngineError

SPEC_MIN_WARMUP = 10
SPEC_MIN_RUNS = 50
CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


class MeasurementError(EngineError):
    """A measurement asked for with arguments that cannot work (shape, runs, file)."""


def _effective_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Each parameter once; where a torch.nn.utils.prune mask is attached, the masked weight."""
    tensors = []
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is None:
                continue
            if name.endswith("_orig") and hasattr(module, name[: -len("_orig")]):
                tensors.append(getattr(module, name[: -len("_orig")]))
            else:
                tensors.append(param)
    return tensors


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, nonzero) parameters; shared parameters count once."""
    seen: set[int] = set()
    total = nonzero = 0
    for tensor in _effective_tensors(model):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor.detach()).item())
    return total, nonzero


def compression_rate(base_params: int, params: int) -> float:
    """How many times smaller: base parameters / parameters (nonzero ones for unstructured pruning)."""
    if params <= 0:
        raise MeasurementError(f"compression_rate: params must be > 0, got {params}")
    return base_params / params


def file_size_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes on disk, including an ONNX external-data file next to the model if there is one."""
    file = Path(path)
    if not file.is_file():
        raise MeasurementError(f"file_size_bytes: {file} does not exist")
    size = file.stat().st_size
    external = file.with_name(file.name + ".data")
    if file.suffix == ".onnx" and external.is_file():
        size += external.stat().st_size
    return size


# --- latency -------------------------------------------------------------------------------------

# Upper bounds on the protocol: a caller's numbers are bounded before anything is allocated from them.
MAX_BATCH_SIZE = 4096
MAX_WARMUP = 10_000
MAX_RUNS = 100_000
MAX_THREADS = 1024


@dataclass(frozen=True)
class LatencyProtocol:
    """How one latency figure is taken: input shape, batch sizes, warm-up and timed runs, threads."""

    input_shape: tuple[int, int, int]
    batch_sizes: tuple[int, ...]
    warmup: int
    runs: int
    threads: int

    @property
    def meets_spec(self) -> bool:
        return self.warmup >= SPEC_MIN_WARMUP and self.runs >= SPEC_MIN_RUNS

    def record(self) -> dict[str, Any]:
        """The protocol part of a latency record; `by_batch` is filled by the caller."""
        return {
            "warmup": self.warmup,
            "runs": self.runs,
            "meets_spec": self.meets_spec,
            "threads": self.threads,
            "input_shape": list(self.input_shape),
            "by_batch": {},
            # Other work on the machine (a training run beside this one) inflates latency; the
            # 1-minute load average at the start lets a reader judge a surprising figure.
            "load_average_1m": _load_average(),
        }


def latency_protocol(
    input_shape: Sequence[int],
    *,
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 10,
    runs: int = 50,
    threads: int | None = None,
) -> LatencyProtocol:
    """Check and bound a latency protocol; `threads` defaults to torch's current thread count."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise MeasurementError(f"latency: input_shape must be (C, H, W), got {tuple(input_shape)}")
    batches = tuple(int(b) for b in batch_sizes)
    if warmup < 0 or runs < 1 or not batches or min(batches) < 1:
        raise MeasurementError(
            f"latency: need warmup >= 0, runs >= 1 and batch sizes >= 1, got {warmup}, {runs}, {batch_sizes}"
        )
    if warmup > MAX_WARMUP or runs > MAX_RUNS or max(batches) > MAX_BATCH_SIZE:
        raise MeasurementError(
            f"latency: warmup <= {MAX_WARMUP}, runs <= {MAX_RUNS} and batch sizes <= {MAX_BATCH_SIZE}, "
            f"got {warmup}, {runs}, {batch_sizes}"
        )
    n_threads = int(threads) if threads is not None else torch.get_num_threads()
    if not 1 <= n_threads <= MAX_THREADS:
        raise MeasurementError(f"latency: threads must be in [1, {MAX_THREADS}], got {threads}")
    return LatencyProtocol(shape, batches, int(warmup), int(runs), n_threads)  # type: ignore[arg-type]


def time_runs(run: Callable[[], Any], warmup: int, runs: int, sync: Callable[[], None]) -> list[float]:
    """Wall time in ms of `runs` calls of `run` after `warmup` untimed ones; `sync` ends each timed call."""
    for _ in range(warmup):
        run()
    sync()
    times_ms = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        sync()
        times_ms.append((time.perf_counter() - start) * 1000.0)
    return times_ms


def timing_summary(times_ms: list[float], batch_size: int) -> dict[str, float]:
    """{median_ms, p90_ms, min_ms, images_per_s} of one batch size's timed runs."""
    median = statistics.median(times_ms)
    return {
        "median_ms": median,
        "p90_ms": float(np.percentile(times_ms, 90)),
        "min_ms": min(times_ms),
        "images_per_s": batch_size * 1000.0 / median if median > 0 else float("inf"),
    }


def _is_onnx(model: object) -> bool:
    from workers.engine.quantise import OnnxClassifier

    return isinstance(model, OnnxClassifier) or (
        isinstance(model, str | os.PathLike) and str(model).endswith(".onnx")
    )


def latency(
    model_or_onnx: nn.Module | str | os.PathLike[str] | Any,
    input_shape: Sequence[int],
    *,
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 10,
    runs: int = 50,
    threads: int | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Latency per batch size of a torch module (on `device`, default CPU) or an ONNX model (ORT CPU).

    Returns {"runtime", "device", "device_name", "threads", "warmup", "runs", "meets_spec",
    "input_shape", "by_batch": {"1": {"median_ms", "p90_ms", "min_ms", "images_per_s"}, ...},
    "load_average_1m"}, with `runtime` "torch" or "onnxruntime". `threads` defaults to torch's
    current thread count for both runtimes, so they compare. One runtime per call: to time one
    variant on every runtime under its runtime's fixed name, use `runtimes.latency_by_runtime`.
    """
    protocol = latency_protocol(
        input_shape, batch_sizes=batch_sizes, warmup=warmup, runs=runs, threads=threads
    )
    shape = protocol.input_shape
    result = protocol.record()

    if _is_onnx(model_or_onnx):
        from workers.engine.quantise import OnnxClassifier

        path = model_or_onnx.path if isinstance(model_or_onnx, OnnxClassifier) else model_or_onnx
        classifier = OnnxClassifier(path, threads=protocol.threads)
        result.update(runtime="onnxruntime", device="cpu", device_name=cpu_model_name())
        for batch in protocol.batch_sizes:
            x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)
            times = time_runs(lambda x=x: classifier.predict(x), warmup, runs, lambda: None)
            result["by_batch"][str(batch)] = timing_summary(times, batch)
        return result

    if not isinstance(model_or_onnx, nn.Module):
        raise MeasurementError(
            f"latency: expected a torch module or an .onnx path, got {type(model_or_onnx).__name__}"
        )
    model = model_or_onnx
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    result.update(
        runtime="torch",
        device=str(dev),
        device_name=torch.cuda.get_device_name(dev) if cuda else cpu_model_name(),
    )
    was_training = {m: m.training for m in model.modules()}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(protocol.threads)
    original_device = next((p.device for p in model.parameters()), dev)
    try:
        model.to(dev).eval()
        with torch.inference_mode():
            for batch in protocol.batch_sizes:
                x = torch.randn((batch, *shape), device=dev)
                times = time_runs(lambda x=x: model(x), warmup, runs, sync)
                result["by_batch"][str(batch)] = timing_summary(times, batch)
    finally:
        torch.set_num_threads(previous_threads)
        model.to(original_device)
        for module, flag in was_training.items():
            module.training = flag
    return result


# --- weight histograms ---------------------------------------------------------------------------


def _histogram(values: np.ndarray, bins: int) -> dict[str, Any]:
    counts, edges = np.histogram(values.ravel(), bins=bins)
    return {
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "total": int(values.size),
        "zeros": int((values == 0).sum()),
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def weight_histograms(model: nn.Module | str | os.PathLike[str], bins: int = 40) -> dict[str, dict[str, Any]]:
    """Per conv/linear layer: histogram of its weights {edges, counts, total, zeros}.

    Accepts an ONNX file too: int8 weights are dequantised (q - zero_point) * scale so a layer
    compares directly with its fp32 self. ONNX layers are named like the torch modules when the
    exporter kept the names (ours does); note that exported convs have BatchNorm folded in.
    """
    if bins < 1:
        raise MeasurementError(f"weight_histograms: bins must be >= 1, got {bins}")
    if isinstance(model, nn.Module):
        layers = {}
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d | nn.Linear | nn.Conv1d | nn.Conv3d):
                weight = module.weight.detach().to("cpu", torch.float32).numpy()
                layers[name] = _histogram(weight, bins)
        return layers
    import onnx

    from workers.engine.quantise import onnx_weights

    path = Path(model)
    if not path.is_file():
        raise MeasurementError(f"weight_histograms: {path} does not exist")
    return {w.layer: _histogram(w.dequantised(), bins) for w in onnx_weights(onnx.load(str(path)))}


# --- environment ---------------------------------------------------------------------------------


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def cpu_model_name() -> str:
    """The CPU's model name as the OS reports it (what a CPU latency figure ran on)."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def environment_info() -> dict[str, Any]:
    """What a latency or accuracy figure depends on: library versions, CPU, threads, GPU."""
    import onnxruntime
    import torchvision

    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnxruntime": onnxruntime.__version__,
        "platform": platform.platform(),
        "cpu_model": cpu_model_name(),
        "cpu_flags": {flag: flag in flags for flag in CPU_FLAGS_OF_INTEREST},
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cuda" if cuda else "cpu",
        "device_name": torch.cuda.get_device_name(0) if cuda else cpu_model_name(),
        "cuda_version": torch.version.cuda if cuda else None,
    }
