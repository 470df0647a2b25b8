"""Latency comparison of a study's variants, one runtime at a time (docs/spec.md section 6).

The rule: a latency ratio is taken only between two figures of the same runtime and batch size.
A variant with no figure on a runtime gets no ratio there, whatever it has on another runtime;
the base without a figure on a runtime gives no ratio on it at all. Per runtime and batch size:

- ``latency_ratio`` = variant median / base median (< 1 is faster); ``speedup`` = its inverse.
- ``not_faster`` = latency_ratio >= 1: the variant is not faster than the base on that runtime.
- the Pareto front of (median latency, accuracy) over the variants timed there: not dominated
  when lower latency and higher accuracy are better (ties: the faster point, then the first given).
- unstructured variants carry a note: dense kernels do not skip zeros.

Input: one mapping per variant, ``{"name", "latency", "kind"?, "accuracy"?, "flops_ratio"?}``,
where ``latency`` is what the engine's ``runtimes.latency_by_runtime`` returns
(``{runtime: record}``) or a single record of the earlier shape (``{"runtime": "torch" |
"onnxruntime", "device", "by_batch", "cuda"?: {...}}``), read by :func:`latency_records`.
Output: :class:`LatencyComparison`; its ``to_dict()`` is the JSON the API serves, shape::

    {"base": "base",
     "default_runtime": "onnxruntime-cpu" | null,       # null: no variant has a figure anywhere
     "runtimes": ["onnxruntime-cpu", "torch-cpu"],      # runtimes with >= 1 figure, fixed order
     "batch_sizes": ["1", "32"],
     "by_runtime": {
       "onnxruntime-cpu": {
         "runtime": "onnxruntime-cpu",
         "base_timed": true,
         "rows": [{"variant", "kind", "batch": "1", "timed": bool, "reason": str | null,
                   "precision", "device_name", "threads", "median_ms", "p90_ms", "meets_spec",
                   "accuracy", "flops_ratio", "latency_ratio", "speedup", "not_faster",
                   "on_pareto_front", "note"}, ...],        # variants in input order, per batch
         "pareto_front": {"1": ["q8", "base"], ...},       # names by ascending latency
         "not_faster": {"1": ["sp50"], ...},
         "messages": ["sp50 is not faster than base on onnxruntime-cpu at batch 1 (latency x1.02)"]},
       ...}}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The engine's runtime names (workers.engine.runtimes.RUNTIMES; the analysis may not import the
# engine, and a test pins that the two agree). Display order; the first is the default.
RUNTIMES = ("onnxruntime-cpu", "torch-cpu", "torch-cuda", "onnxruntime-cuda")
DEFAULT_RUNTIME = RUNTIMES[0]
UNSTRUCTURED_NOTE = (
    "unstructured pruning leaves a dense model with zeros in it: dense kernels do not skip zeros, "
    "so no speedup is expected without a sparse runtime (its sparse size is the gain)"
)
# Records of the shape before runtimes had fixed names: (runtime, device type) -> name.
_LEGACY_NAMES = {
    ("torch", "cpu"): "torch-cpu",
    ("torch", "cuda"): "torch-cuda",
    ("onnxruntime", "cpu"): "onnxruntime-cpu",
    ("onnxruntime", "cuda"): "onnxruntime-cuda",
}


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _legacy_name(record: Mapping[str, Any]) -> str | None:
    device = str(record.get("device") or "cpu").split(":")[0]
    return _LEGACY_NAMES.get((str(record.get("runtime")), device))


def latency_records(stored: Any) -> dict[str, dict[str, Any]]:
    """A variant's latency as ``{runtime name: record}``, whichever shape it was stored in.

    Records whose own ``runtime`` does not match their key are dropped (a figure is never filed
    under another runtime's name). Order: ``RUNTIMES``, then any other name alphabetically.
    """
    if not isinstance(stored, Mapping):
        return {}
    found: dict[str, dict[str, Any]] = {}
    if "by_batch" in stored or "batches" in stored:
        # The earlier single record: one runtime at the top level, torch on CUDA nested under "cuda".
        for record in (stored, stored.get("cuda")):
            if isinstance(record, Mapping):
                name = _legacy_name(record)
                if name is not None:
                    legacy = {k: v for k, v in record.items() if k not in ("cuda", "batches")}
                    legacy.setdefault("by_batch", record.get("batches") or {})
                    found[name] = {**legacy, "runtime": name, "supported": True}
    else:
        for name, record in stored.items():
            if isinstance(record, Mapping) and record.get("runtime") == name:
                found[str(name)] = dict(record)
    order = {name: i for i, name in enumerate(RUNTIMES)}
    return dict(sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


@dataclass(frozen=True)
class LatencyRow:
    """One variant at one batch size on one runtime."""

    variant: str
    kind: str | None
    batch: str
    timed: bool
    reason: str | None  # why there is no figure (timed false)
    precision: str | None
    device_name: str | None
    threads: int | None
    median_ms: float | None
    p90_ms: float | None
    meets_spec: bool | None
    accuracy: float | None
    flops_ratio: float | None
    latency_ratio: float | None  # median / the base's median on this runtime and batch
    speedup: float | None  # 1 / latency_ratio
    not_faster: bool | None  # latency_ratio >= 1; None without a ratio
    on_pareto_front: bool
    note: str | None


@dataclass(frozen=True)
class RuntimeLatency:
    runtime: str
    base_timed: bool
    rows: list[LatencyRow]
    pareto_front: dict[str, list[str]]
    not_faster: dict[str, list[str]]
    messages: list[str]


@dataclass(frozen=True)
class LatencyComparison:
    base: str
    default_runtime: str | None
    runtimes: list[str]
    batch_sizes: list[str]
    by_runtime: dict[str, RuntimeLatency]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def pareto_names(points: Iterable[tuple[float, float, str]]) -> list[str]:
    """Names of the (latency, accuracy, name) points not dominated, by ascending latency."""
    front: list[str] = []
    best = -math.inf
    for _latency_ms, accuracy, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if accuracy > best:
            front.append(name)
            best = accuracy
    return front


def _timing(record: Mapping[str, Any] | None, batch: str) -> Mapping[str, Any] | None:
    if not record or record.get("supported") is False:
        return None
    timing = (record.get("by_batch") or {}).get(batch)
    return timing if isinstance(timing, Mapping) and _finite(timing.get("median_ms")) else None


def _runtime_rows(
    runtime: str,
    variants: Sequence[Mapping[str, Any]],
    records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    base: str,
    batches: Sequence[str],
) -> RuntimeLatency:
    base_record = records.get(base, {}).get(runtime)
    rows: list[LatencyRow] = []
    fronts: dict[str, list[str]] = {}
    slower: dict[str, list[str]] = {}
    messages: list[str] = []
    for batch in batches:
        base_timing = _timing(base_record, batch)
        base_ms = _finite(base_timing.get("median_ms")) if base_timing else None
        accuracies = {str(v["name"]): _finite(v.get("accuracy")) for v in variants}
        timed_points = []
        for v in variants:
            name = str(v["name"])
            timing = _timing(records[name].get(runtime), batch)
            accuracy = accuracies[name]
            if timing is not None and accuracy is not None:
                timed_points.append((float(timing["median_ms"]), accuracy, name))
        front = pareto_names(timed_points)
        fronts[batch] = front
        slower[batch] = []
        for v in variants:
            name = str(v["name"])
            record = records[name].get(runtime)
            timing = _timing(record, batch)
            median = _finite(timing.get("median_ms")) if timing else None
            ratio = median / base_ms if median is not None and base_ms and name != base else None
            if timing is None:
                reason = (record or {}).get("reason") or (
                    f"not timed at batch {batch}" if record else f"not timed on {runtime}"
                )
            elif ratio is None and name != base:
                reason = f"{base} has no figure on {runtime} at batch {batch}: no ratio"
            else:
                reason = None
            not_faster = None if ratio is None else ratio >= 1.0
            if not_faster:
                slower[batch].append(name)
                messages.append(
                    f"{name} is not faster than {base} on {runtime} at batch {batch} (latency x{ratio:.2f})"
                )
            rows.append(
                LatencyRow(
                    variant=name,
                    kind=v.get("kind"),
                    batch=batch,
                    timed=timing is not None,
                    reason=reason,
                    precision=(record or {}).get("precision"),
                    device_name=(record or {}).get("device_name") if timing else None,
                    threads=(record or {}).get("threads") if timing else None,
                    median_ms=median,
                    p90_ms=_finite(timing.get("p90_ms")) if timing else None,
                    meets_spec=bool(record.get("meets_spec")) if timing and record else None,
                    accuracy=accuracies[name],
                    flops_ratio=_finite(v.get("flops_ratio")),
                    latency_ratio=ratio,
                    speedup=1.0 / ratio if ratio else None,
                    not_faster=not_faster,
                    on_pareto_front=name in front,
                    note=UNSTRUCTURED_NOTE if v.get("kind") == "unstructured" else None,
                )
            )
    return RuntimeLatency(
        runtime=runtime,
        base_timed=any(_timing(base_record, b) for b in batches),
        rows=rows,
        pareto_front=fronts,
        not_faster=slower,
        messages=messages,
    )


def latency_comparison(variants: Sequence[Mapping[str, Any]], base: str) -> LatencyComparison:
    """Per-runtime latency table, ratios to `base`, Pareto fronts and "not faster" flags (module doc)."""
    names = [str(v["name"]) for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variants: names must be unique, got {names}")
    records = {str(v["name"]): latency_records(v.get("latency")) for v in variants}
    timed_runtimes = {
        runtime
        for by_runtime in records.values()
        for runtime, record in by_runtime.items()
        if record.get("supported") is not False
        and any(_timing(record, b) for b in record.get("by_batch") or {})
    }
    order = {name: i for i, name in enumerate(RUNTIMES)}
    runtimes = sorted(timed_runtimes, key=lambda name: (order.get(name, len(order)), name))
    batches = sorted(
        {
            str(batch)
            for by_runtime in records.values()
            for record in by_runtime.values()
            if record.get("supported") is not False
            for batch in (record.get("by_batch") or {})
        },
        key=lambda b: (int(b) if b.isdigit() else math.inf, b),
    )
    by_runtime = {rt: _runtime_rows(rt, variants, records, base, batches) for rt in runtimes}
    default = DEFAULT_RUNTIME if DEFAULT_RUNTIME in by_runtime else (runtimes[0] if runtimes else None)
    return LatencyComparison(
        base=base, default_runtime=default, runtimes=runtimes, batch_sizes=batches, by_runtime=by_runtime
    )
