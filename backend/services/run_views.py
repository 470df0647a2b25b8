"""A study's runs as the API shows them: paged lists (cached per data version) and one run with
its epochs and artefacts."""

from __future__ import annotations

from array import array
from typing import Any

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import Artefact, Run
from backend.run_states import ENDED
from backend.services.artefact_files import download_name
from backend.services.errors import NotFound
from backend.services.queries import as_utc, get_run, variant_names
from backend.services.read_cache import StudyVersion, read_cache, study_version


def runs_page_json(
    session: Session,
    study_id: int,
    *,
    limit: int,
    offset: int,
    variant: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    sort: str = "id",
) -> bytes:
    """One page of a study's runs as the API's RunList JSON, with UTC times; `sort` is a key of
    RUN_SORTS (by id, or by accuracy with the runs without one last).

    Without a status filter the page's ids come from the study's cached id list (the runs a
    variant / kind filter selects never change once stored; new runs move the version), so a deep
    page is a primary-key range read instead of OFFSET over the study's 10,000 runs plus a count.
    A page whose runs have all ended is kept as bytes for this data version: an ended run's row
    changes only when a retry puts it back in the active set, which moves the version."""
    version = study_version(session, study_id)  # 404 when there is no such study
    names = _cachedvariant_names(session, version)
    variant_id = None
    if variant is not None:
        variant_id = next((vid for vid, name in names.items() if name == variant), None)
        if variant_id is None:
            raise NotFound(f"study {study_id} has no variant {variant!r}")
    key = ("runs_page", study_id, version, variant_id, kind, status, sort, limit, offset)
    body = read_cache.get(key)
    if body is not None:
        return body
    filters = [Run.study_id == study_id]
    if variant_id is not None:
        filters.append(Run.variant_id == variant_id)
    if kind is not None:
        filters.append(Run.kind == kind)
    if status is None and sort == "id":
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
        if status is not None:
            filters.append(Run.status == status)
        total = session.scalar(sa.select(sa.func.count()).where(*filters)) or 0
        rows = session.execute(
            sa.select(*RUN_COLUMNS).where(*filters).order_by(*RUN_SORTS[sort]).limit(limit).offset(offset)
        ).all()
    items = [_run_row_view(row, names) for row in rows]
    body = pydantic_core.to_json({"items": items, "total": total, "limit": limit, "offset": offset})
    ended = status is None or status in ENDED
    if ended and all(item["status"] in ENDED for item in items):
        read_cache.put(key, body, len(body))
    return body


# Sort keys of a study's runs list: by id, or by an accuracy with the runs that have none (not
# finished, failed, cancelled) last either way, then by id so pages never overlap.
RUN_SORTS = {
    "id": (Run.id.asc(),),
    "-id": (Run.id.desc(),),
    "top1": (Run.top1.is_(None), Run.top1.asc(), Run.id.asc()),
    "-top1": (Run.top1.is_(None), Run.top1.desc(), Run.id.asc()),
    "top5": (Run.top5.is_(None), Run.top5.asc(), Run.id.asc()),
    "-top5": (Run.top5.is_(None), Run.top5.desc(), Run.id.asc()),
}


def _cachedvariant_names(session: Session, version: StudyVersion) -> dict[int, str]:
    """Variant id -> name; a study's variants are made with it and never renamed."""
    key = ("variant_names", version.study_id, (version.database, version.created_at))
    return read_cache.get_or_build(
        key, lambda: variant_names(session, version.study_id), size=lambda names: 100 * len(names)
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


# The run columns the API shows (schemas.RunOut, less the variant's name): every column of the
# table but the worker-side internals. A test holds RunOut to this list.
INTERNAL_RUN_COLUMNS = ("result", "checkpoint_path", "model_path")
RUN_FIELDS = [c.name for c in Run.__table__.columns if c.name not in INTERNAL_RUN_COLUMNS]
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


def run_detail(session: Session, run_id: int) -> dict[str, Any]:
    run = get_run(session, run_id)
    view = run_view(run, variant_names(session, run.study_id))
    view["result"] = run.result
    view["epochs"] = list(run.epochs)
    artefacts = session.scalars(sa.select(Artefact).where(Artefact.run_id == run.id).order_by(Artefact.id))
    view["artefacts"] = [artefact_view(a, study_id=run.study_id, variant=view["variant"]) for a in artefacts]
    return view


def artefact_view(artefact: Artefact, *, study_id: int | None, variant: str | None) -> dict[str, Any]:
    return {
        "id": artefact.id,
        "run_id": artefact.run_id,
        "variant_id": artefact.variant_id,
        "kind": artefact.kind,
        "bytes": artefact.bytes,
        "created_at": artefact.created_at,
        "url": f"/api/v1/artefacts/{artefact.id}",
        "filename": download_name(artefact, study_id=study_id, variant=variant),
    }
