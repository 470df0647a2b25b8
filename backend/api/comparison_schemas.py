"""Response models of the comparisons: one study's variants side by side (GET /studies/{id}/compare,
with latency per runtime and the within-runtime ratios) and studies side by side (GET /compare)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RUNTIME_NAMES = "`onnxruntime-cpu` | `torch-cpu` | `torch-cuda` | `onnxruntime-cuda`"


class BatchTiming(BaseModel):
    """One batch size's timed runs on one runtime."""

    median_ms: float | None = Field(description="median wall time of one batch, ms")
    p90_ms: float | None = Field(None, description="90th percentile, ms")
    min_ms: float | None = Field(None, description="fastest timed run, ms")
    images_per_s: float | None = Field(None, description="batch size * 1000 / median_ms")


class RuntimeRecord(BaseModel):
    """A variant's latency on one runtime, as its measure run stored it
    (`workers.engine.runtimes.latency_by_runtime`). `supported: false` records hold only
    `runtime`, `supported`, `precision` and `reason`: that runtime gives no figure for this variant."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    runtime: str = Field(description=f"the runtime's fixed name: {RUNTIME_NAMES}")
    supported: bool = Field(description="false: no figure on this runtime, `reason` says why")
    precision: str | None = Field(None, description="what was timed: `fp32` | `fp16` | `int8`")
    reason: str | None = Field(None, description="why this runtime gives no figure (supported false)")
    device: str | None = Field(None, description="`cpu` | `cuda`")
    device_name: str | None = Field(None, description="CPU model or GPU name")
    threads: int | None = Field(None, description="intra-op threads, the same on every runtime")
    warmup: int | None = Field(None, description="untimed runs before the timed ones")
    runs: int | None = Field(None, description="timed runs per batch size")
    meets_spec: bool | None = Field(
        None,
        description="warm-up >= 10 and runs >= 50 (docs/spec.md section 6); false: a quick figure, not a measurement",
    )
    input_shape: list[int] | None = Field(None, description="C, H, W of one image")
    by_batch: dict[str, BatchTiming] | None = Field(None, description="batch size (as a string) -> timing")
    load_average_1m: float | None = Field(None, description="machine load when timing began")
    library: str | None = Field(None, description="`torch` | `onnxruntime`")
    library_version: str | None = None
    model_format: str | None = Field(
        None, description="what the runtime ran: `torch` | `onnx-fp32` | `onnx-fp16` | `onnx-qdq`"
    )
    max_abs_diff_vs_torch: float | None = Field(
        None, description="largest logit difference of an `onnx-fp32` export from its module (else null)"
    )


class LatencyRow(BaseModel):
    """One variant at one batch size on one runtime, its ratio taken to the base on that runtime only."""

    variant: str
    kind: str | None
    batch: str = Field(description="batch size, as a string")
    timed: bool = Field(description="this variant has a figure on this runtime at this batch size")
    reason: str | None = Field(
        description="why there is no figure, or no ratio (the base has no figure here); null otherwise"
    )
    precision: str | None = Field(description="`fp32` | `fp16` | `int8` as timed")
    device_name: str | None
    threads: int | None
    median_ms: float | None
    p90_ms: float | None
    meets_spec: bool | None = Field(description="the figure follows the protocol of docs/spec.md section 6")
    accuracy: float | None = Field(description="the variant's best top-1 (the row's `best_top1`)")
    flops_ratio: float | None = Field(
        description="FLOPs / base FLOPs (the row's `flops_kept`), beside `latency_ratio`: what the FLOPs "
        "promise and what this runtime delivers"
    )
    latency_ratio: float | None = Field(
        description="median_ms / the base's median_ms on this same runtime and batch size (< 1: faster); "
        "null for the base, or when either has no figure here"
    )
    speedup: float | None = Field(description="1 / latency_ratio")
    not_faster: bool | None = Field(
        description="latency_ratio >= 1: not faster than the base on this runtime; null without a ratio"
    )
    on_pareto_front: bool = Field(
        description="not dominated in (median_ms lower, accuracy higher) among this runtime's timed variants"
    )
    note: str | None = Field(
        description="for unstructured variants: dense kernels do not skip zeros (see `size_sparse_bytes`)"
    )


class RuntimeLatency(BaseModel):
    runtime: str = Field(description=RUNTIME_NAMES)
    base_timed: bool = Field(description="the base has a figure here; false: no ratio on this runtime")
    rows: list[LatencyRow] = Field(description="per batch size, the variants in the study's order")
    pareto_front: dict[str, list[str]] = Field(
        description="batch size -> variant names on this runtime's accuracy-vs-latency front, by ascending latency"
    )
    not_faster: dict[str, list[str]] = Field(
        description="batch size -> variants not faster than the base on this runtime"
    )
    messages: list[str] = Field(
        description="one sentence per variant not faster than the base, naming the runtime"
    )


class LatencyComparison(BaseModel):
    """Latency of the study's variants, one runtime at a time (`backend.analysis.latency`): a
    ratio is only ever taken between two figures of the same runtime and batch size."""

    base: str = Field(description="the variant ratios are taken to")
    default_runtime: str | None = Field(
        description="the runtime a chart shows first: `onnxruntime-cpu` when present, else the first of "
        "`runtimes`; null when no variant has a figure yet"
    )
    runtimes: list[str] = Field(
        description=f"runtimes where some variant has a figure, in the order {RUNTIME_NAMES}"
    )
    batch_sizes: list[str] = Field(description="batch sizes with a figure somewhere, ascending")
    by_runtime: dict[str, RuntimeLatency] = Field(description="runtime name -> its table, front and flags")


class CompareRow(BaseModel):
    name: str
    kind: str
    params: int | None
    params_nonzero: int | None
    compression_rate: float | None = Field(description="base params / this variant's non-zero params")
    flops: int | None
    flops_kept: float | None = Field(description="this variant's FLOPs / base FLOPs (measured)")
    flops_ratio_target: float | None
    flops_ratio_achieved: float | None
    size_bytes: int | None
    size_sparse_bytes: int | None
    size_mb: float | None = Field(description="size_bytes / 1e6")
    latency: dict[str, RuntimeRecord] | None = Field(
        description="the variant's latency as measured, one record per runtime name (`onnxruntime-cpu`, "
        "`torch-cpu`, `torch-cuda`, `onnxruntime-cuda`), each holding its own `runtime`; null before "
        "its measure run. Ratios between variants are in the response's `latency` section, never here"
    )
    best_top1: float | None = Field(
        description="the analysis' best: the highest seed-mean top-1 over the grid (ties: smallest lr, then wd)"
    )
    best_top1_std: float | None = Field(
        description="sample std over the seeds at that point (null: one seed)"
    )
    best_top1_n: int | None = Field(description="seeds at that point")
    best_top5: float | None = Field(description="the analysis' best seed-mean top-5 (its own argmax)")
    best_lr: float | None = Field(description="learning rate of the best top-1 point")
    best_wd: float | None = Field(description="weight decay of the best top-1 point")
    finished_runs: int


class Compare(BaseModel):
    study_id: int
    base: str
    flops_convention: str
    variants: list[CompareRow]
    latency: LatencyComparison = Field(
        description="per runtime: each variant's latency, its ratio to the base on that runtime, "
        "not-faster flags and messages, the Pareto front (docs/api.md)"
    )


class StudiesBest(BaseModel):
    value: float = Field(description="the highest seed-mean of the metric over the variant's grid")
    lr: float
    wd: float
    x: float = Field(description="log10 wd")
    y: float = Field(description="log10 lr")
    std: float | None = Field(description="sample std over the seeds at that point (null: one seed)")
    n: int = Field(description="seeds at that point")
    ci_low: float | None = Field(description="seed bootstrap CI of the best value (null: one seed)")
    ci_high: float | None
    ci_level: float


class StudiesEllipse(BaseModel):
    length: float = Field(description="2 k sqrt(l1), log10 units")
    width: float = Field(description="2 k sqrt(l2), log10 units")
    angle_deg: float = Field(description="major axis against +x (log10 wd), in (-90, 90]")
    centre: list[float] = Field(description="[log10 wd, log10 lr]")
    n_points: int


class StudiesShift(BaseModel):
    tested: bool
    verdict: str = Field(description="'not tested', 'no significant shift', 'shift towards ...'")
    reason: str | None = Field(description="why not tested")
    delta: list[float] | None = Field(description="variant centre - base centre, [dx, dy] in log10 units")
    distance: float | None
    ci_low: list[float] | None
    ci_high: list[float] | None
    p_value: float | None = Field(description="permutation test of the centre distance")
    significant: bool


class StudiesRisk(BaseModel):
    level: float = Field(description="Theta_R: the base's ROI at this level")
    mean: float | None = Field(description="mean d over Theta_R (percentage points)")
    std: float | None = Field(description="population std of d")
    rel_mean: float | None = Field(description="mean dR = d / best")
    rel_std: float | None
    n: int
    missing: int = Field(description="points of Theta_R without a result of this variant")
    reason: str | None


class StudiesNoise(BaseModel):
    std: float | None
    source: str = Field(description="seeds | fit (one seed: an estimate)")
    estimate: bool


class StudiesRow(BaseModel):
    """One (study, variant): the numbers of the study's tables, from its analysis."""

    study_id: int
    study_name: str
    variant: str
    kind: str | None
    is_base: bool
    n_runs: int
    best: StudiesBest | None
    roi: dict[str, int | None] = Field(description="level ('0.5', '1.0') -> ROI points")
    ellipse: dict[str, StudiesEllipse | None] = Field(description="level -> ellipse (null: < 5 ROI points)")
    ellipse_reason: dict[str, str | None]
    shift: dict[str, StudiesShift | None] = Field(description="level -> the shift test against the base")
    risk: StudiesRisk | None
    noise: StudiesNoise | None


