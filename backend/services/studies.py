"""Studies from the API's side: create (plan + store + dispatch), read with progress, cancel, extend,
delete, retry, import, export, landscape and comparison. Routes stay thin; the logic lives here."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import statistics
from array import array
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    RUN_STATUSES,
    Artefact,
    Run,
    Study,
    Variant,
    utcnow,
)
from backend.services.dataset_paths import check_dataset_allowed
from backend.services.errors import Conflict, FieldError, NotFound
from backend.services.planner import (
    Plan,
    PlannedRun,
    RunKey,
    extension_points,
    plan_study,
    summarise_plan,
)
from backend.services.read_cache import JsonBody, StudyVersion, read_cache, study_version, to_json_body
from backend.settings import Settings
from backend.spec import SpecError, StudySpec, check_limits, parse_spec

log = logging.getLogger(__name__)

FINISHED_OK = ("succeeded", "diverged")
# Same words as workers.engine.flops.FLOPS_CONVENTION (not imported: that module imports torch).
FLOPS_CONVENTION = (
    "FLOPs = 2 x multiply-accumulates of conv and linear layers, batch 1; "
    "BN, activations, pooling and adds not counted"
)
SORTS = {
    "created_at": Study.created_at.asc(),
    "-created_at": Study.created_at.desc(),
    "name": Study.name.asc(),
    "-name": Study.name.desc(),
    "id": Study.id.asc(),
    "-id": Study.id.desc(),
}


# --- reading ---------------------------------------------------------------------------------------
def get_study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise NotFound(f"study {study_id} not found")
    return study


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def progress_counts(session: Session, study_ids: list[int]) -> dict[int, dict[str, int]]:
    """Run counts by status per study (every status present, plus total and finished)."""
    counts: dict[int, dict[str, int]] = {sid: dict.fromkeys(RUN_STATUSES, 0) for sid in study_ids}
    if study_ids:
        rows = session.execute(
            sa.select(Run.study_id, Run.status, sa.func.count())
            .where(Run.study_id.in_(study_ids))
            .group_by(Run.study_id, Run.status)
        )
        for sid, status, n in rows:
            counts[sid][status] = n
    for c in counts.values():
        _progress_totals(c)
    return counts


def _progress_totals(counts: dict[str, int]) -> dict[str, int]:
    counts["total"] = sum(counts[s] for s in RUN_STATUSES)
    counts["finished"] = counts["total"] - sum(counts[s] for s in ACTIVE_STATUSES)
    return counts


def kind_counts(session: Session, study_id: int) -> dict[str, int]:
    return _status_kind_counts(session, study_id)[1]


def _status_kind_counts(session: Session, study_id: int) -> tuple[dict[str, int], dict[str, int]]:
    """Progress (runs by status) and run counts by kind of one study, from one pass over its runs."""
    progress = dict.fromkeys(RUN_STATUSES, 0)
    kinds = {"train": 0, "prune": 0, "quantise": 0, "measure": 0}
    for status, kind, n in session.execute(
        sa.select(Run.status, Run.kind, sa.func.count())
        .where(Run.study_id == study_id)
        .group_by(Run.status, Run.kind)
    ):
        progress[status] += n
        kinds[kind] += n
    kinds["total"] = sum(kinds.values())
    return _progress_totals(progress), kinds


def derive_status(study: Study | sa.Row[Any], progress: dict[str, int]) -> str:
    """Study status from its runs; `cancelled` sticks once asked for (until a retry or extension)."""
    active = sum(progress[s] for s in ACTIVE_STATUSES)
    if study.status == "cancelled":
        return "cancelled"
    if active:
        started = progress["running"] + progress["queued"] + progress["finished"]
        return "running" if started else "pending"
    return "failed" if progress["failed"] else "succeeded"


def refresh_status(session: Session, study: Study, progress: dict[str, int] | None = None) -> str:
    """Bring the stored status up to date (so list filters see it); returns it."""
    progress = progress or progress_counts(session, [study.id])[study.id]
    status = derive_status(study, progress)
    if status != study.status:
        study.status = status
        if status in ("succeeded", "failed", "cancelled") and study.finished_at is None:
            study.finished_at = utcnow()
        elif status in ("pending", "running"):
            study.finished_at = None
    return status


def study_view(session: Session, study: Study, *, detail: bool) -> dict[str, Any]:
    if detail:
        progress, run_counts = _status_kind_counts(session, study.id)
    else:
        progress, run_counts = progress_counts(session, [study.id])[study.id], None
    refresh_status(session, study, progress)
    return _view(study, progress, run_counts, _variant_name_lists(session, [study.id])[study.id])


def study_json(session: Session, study_id: int) -> bytes:
    """GET /studies/{id} as JSON bytes, its stored status refreshed (and committed) on the way.

    While none of its runs is active the view is a function of the study's data version (ended
    runs change only by leaving the ended set, which moves the version), so it is kept as bytes:
    a settled 10,000-run study answers without counting its runs again."""
    version = study_version(session, study_id)
    key = ("study", study_id, version)
    if version.active_runs == 0:
        body = read_cache.get(key)
        if body is not None:
            return body
    study = get_study(session, study_id)
    view = study_view(session, study, detail=True)
    moved = session.is_modified(study)
    session.commit()
    for name in ("created_at", "updated_at", "finished_at"):
        view[name] = as_utc(view[name])
    body = pydantic_core.to_json(view)
    if version.active_runs == 0 and not moved:
        read_cache.put(key, body, len(body))
    return body


def _variant_name_lists(session: Session, study_ids: list[int]) -> dict[int, list[str]]:
    """Variant names per study in id order: names only (a Variant row carries histograms and scans)."""
    names: dict[int, list[str]] = {sid: [] for sid in study_ids}
    if study_ids:
        for sid, name in session.execute(
            sa.select(Variant.study_id, Variant.name)
            .where(Variant.study_id.in_(study_ids))
            .order_by(Variant.id)
        ):
            names[sid].append(name)
    return names


def _view(
    study: Study, progress: dict[str, int], run_counts: dict[str, int] | None, variant_names: list[str]
) -> dict[str, Any]:
    view = {
        "id": study.id,
        "name": study.name,
        "kind": study.kind,
        "status": study.status,
        "created_by": study.created_by,
        "created_at": study.created_at,
        "updated_at": study.updated_at,
        "finished_at": study.finished_at,
        "model": (study.spec.get("model") or {}).get("name"),
        "dataset": (study.spec.get("dataset") or {}).get("name"),
        "variants": variant_names,
        "progress": progress,
    }
    if run_counts is not None:
        view["spec"] = study.spec
        view["run_counts"] = run_counts
    return view


def list_studies(
    session: Session, *, limit: int, offset: int, status: str | None = None, sort: str = "-created_at"
) -> dict[str, Any]:
    # Statuses are derived from runs and refreshed on read. With a status filter every unfinished
    # study is refreshed first, so the filter and the total agree with what each item shows;
    # without one (no sort key is a status) only the page's studies need to be current.
    if status is not None:
        _refresh_open_statuses(session)
    query = sa.select(Study)
    if status is not None:
        query = query.where(Study.status == status)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    studies = session.scalars(query.order_by(SORTS[sort], Study.id.desc()).limit(limit).offset(offset)).all()
    progress = progress_counts(session, [s.id for s in studies])
    if status is None:
        for study in studies:
            if study.status in ("pending", "running"):
                refresh_status(session, study, progress[study.id])
    names = _variant_name_lists(session, [s.id for s in studies])
    return {
        "items": [_view(s, progress[s.id], None, names[s.id]) for s in studies],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


def _refresh_open_statuses(session: Session) -> None:
    """Refresh the stored status of every pending / running study: ids and statuses first, then
    only the studies whose status moved are loaded and updated."""
    open_studies = session.execute(
        sa.select(Study.id, Study.status).where(Study.status.in_(("pending", "running")))
    ).all()
    if not open_studies:
        return
    progress = progress_counts(session, [s.id for s in open_studies])
    moved = [s.id for s in open_studies if derive_status(s, progress[s.id]) != s.status]
    if moved:
        for study in session.scalars(sa.select(Study).where(Study.id.in_(moved))):
            refresh_status(session, study, progress[study.id])
        session.flush()


def runs_page_json(
    session: Session,
    study_id: int,
    *,
    limit: int,
    offset: int,
    variant: str | None = None,
    status: str | None = None,
    kind: str | None = None,
) -> bytes:
    """One page of a study's runs (by id) as the API's RunList JSON, with UTC times.

    Without a status filter the page's ids come from the study's cached id list (the runs a
    variant / kind filter selects never change once stored; new runs move the version), so a deep
    page is a primary-key range read instead of OFFSET over the study's 10,000 runs plus a count.
    A page whose runs have all ended is kept as bytes for this data version: an ended run's row
    changes only when a retry puts it back in the active set, which moves the version."""
    version = study_version(session, study_id)  # 404 when there is no such study
    names = _cached_variant_names(session, version)
    variant_id = None
    if variant is not None:
        variant_id = next((vid for vid, name in names.items() if name == variant), None)
        if variant_id is None:
            raise NotFound(f"study {study_id} has no variant {variant!r}")
    key = ("runs_page", study_id, version, variant_id, kind, status, limit, offset)
    body = read_cache.get(key)
    if body is not None:
        return body
    filters = [Run.study_id == study_id]
    if variant_id is not None:
        filters.append(Run.variant_id == variant_id)
    if kind is not None:
        filters.append(Run.kind == kind)
    if status is None:
        ids = _run_ids(session, version, variant_id, kind, filters)
        total = len(ids)
        page = ids[offset : offset + limit]
        rows = []
        if page:
            rows = session.execute(
                sa.select(*RUN_COLUMNS)
                .where(*filters, Run.id >= page[0], Run.id <= page[-1])
                .order_by(Run.id)
            ).all()
    else:
        filters.append(Run.status == status)
        total = session.scalar(sa.select(sa.func.count()).where(*filters)) or 0
        rows = session.execute(
            sa.select(*RUN_COLUMNS).where(*filters).order_by(Run.id).limit(limit).offset(offset)
        ).all()
    items = [_run_row_view(row, names) for row in rows]
    body = pydantic_core.to_json({"items": items, "total": total, "limit": limit, "offset": offset})
    ended = status is None or status in FINISHED_STATUSES
    if ended and all(item["status"] in FINISHED_STATUSES for item in items):
        read_cache.put(key, body, len(body))
    return body


def _cached_variant_names(session: Session, version: StudyVersion) -> dict[int, str]:
    """Variant id -> name; a study's variants are made with it and never renamed."""
    key = ("variant_names", version.study_id, (version.database, version.created_at))
    return read_cache.get_or_build(
        key, lambda: _variant_names(session, version.study_id), size=lambda names: 100 * len(names)
    )


