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
    total: int


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
    status: Literal["finished", "diverged", "running", "missing"]


class Landscape(BaseModel):
    study_id: int
    variant: str
    metric: Literal["top1", "top5"]
    lr_values: list[float]
    wd_values: list[float]
    points: list[LandscapePoint]
    best: LandscapePoint | None


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
    latency: dict[str, Any] | None
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
    scan: Any | None
    measured: dict[str, Any] | None
    model_artefact_id: int | None


class VariantList(BaseModel):
    study_id: int
    items: list[VariantOut]


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
    404: _error("unknown study / run / artefact id or variant name"),
    503: _error("database unavailable; retry after the Retry-After seconds"),
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    401: _error("auth is on and the request has no (or a malformed) bearer token"),
    403: _error("unknown or revoked token"),
    409: _error("the action is not possible in the current state"),
}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **WRITE_ERRORS,
    413: _error("upload above max_upload_bytes"),
    422: {"model": ValidationErrorOut, "description": "not multipart, no file, or an invalid CSV"},
}