class StudiesColourScale(BaseModel):
    min: float = Field(description="the floor: percentile of all observations")
    max: float
    percentile: float
    n_observations: int


class StudiesEntry(BaseModel):
    """One chosen study: what the page needs to draw its landscapes next to the others."""

    study_id: int
    name: str
    kind: str
    status: str
    model: str | None
    dataset: str | None
    base: str
    variants: list[str] = Field(description="base first, then the analysis' order")
    analysed: bool
    reason: str | None = Field(description="why there is no analysis (no finished runs, no such metric)")
    grid: dict[str, Any] | None = Field(description="the analysis' grid record (axes, steps, centre)")
    colour_scale: StudiesColourScale | None = Field(description="this study's own colour scale")
    analysis_url: str
    landscape_urls: dict[str, str] = Field(description="variant -> its /landscape")


class StudiesCompare(BaseModel):
    """GET /compare?studies=...: the chosen studies side by side."""

    metric: Literal["top1", "top5"]
    roi_levels: list[float]
    studies: list[StudiesEntry] = Field(description="in the order asked for")
    rows: list[StudiesRow] = Field(description="one per (study, variant), studies in the order asked for")
    shared_colour_scale: StudiesColourScale | None = Field(
        description="the colour-scale rule over the observations of all chosen studies (one scale for all)"
    )