def _run_ids(
    session: Session, version: StudyVersion, variant_id: int | None, kind: str | None, filters: list[Any]
) -> array:
    # Ids only change when runs are added (a higher last id; an extension also moves updated_at,
    # which covers two extensions committing out of id order).
    key = (
        "run_ids",
        version.study_id,
        (version.database, version.created_at, version.updated_at, version.last_run_id),
        variant_id,
        kind,
    )

    def build() -> array:
        return array("q", session.scalars(sa.select(Run.id).where(*filters).order_by(Run.id)))

    return read_cache.get_or_build(key, build, size=lambda ids: ids.itemsize * len(ids) + 64)


RUN_FIELDS = [
    "id",
    "study_id",
    "variant_id",
    "kind",
    "lr",
    "wd",
    "grid_i",
    "grid_j",
    "seed",
    "status",
    "depends_on_id",
    "attempts",
    "cancel_requested",
    "top1",
    "top5",
    "loss",
    "epochs_done",
    "error",
    "worker",
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
    "heartbeat_at",
]


RUN_COLUMNS = [getattr(Run, name) for name in RUN_FIELDS]
RUN_TIMES = ("created_at", "queued_at", "started_at", "finished_at", "heartbeat_at")


def run_view(run: Run, variant_names: dict[int, str]) -> dict[str, Any]:
    view = {name: getattr(run, name) for name in RUN_FIELDS}
    view["variant"] = variant_names[run.variant_id]
    return view


