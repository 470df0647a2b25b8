"""Pydantic response / request models of the REST API (what OpenAPI and schemathesis see)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from backend.extension_records import SIDES, STATES, STOP_REASONS


def _as_utc(value: datetime) -> datetime:
    # SQLite hands timestamps back naive; they were written in UTC (backend.db.models.utcnow).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Times go out as ISO 8601 with an offset on every database (docs/api.md: "times are ISO 8601 UTC").
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Progress(BaseModel):
    blocked: int = 0
    pending: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    diverged: int = 0
    cancelled: int = 0
    total: int = 0
    finished: int = Field(0, description="succeeded + failed + diverged + cancelled")


class RunCounts(BaseModel):
    train: int = 0
    prune: int = 0
    quantise: int = 0
    measure: int = 0
    scan: int = 0
    total: int = 0


ExtensionSide = Literal[SIDES]  # type: ignore[valid-type]


class AutoExtensionOut(BaseModel):
    """Where a study's auto-extension stands (grid.auto_extend; backend/extension_records.py)."""

    max_points: int = Field(description="grid points the extensions may add, per variant")
    level: float = Field(description="the x-ROI whose touching an edge triggers a row/column")
    points_used: int = Field(description="grid points (per variant) the auto-extensions have added")
    points_left: int
    extensions: int = Field(description="automatic extensions made so far")
    state: Literal[STATES] = Field(  # type: ignore[valid-type]
        description="watching: runs still active, each pass checks the edges that have finished; "
        "deciding: no run active, the next pass extends or stops (the study stays running); "
        "stopped: a verdict holds for the grid as it is"
    )
    stopped: Literal[STOP_REASONS] | None = Field(  # type: ignore[valid-type]
        description="why it stopped (state stopped)"
    )
    why: str | None


class ExtensionRecordOut(BaseModel):
    """One grid extension (kind manual / auto) or auto-extension verdict (kind stop), oldest first."""

    model_config = ConfigDict(extra="allow")

    at: str = Field(description="when (ISO 8601 UTC)")
    kind: Literal["manual", "auto", "stop"]
    why: str
    lr_range: list[int] = Field(description="the lr index range after it (stop: the grid it judged)")
    wd_range: list[int]
    rows: dict[ExtensionSide, int] | None = Field(None, description="rows/columns added per side")
    sides: list[ExtensionSide] = []
    added_points: int | None = Field(None, description="grid points added (each variant gets them all)")
    added_runs: int | None = None
    proposal: bool | None = Field(None, description="manual: the analysis' proposal was asked for")
    level: float | None = None
    triggered_by: dict[str, list[ExtensionSide]] | None = Field(
        None, description="auto: variant -> the sides its ROI touched"
    )
    left_out: dict[ExtensionSide, str] | None = Field(
        None, description="auto: wanted sides not added -> the limit they break"
    )
    points_used: int | None = Field(None, description="auto / stop: the budget's points used after it")
    points_left: int | None = None
    stopped: Literal[STOP_REASONS] | None = None  # type: ignore[valid-type]
    wanted: dict[str, list[ExtensionSide]] | None = Field(None, description="stop: sides still wanted")
    through: str | None = Field(None, description="stop: the latest run finish it saw")


class StudySummary(_Out):
    id: int
    name: str
    kind: Literal["native", "imported"]
    status: str
    created_by: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    finished_at: UtcDatetime | None
    model: str | None = None
    dataset: str | None = None
    variants: list[str] = []
    progress: Progress
    auto_extension: AutoExtensionOut | None = Field(None, description="null when grid.auto_extend is off")


class StudyOut(StudySummary):
    spec: dict[str, Any]
    run_counts: RunCounts = Field(description="runs by kind (what the planner made, extensions included)")
    extensions: list[ExtensionRecordOut] = Field(
        [], description="every grid extension and auto-extension verdict, oldest first"
    )


class StudyList(BaseModel):
    items: list[StudySummary]
    total: int
    limit: int
    offset: int


class RunOut(_Out):
    id: int
    study_id: int
    variant_id: int
    variant: str
    kind: str
    lr: float | None
    wd: float | None
    grid_i: int | None
    grid_j: int | None
    seed: int
    status: str
    depends_on_id: int | None
    attempts: int
    cancel_requested: bool
    top1: float | None
    top5: float | None
    loss: float | None
    epochs_done: int
    error: str | None
    worker: str | None
    created_at: UtcDatetime
    queued_at: UtcDatetime | None
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    heartbeat_at: UtcDatetime | None


class RunList(BaseModel):
    items: list[RunOut]
    total: int
    limit: int
    offset: int