def _run_row_view(row: sa.Row, variant_names: dict[int, str]) -> dict[str, Any]:
    """A RUN_COLUMNS row as the API's RunOut: times in UTC (SQLite hands them back naive)."""
    view = row._asdict()
    view["variant"] = variant_names[row.variant_id]
    for name in RUN_TIMES:
        view[name] = as_utc(view[name])
    return view


def as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def run_detail(session: Session, run_id: int) -> dict[str, Any]:
    run = get_run(session, run_id)
    view = run_view(run, _variant_names(session, run.study_id))
    view["result"] = run.result
    view["epochs"] = list(run.epochs)
    artefacts = session.scalars(sa.select(Artefact).where(Artefact.run_id == run.id).order_by(Artefact.id))
    view["artefacts"] = [artefact_view(a) for a in artefacts]
    return view


def artefact_view(artefact: Artefact) -> dict[str, Any]:
    return {
        "id": artefact.id,
        "run_id": artefact.run_id,
        "variant_id": artefact.variant_id,
        "kind": artefact.kind,
        "bytes": artefact.bytes,
        "created_at": artefact.created_at,
        "url": f"/api/v1/artefacts/{artefact.id}",
    }


def _variant_names(session: Session, study_id: int) -> dict[int, str]:
    return dict(
        session.execute(sa.select(Variant.id, Variant.name).where(Variant.study_id == study_id)).all()
    )


def _variant(session: Session, study_id: int, name: str) -> Variant:
    variant = session.scalar(sa.select(Variant).where(Variant.study_id == study_id, Variant.name == name))
    if variant is None:
        raise NotFound(f"study {study_id} has no variant {name!r}")
    return variant


# --- creating ---------------------------------------------------------------------------------------
def create_study(
    session: Session, spec: StudySpec, settings: Settings, *, created_by: str | None = None
) -> Study:
    """Validate limits, store study + variants + planned runs in one transaction, then dispatch."""
    _check_limits(spec, settings)
    check_dataset_allowed(spec, settings)
    plan = plan_study(spec)
    study = Study(
        name=spec.name,
        kind="native",
        spec=spec.model_dump(mode="json"),
        status="pending",
        created_by=created_by,
    )
    session.add(study)
    session.flush()
    variants: dict[str, Variant] = {}
    for planned in plan.variants:
        variant = Variant(study_id=study.id, name=planned.name, kind=planned.kind, spec=planned.spec)
        session.add(variant)
        variants[planned.name] = variant
    session.flush()
    for planned in plan.variants:
        if planned.source is not None:
            variants[planned.name].source_variant_id = variants[planned.source].id
    _store_runs(session, study.id, plan, variants, existing={})
    session.commit()
    dispatch(session, study.id)
    return study


def plan_preview(spec: StudySpec, settings: Settings) -> dict[str, Any]:
    """What `create_study` would plan for `spec`, checked against the same limits; stores nothing."""
    _check_limits(spec, settings)
    check_dataset_allowed(spec, settings)
    return asdict(summarise_plan(spec))


def _check_limits(spec: StudySpec, settings: Settings) -> None:
    try:
        check_limits(
            spec, max_grid_size=settings.max_grid_size, max_runs_per_study=settings.max_runs_per_study
        )
    except SpecError as exc:
        raise FieldError(["body", *exc.loc], exc.message) from None


def _store_runs(
    session: Session, study_id: int, plan: Plan, variants: dict[str, Variant], existing: dict[RunKey, Run]
) -> list[Run]:
    """Insert planned runs; dependencies resolve to runs planned here or already stored."""
    made: dict[RunKey, Run] = {}
    runs = []
    for planned in plan.runs:
        status = planned.initial_status
        dep = None
        if planned.depends_on is not None:
            dep = made.get(planned.depends_on) or existing.get(planned.depends_on)
            if dep is None:
                raise RuntimeError(f"planner bug: {planned.key} depends on unplanned {planned.depends_on}")
            if planned.depends_on not in made:
                status = _status_after(dep, planned)
        run = Run(
            study_id=study_id,
            variant_id=variants[planned.variant].id,
            kind=planned.kind,
            lr=planned.lr,
            wd=planned.wd,
            grid_i=planned.grid_i,
            grid_j=planned.grid_j,
            seed=planned.seed,
            status=status,
            attempts=0,
            cancel_requested=False,
            epochs_done=0,
        )
        if dep is not None and dep.id is not None:
            run.depends_on_id = dep.id
        session.add(run)
        if dep is not None and dep.id is None:
            session.flush()  # give the dependency its id
            run.depends_on_id = dep.id
        made[planned.key] = run
        runs.append(run)
    session.flush()
    return runs


def _status_after(dependency: Run, run: PlannedRun | Run) -> str:
    """Initial status of a run whose dependency already exists (contracts section 3)."""
    ok = ("succeeded", "diverged") if run.kind == "quantise" else ("succeeded",)
    if dependency.status in ok:
        return "pending"
    if dependency.status in ("failed", "cancelled") or (
        dependency.status == "diverged" and run.kind != "quantise"
    ):
        return "cancelled"
    return "blocked"


def dispatch(session: Session, study_id: int) -> None:
    """Send ready runs to the workers. A missing dispatcher or a broker that is down leaves the
    runs `pending` (stored, picked up later); it never fails the request."""
    try:
        from backend.services.dispatch import dispatch_ready
    except ImportError as exc:
        log.warning("study %s stored; runs stay pending (no dispatcher: %s)", study_id, exc)
        return
    try:
        dispatch_ready(session, study_id)
        session.commit()
    except Exception as exc:  # noqa: BLE001 - broker trouble must not lose a stored study
        session.rollback()
        log.warning("study %s stored; runs stay pending (dispatch failed: %s)", study_id, exc)


# --- changing ---------------------------------------------------------------------------------------
def cancel_study(session: Session, study_id: int) -> dict[str, Any]:
    study = get_study(session, study_id)
    cancelled = session.execute(
        sa.update(Run)
        .where(Run.study_id == study_id, Run.status.in_(("blocked", "pending", "queued")))
        .values(status="cancelled", finished_at=utcnow(), cancel_requested=True)
        .execution_options(synchronize_session=False)
    ).rowcount
    requested = session.execute(
        sa.update(Run)
        .where(Run.study_id == study_id, Run.status == "running")
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    ).rowcount
    was_open = study.status in ("pending", "running")
    session.expire_all()
    study = get_study(session, study_id)
    if study.kind == "native" and (cancelled or requested or was_open):
        study.status = "cancelled"
    status = refresh_status(session, study)
    session.commit()
    return {"study_id": study_id, "cancelled": cancelled, "cancel_requested": requested, "status": status}