class EpochOut(_Out):
    epoch: int
    train_loss: float | None
    train_top1: float | None
    val_loss: float | None
    top1: float | None
    top5: float | None
    lr: float | None
    seconds: float | None


class ArtefactOut(_Out):
    id: int
    run_id: int | None
    variant_id: int | None
    kind: str
    bytes: int | None
    created_at: UtcDatetime
    url: str
    filename: str = Field(description="the download's name: study, run, variant and kind (GET url)")


class RunDetail(RunOut):
    result: dict[str, Any] | None
    epochs: list[EpochOut]
    artefacts: list[ArtefactOut]


class CancelOut(BaseModel):
    study_id: int
    cancelled: int = Field(description="runs that had not started and are now cancelled")
    cancel_requested: int = Field(description="running runs asked to stop at their next epoch")
    status: str


class DeleteOut(BaseModel):
    """202 of DELETE /studies/{id}: the study waits for its running runs before it goes."""

    study_id: int
    deleted: bool = Field(description="false: marked `deleting`, removed when its runs have stopped")
    waiting_for_runs: int = Field(description="runs asked to stop at their next epoch")


class ExtendIn(BaseModel):
    """Rows / columns to add on each side of the grid, or `proposal: true` for the analysis' own."""

    model_config = ConfigDict(extra="forbid")

    lr_low: int = Field(0, ge=0, le=40, description="rows added below the lowest learning rate")
    lr_high: int = Field(0, ge=0, le=40, description="rows added above the highest learning rate")
    wd_low: int = Field(0, ge=0, le=40, description="columns added below the lowest weight decay")
    wd_high: int = Field(0, ge=0, le=40, description="columns added above the highest weight decay")
    proposal: bool = Field(False, description="extend where the analysis says the 1.0-ROI touches an edge")


class ExtendOut(BaseModel):
    study_id: int
    added_runs: int
    added_points: int
    # [low, high] index pairs; a list rather than a tuple so the schema avoids `prefixItems`,
    # which older OpenAPI tooling (and schemathesis' response validator) reads wrongly.
    lr_range: list[int] = Field(min_length=2, max_length=2)
    wd_range: list[int] = Field(min_length=2, max_length=2)
    lr_values: list[float]
    wd_values: list[float]
    record: ExtensionRecordOut | None = Field(None, description="the extension as recorded with the study")


class PlanVariant(BaseModel):
    name: str
    kind: str
    source: str | None = Field(description="the variant whose models this one compresses")
    train: int
    prune: int
    quantise: int
    measure: int
    scan: int
    total: int
    iterations: int | None = Field(
        description="prune -> retrain rounds of a pruned variant (null: not pruned)"
    )
    prune_epochs: int = Field(
        description="epochs its prune run retrains: iterations x (finetune_epochs or the recipe's epochs); "
        "0 for one-shot pruning"
    )


class PlanOut(BaseModel):
    """What POST /studies would plan for a spec (a dry run: nothing is stored)."""

    run_counts: RunCounts
    variants: list[PlanVariant] = Field(description="runs per variant, in the spec's order")
    grid_points: int = Field(description="learning rates x weight decays")
    repeats: int = Field(description="seeds per grid point")
    lr_values: list[float] = Field(description="the grid's learning rates, in index order")
    wd_values: list[float] = Field(description="the grid's weight decays, in index order")


class RetryOut(BaseModel):
    run: RunOut
    reopened: int = Field(description="runs set back to pending/blocked, this one included")


class LandscapePoint(BaseModel):
    grid_i: int
    grid_j: int
    lr: float
    wd: float
    x: float = Field(description="log10 wd")
    y: float = Field(description="log10 lr")
    value: float | None = Field(description="mean of the metric over finished seeds")
    std: float | None
    n: int = Field(description="finished seeds (succeeded or diverged)")
    status: Literal["finished", "diverged", "running", "failed", "cancelled", "missing"] = Field(
        description="finished | diverged (every finished seed diverged) | running (no result yet, a run "
        "is waiting or running) | failed / cancelled (no result, no run left to happen; one failed / "
        "was cancelled) | missing (no run at this point)"
    )


class Landscape(BaseModel):
    study_id: int
    variant: str
    metric: Literal["top1", "top5"]
    lr_values: list[float]
    wd_values: list[float]
    points: list[LandscapePoint]
    best: LandscapePoint | None


class ScanRow(BaseModel):
    """One evaluation of a sensitivity scan (the model pruned by `fraction`, not retrained)."""

    fraction: float = Field(
        description="fraction of weights (unstructured) or of filters (structured) removed"
    )
    layer: str | None = Field(None, description="the one layer pruned (scope 'layer'); null: the whole model")
    top1: float | None = None
    top5: float | None = None
    sparsity: float | None = Field(
        None, description="unstructured: zero weights / prunable weights after pruning"
    )
    flops_ratio: float | None = Field(
        None, description="structured: FLOPs after pruning / FLOPs of the scanned model"
    )