def delete_study(session: Session, study_id: int, settings: Settings) -> None:
    study = get_study(session, study_id)
    paths: set[str] = set()
    run_ids = sa.select(Run.id).where(Run.study_id == study_id)
    variant_ids = sa.select(Variant.id).where(Variant.study_id == study_id)
    paths.update(
        session.scalars(
            sa.select(Artefact.path).where(
                sa.or_(Artefact.run_id.in_(run_ids), Artefact.variant_id.in_(variant_ids))
            )
        )
    )
    for model_path, checkpoint_path in session.execute(
        sa.select(Run.model_path, Run.checkpoint_path).where(Run.study_id == study_id)
    ):
        paths.update(p for p in (model_path, checkpoint_path) if p)
    paths.update(
        p for p in session.scalars(sa.select(Variant.model_path).where(Variant.study_id == study_id)) if p
    )
    # Bulk deletes in dependency order (also right where SQLite foreign keys are off).
    session.execute(sa.update(Run).where(Run.study_id == study_id).values(depends_on_id=None))
    session.execute(
        sa.delete(Artefact).where(sa.or_(Artefact.run_id.in_(run_ids), Artefact.variant_id.in_(variant_ids)))
    )
    from backend.db.models import EpochMetric

    session.execute(sa.delete(EpochMetric).where(EpochMetric.run_id.in_(run_ids)))
    session.execute(sa.delete(Run).where(Run.study_id == study_id))
    session.execute(sa.update(Variant).where(Variant.study_id == study_id).values(source_variant_id=None))
    session.execute(sa.delete(Variant).where(Variant.study_id == study_id))
    session.delete(study)
    session.commit()
    for rel in paths:
        path = resolve_artefact_path(settings, rel)
        if path is not None and path.is_file():
            try:
                path.unlink()
            except OSError as exc:
                log.warning("could not remove artefact %s: %s", path, exc)
    read_cache.drop_study(study_id)


def resolve_artefact_path(settings: Settings, relative: str) -> Path | None:
    """The file under artifact_dir, or None when the stored path would leave it."""
    root = settings.artifact_root
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        return None
    return path


def artefact_file(session: Session, artefact_id: int, settings: Settings) -> tuple[Path, str]:
    artefact = session.get(Artefact, artefact_id)
    if artefact is None:
        raise NotFound(f"artefact {artefact_id} not found")
    path = resolve_artefact_path(settings, artefact.path)
    if path is None:
        raise NotFound(f"artefact {artefact_id}: its path is outside the artefact directory")
    if not path.is_file():
        raise NotFound(f"artefact {artefact_id}: file {artefact.path} is missing")
    return path, path.name


def retry_run(session: Session, run_id: int) -> dict[str, Any]:
    run = get_run(session, run_id)
    if run.status not in ("failed", "cancelled"):
        raise Conflict(f"run {run_id} is {run.status}; only failed or cancelled runs can be retried")
    if run.depends_on_id is not None:
        dep = session.get(Run, run.depends_on_id)
        if dep is not None and _status_after(dep, run) == "cancelled":
            raise Conflict(
                f"run {run_id} depends on run {dep.id}, which is {dep.status}; retry that run first"
            )
        new_status = "pending" if dep is None else _status_after(dep, run)
    else:
        new_status = "pending"
    _reopen(run, new_status)
    reopened = 1
    # Runs cancelled because this one did not finish wait on it again.
    frontier = [run.id]
    while frontier:
        children = session.scalars(
            sa.select(Run).where(Run.depends_on_id.in_(frontier), Run.status == "cancelled")
        ).all()
        for child in children:
            _reopen(child, "blocked")
        reopened += len(children)
        frontier = [c.id for c in children]
    study = get_study(session, run.study_id)
    if study.status == "cancelled":
        study.status = "pending"
    session.commit()
    dispatch(session, run.study_id)
    session.refresh(run)
    return {"run": run_view(run, _variant_names(session, run.study_id)), "reopened": reopened}


def _reopen(run: Run, status: str) -> None:
    run.status = status
    run.attempts = 0
    run.error = None
    run.cancel_requested = False
    run.finished_at = None
    run.queued_at = None
    run.started_at = None
    run.heartbeat_at = None
    run.worker = None


def extend_study(
    session: Session,
    study_id: int,
    settings: Settings,
    *,
    lr_low: int = 0,
    lr_high: int = 0,
    wd_low: int = 0,
    wd_high: int = 0,
    proposal: bool = False,
) -> dict[str, Any]:
    study = get_study(session, study_id)
    if study.kind != "native":
        raise Conflict(f"study {study_id} is imported; only native studies can be extended")
    if proposal:
        lr_low, lr_high, wd_low, wd_high = _proposed_sides(session, study)
        if not any((lr_low, lr_high, wd_low, wd_high)):
            raise Conflict("the analysis proposes no extension: the 1.0-ROI touches no edge of the grid")
    elif not any((lr_low, lr_high, wd_low, wd_high)):
        raise FieldError(["body"], "add at least one row or column (lr_low, lr_high, wd_low or wd_high)")
    spec = parse_spec(study.spec, check_paths=False)
    old_lr, old_wd = tuple(spec.grid.lr_range), tuple(spec.grid.wd_range)
    new_lr = (old_lr[0] - lr_low, old_lr[1] + lr_high)
    new_wd = (old_wd[0] - wd_low, old_wd[1] + wd_high)
    data = spec.model_dump(mode="json")
    data["grid"]["lr_range"], data["grid"]["wd_range"] = list(new_lr), list(new_wd)
    new_spec = parse_spec(data, check_paths=False)
    _check_limits(new_spec, settings)
    points = extension_points(old_lr, old_wd, new_lr, new_wd)
    plan = plan_study(new_spec, points)
    variants = {v.name: v for v in study.variants}
    existing = {
        _run_key(r, variants): r for r in session.scalars(sa.select(Run).where(Run.study_id == study_id))
    }
    runs = _store_runs(session, study_id, plan, variants, existing)
    study.spec = new_spec.model_dump(mode="json")
    if study.status in ("succeeded", "failed", "cancelled"):
        study.status = "pending"
        study.finished_at = None
    session.commit()
    dispatch(session, study_id)
    from backend.spec import grid_values

    lr_values, wd_values = grid_values(new_spec.grid)
    return {
        "study_id": study_id,
        "added_runs": len(runs),
        "added_points": len(points),
        "lr_range": new_lr,
        "wd_range": new_wd,
        "lr_values": lr_values,
        "wd_values": wd_values,
    }