class VariantScan(BaseModel):
    """One scan of a variant's model trained at the prior (the list in `VariantOut.scan`)."""

    index: int = Field(description="position of the scan in the spec's `scans`")
    kind: Literal["structured", "unstructured"]
    scope: Literal["layer", "global"]
    fractions: list[float]
    source_run_id: int | None = Field(description="the train run whose model was scanned")
    rows: list[ScanRow] = Field(description="fractions in order; per layer in model order for scope 'layer'")


class IterationStep(BaseModel):
    """One prune -> retrain round of an iteratively pruned variant (its prune run's result)."""

    step: int
    target: float = Field(
        description="cumulative target after this round: sparsity or FLOPs ratio of the base"
    )
    sparsity: float | None = Field(
        None, description="unstructured: zero weights / prunable weights after pruning"
    )
    flops_ratio: float | None = Field(None, description="structured: FLOPs / base FLOPs after pruning")
    params: int | None = None
    params_nonzero: int | None = None
    pruned_top1: float | None = Field(None, description="after pruning, before retraining")
    pruned_top5: float | None = None
    top1: float | None = Field(None, description="after this round's retraining")
    top5: float | None = None
    status: str = Field(description="of the round's retraining: succeeded | diverged | cancelled")
    epochs: int | None = Field(None, description="epochs the round retrained")


class VariantOut(_Out):
    id: int
    name: str
    kind: str
    spec: dict[str, Any]
    source: str | None
    flops_ratio_achieved: float | None
    kept_fractions: dict[str, float] | None
    params: int | None
    params_nonzero: int | None
    flops: int | None
    size_bytes: int | None
    size_sparse_bytes: int | None
    latency: dict[str, Any] | None
    histograms: dict[str, Any] | None
    scan: list[VariantScan] | None = Field(
        description="sensitivity scans (null: none asked for, or not run yet)"
    )
    iterations: list[IterationStep] | None = Field(
        description="iterative pruning, one row per round (null: one-shot pruning, or its prune run has not finished)"
    )
    measured: dict[str, Any] | None
    model_artefact_id: int | None


class VariantList(BaseModel):
    study_id: int
    items: list[VariantOut]


class CatalogModel(BaseModel):
    name: str
    input_shape: list[int] = Field(description="(C, H, W) the architecture was designed for")
    num_classes: int
    family: str
    description: str
    min_side: int = Field(description="smallest input height / width it accepts")
    structured_pruning: bool = Field(description="whether structured (filter) pruning is offered")
    no_structured_pruning: str | None = Field(description="why not, when it is not")


class CatalogDataset(BaseModel):
    name: str
    input_shape: list[int] | None = Field(description="null: decided by the spec or the files")
    num_classes: int | None
    needs_path: bool
    layout: str = Field(description="what must be at dataset.path")


class CatalogOut(BaseModel):
    """What a study spec may name (the engine's catalog), for forms and clients."""

    models: list[CatalogModel]
    datasets: list[CatalogDataset]
    variant_kinds: list[str]
    flops_convention: str


class AuthOut(BaseModel):
    """The server's auth mode (PRUNESCAPE_AUTH), for clients that say what a token is needed for."""

    mode: Literal["off", "writes", "all"]
    reads_need_token: bool
    writes_need_token: bool


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: dict[str, Any]
    broker: dict[str, Any]
    workers: list[str]
    artefacts: dict[str, Any]  # ok, free_bytes, error: can runs write their checkpoints and models


class ErrorOut(BaseModel):
    """Body of every 4xx/5xx except 422: a sentence a user can act on."""

    detail: str


class FieldErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """422 body: FastAPI's list shape, `loc` naming the field."""

    detail: list[FieldErrorItem]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Documented on every route so the OpenAPI schema lists each status a client can get.
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("the request could not be parsed"),
    401: _error("PRUNESCAPE_AUTH=all and the request has no (or a malformed) bearer token"),
    403: _error("PRUNESCAPE_AUTH=all and the token is unknown or revoked"),
    404: _error("unknown study / run / artefact id or variant name"),
    503: _error("database unavailable; retry after the Retry-After seconds"),
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    401: _error("auth is on and the request has no (or a malformed) bearer token"),
    403: _error("unknown or revoked token, or the study is not the token's (creator or admin only)"),
    409: _error("the action is not possible in the current state"),
}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **WRITE_ERRORS,
    413: _error("upload above max_upload_bytes"),
    422: {"model": ValidationErrorOut, "description": "not multipart, no file, or an invalid CSV"},
}