def _run_key(run: Run, variants: dict[str, Variant]) -> RunKey:
    name = next(n for n, v in variants.items() if v.id == run.variant_id)
    return (name, run.kind, run.grid_i, run.grid_j, run.seed)


def _proposed_sides(session: Session, study: Study) -> tuple[int, int, int, int]:
    """Rows/columns per side that the analysis' auto-extension proposes for the base variant."""
    analysis = analysis_for(session, study.id, metric="top1")
    base = next((v.name for v in study.variants if v.kind == "base"), "base")
    extension = ((analysis.get("results") or {}).get(base) or {}).get("extension") or {}
    wanted = {f"{side['axis']}_{side['side']}" for side in extension.get("sides") or []}
    return tuple(int(s in wanted) for s in ("lr_low", "lr_high", "wd_low", "wd_high"))  # type: ignore[return-value]


# --- import / export ------------------------------------------------------------------------------------
MAX_IMPORT_AXIS_VALUES = 201  # distinct lr (or wd) values of an imported study


def import_csv(
    session: Session,
    data: bytes,
    *,
    name: str | None,
    filename: str | None,
    base: str = "base",
    created_by: str | None = None,
    max_runs: int | None = None,
) -> Study:
    from backend.analysis.table import ResultsFileError, parse_results_csv

    try:
        table = parse_results_csv(data, base=base)
    except ResultsFileError as exc:
        raise FieldError(["body", "file"], str(exc)) from None
    if max_runs is not None and len(table) > max_runs:
        raise FieldError(
            ["body", "file"],
            f"the file has {len(table)} runs, above the limit of {max_runs} runs per study; split it",
        )
    for variant_name in table.variants:
        if len(variant_name) > 64:
            raise FieldError(
                ["body", "file"], f"variant name {variant_name[:20]!r}... is longer than 64 characters"
            )
    if any("\x00" in v for v in table.variants):
        raise FieldError(["body", "file"], "a variant name contains a NUL character")
    if name is not None and "\x00" in name:
        raise FieldError(["body", "name"], "the name contains a NUL character")
    filename = filename.replace("\x00", "") if filename else filename
    study_name = (name or (Path(filename).stem if filename else "") or "imported results").strip()[:200]
    lrs = sorted(set(float(x) for x in table.lr))
    wds = sorted(set(float(x) for x in table.wd))
    # The landscape is a grid of lr x wd; scattered values would make it lrs x wds points.
    for axis, values in (("lr", lrs), ("wd", wds)):
        if len(values) > MAX_IMPORT_AXIS_VALUES:
            raise FieldError(
                ["body", "file"],
                f"column {axis!r} has {len(values)} distinct values, above the limit of "
                f"{MAX_IMPORT_AXIS_VALUES}; results must lie on an lr x wd grid",
            )
    lr_index = {v: i for i, v in enumerate(lrs)}
    wd_index = {v: j for j, v in enumerate(wds)}
    spec = {
        "name": study_name,
        "imported_from": filename,
        "base": base,
        "variants": [{"name": v, "kind": "base" if v == base else "imported"} for v in table.variants],
        "grid": {"lr_values": lrs, "wd_values": wds},
        "ignored_columns": list(table.ignored_columns),
    }
    study = Study(name=study_name, kind="imported", spec=spec, status="succeeded", created_by=created_by)
    study.finished_at = utcnow()
    session.add(study)
    session.flush()
    variants = {}
    for v in spec["variants"]:
        variants[v["name"]] = Variant(study_id=study.id, name=v["name"], kind=v["kind"], spec=v)
        session.add(variants[v["name"]])
    session.flush()
    now = utcnow()
    for k in range(len(table)):
        top5 = float(table.top5[k])
        session.add(
            Run(
                study_id=study.id,
                variant_id=variants[table.variant[k]].id,
                kind="train",
                lr=float(table.lr[k]),
                wd=float(table.wd[k]),
                grid_i=lr_index[float(table.lr[k])],
                grid_j=wd_index[float(table.wd[k])],
                seed=int(table.seed[k]),
                status="diverged" if bool(table.diverged[k]) else "succeeded",
                top1=float(table.top1[k]),
                top5=None if math.isnan(top5) else top5,
                attempts=0,
                cancel_requested=False,
                epochs_done=0,
                finished_at=now,
            )
        )
    session.commit()
    return study


EXPORT_COLUMNS = [
    "variant",
    "kind",
    "lr",
    "wd",
    "grid_i",
    "grid_j",
    "seed",
    "status",
    "top1",
    "top5",
    "loss",
    "epochs_done",
    "error",
]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def export_rows(session: Session, study_id: int) -> list[dict[str, Any]]:
    get_study(session, study_id)
    names = _variant_names(session, study_id)
    runs = session.scalars(
        sa.select(Run).where(Run.study_id == study_id, Run.kind.in_(("train", "quantise"))).order_by(Run.id)
    )
    rows = []
    for run in runs:
        row = {c: getattr(run, c) for c in EXPORT_COLUMNS if c != "variant"}
        rows.append({"variant": names[run.variant_id], **row})
    return rows


def escape_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas: text starting with = + - @ (or tab / CR) gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else escape_cell(row[k]) for k in EXPORT_COLUMNS})
    return out.getvalue()


# --- analysis, landscape, comparison -------------------------------------------------------------------
def invalidate_analysis(study_id: int) -> None:
    """Forget this process' cached reads of a study. Not needed for correctness (cache keys carry
    the study's data version, read from the database on every request); it frees memory."""
    read_cache.drop_study(study_id)


def result_rows(session: Session, study_id: int) -> list[dict[str, Any]]:
    """Finished train/quantise runs as the analysis' rows."""
    names = _variant_names(session, study_id)
    runs = session.execute(
        sa.select(Run.id, Run.variant_id, Run.lr, Run.wd, Run.seed, Run.top1, Run.top5, Run.status).where(
            Run.study_id == study_id,
            Run.kind.in_(("train", "quantise")),
            Run.status.in_(FINISHED_OK),
            Run.top1.is_not(None),
        )
    )
    return [
        {
            "run_id": r.id,
            "variant": names[r.variant_id],
            "lr": r.lr,
            "wd": r.wd,
            "seed": r.seed,
            "top1": r.top1,
            "top5": r.top5,
            "status": r.status,
        }
        for r in runs
    ]


def analysis_json(session: Session, study_id: int, *, metric: str) -> JsonBody:
    """The analysis as JSON bytes, computed once per data version of the study (read_cache)."""
    version = study_version(session, study_id)
    return read_cache.get_or_build(
        ("analysis", study_id, version, metric),
        lambda: to_json_body(_compute_analysis(session, study_id, metric)),
        size=lambda cached: cached.nbytes,
    )


def analysis_for(session: Session, study_id: int, *, metric: str) -> dict[str, Any]:
    return json.loads(analysis_json(session, study_id, metric=metric).body)


def _compute_analysis(session: Session, study_id: int, metric: str) -> dict[str, Any]:
    from backend.analysis import analyse

    study = get_study(session, study_id)
    rows = result_rows(session, study_id)
    base = next((v.name for v in study.variants if v.kind == "base"), "base")
    grid = _analysis_grid(study.spec["grid"]) if study.kind == "native" else None
    if not rows:
        raise Conflict(f"study {study_id} has no finished runs yet; nothing to analyse")
    try:
        report = analyse(rows, metric=metric, base=base, grid=grid)
        return report.to_dict() if hasattr(report, "to_dict") else report
    except ValueError as exc:  # e.g. ResultsFileError: no top5 values for metric=top5
        raise FieldError(["query", "metric"], str(exc)) from None


def _analysis_grid(grid: dict[str, Any]) -> dict[str, Any]:
    """The spec's grid in the analysis' terms (index lists instead of inclusive ranges)."""
    out = {k: grid[k] for k in ("lr_centre", "wd_centre", "step", "size")}
    for axis in ("lr", "wd"):
        lo, hi = grid[f"{axis}_range"]
        out[f"{axis}_indices"] = list(range(lo, hi + 1))
    return out


def landscape_json(session: Session, study_id: int, variant_name: str, *, metric: str) -> JsonBody:
    """`landscape` as JSON bytes, computed once per data version of the study (read_cache)."""
    version = study_version(session, study_id)
    return read_cache.get_or_build(
        ("landscape", study_id, version, variant_name, metric),
        lambda: to_json_body(landscape(session, study_id, variant_name, metric=metric)),
        size=lambda cached: cached.nbytes,
    )


def landscape(session: Session, study_id: int, variant_name: str, *, metric: str) -> dict[str, Any]:
    study = get_study(session, study_id)
    variant = _variant(session, study_id, variant_name)
    # Only the columns the grid needs (not whole ORM rows): a 10,000-run study answers in ~10 ms.
    value_column = Run.top5 if metric == "top5" else Run.top1
    runs = session.execute(
        sa.select(Run.grid_i, Run.grid_j, Run.status, value_column.label("value")).where(
            Run.study_id == study_id, Run.variant_id == variant.id, Run.kind.in_(("train", "quantise"))
        )
    ).all()
    if study.kind == "native":
        spec = parse_spec(study.spec, check_paths=False)
        lr_by_i = {i: spec.grid.lr_at(i) for i in spec.grid.lr_indices}
        wd_by_j = {j: spec.grid.wd_at(j) for j in spec.grid.wd_indices}
    else:
        lr_by_i = dict(enumerate(study.spec["grid"]["lr_values"]))
        wd_by_j = dict(enumerate(study.spec["grid"]["wd_values"]))
    by_point: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for run in runs:
        by_point[(run.grid_i, run.grid_j)].append(run)
    points = []
    for i, lr in lr_by_i.items():
        for j, wd in wd_by_j.items():
            runs_here = by_point.get((i, j), [])
            done = [r for r in runs_here if r.status in FINISHED_OK and r.value is not None]
            values = [r.value for r in done]
            if done:
                status = "diverged" if all(r.status == "diverged" for r in done) else "finished"
            elif any(r.status in ACTIVE_STATUSES for r in runs_here):
                status = "running"
            else:
                status = "missing"
            if not runs_here and study.kind == "imported":
                continue
            points.append(
                {
                    "grid_i": i,
                    "grid_j": j,
                    "lr": lr,
                    "wd": wd,
                    "x": math.log10(wd),
                    "y": math.log10(lr),
                    "value": statistics.fmean(values) if values else None,
                    "std": _pstdev(values),
                    "n": len(values),
                    "status": status,
                }
            )
    scored = [p for p in points if p["value"] is not None]
    best = max(scored, key=lambda p: p["value"]) if scored else None
    return {
        "study_id": study_id,
        "variant": variant_name,
        "metric": metric,
        "lr_values": list(lr_by_i.values()),
        "wd_values": list(wd_by_j.values()),
        "points": points,
        "best": best,
    }


def _pstdev(values: list[float]) -> float | None:
    """Population std in plain floats (statistics.pstdev uses exact fractions: ~20x slower here)."""
    if not values:
        return None
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))


def variants_view(session: Session, study_id: int) -> dict[str, Any]:
    study = get_study(session, study_id)
    names = {v.id: v.name for v in study.variants}
    items = []
    for v in study.variants:
        model_artefact = session.scalar(
            sa.select(Artefact.id)
            .where(Artefact.variant_id == v.id, Artefact.kind == "model")
            .order_by(Artefact.id)
        )
        items.append(
            {
                **{
                    f: getattr(v, f)
                    for f in [
                        "id",
                        "name",
                        "kind",
                        "spec",
                        "flops_ratio_achieved",
                        "kept_fractions",
                        "params",
                        "params_nonzero",
                        "flops",
                        "size_bytes",
                        "size_sparse_bytes",
                        "latency",
                        "histograms",
                        "scan",
                        "measured",
                    ]
                },
                "source": names.get(v.source_variant_id) if v.source_variant_id else None,
                "model_artefact_id": model_artefact,
            }
        )
    return {"study_id": study_id, "items": items}


def compare(session: Session, study_id: int) -> dict[str, Any]:
    study = get_study(session, study_id)
    base = next((v for v in study.variants if v.kind == "base"), None)
    stats = {
        vid: (n, b1, b5)
        for vid, n, b1, b5 in session.execute(
            sa.select(Run.variant_id, sa.func.count(), sa.func.max(Run.top1), sa.func.max(Run.top5))
            .where(Run.study_id == study_id, Run.kind.in_(("train", "quantise")), Run.status.in_(FINISHED_OK))
            .group_by(Run.variant_id)
        )
    }
    rows = []
    for v in study.variants:
        n, best1, best5 = stats.get(v.id, (0, None, None))
        best_run = None
        if best1 is not None:
            best_run = session.scalars(
                sa.select(Run)
                .where(
                    Run.variant_id == v.id,
                    Run.kind.in_(("train", "quantise")),
                    Run.status.in_(FINISHED_OK),
                    Run.top1 == best1,
                )
                .limit(1)
            ).first()
        rows.append(
            {
                "name": v.name,
                "kind": v.kind,
                "params": v.params,
                "params_nonzero": v.params_nonzero,
                "compression_rate": (base.params / v.params_nonzero)
                if base and base.params and v.params_nonzero
                else None,
                "flops": v.flops,
                "flops_kept": (v.flops / base.flops) if base and base.flops and v.flops is not None else None,
                "flops_ratio_target": (v.spec or {}).get("flops_ratio"),
                "flops_ratio_achieved": v.flops_ratio_achieved,
                "size_bytes": v.size_bytes,
                "size_sparse_bytes": v.size_sparse_bytes,
                "size_mb": v.size_bytes / 1e6 if v.size_bytes is not None else None,
                "latency": v.latency,
                "best_top1": best1,
                "best_top5": best5,
                "best_lr": best_run.lr if best_run else None,
                "best_wd": best_run.wd if best_run else None,
                "finished_runs": n,
            }
        )
    return {
        "study_id": study_id,
        "base": base.name if base else "base",
        "flops_convention": FLOPS_CONVENTION,
        "variants": rows,
    }
