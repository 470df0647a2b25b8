"""Changing a study after it was created: cancel it, delete it, retry one of its runs.

Deleting never corrupts other work: every run is cancelled first (unstarted ones at once, running
ones at their next epoch); a study none of whose runs is still running is purged at once (rows,
then files); otherwise it is marked `deleting` and purged when its last running run lets go
(`backend.db.study_purge.purge_if_released`, called by the worker when a run ends and by the
reconciler). Ids are never reused (migration 0004), so a worker still finishing a deleted run can
never write into a later study's run.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import Run, Study, utcnow
from backend.db.study_purge import purge_study
from backend.db.study_state import refresh_status
from backend.run_states import RETRYABLE, status_after_dependency
from backend.services.errors import Conflict
from backend.services.queries import get_run, get_study, variant_names
from backend.services.read_cache import read_cache
from backend.services.run_views import run_view
from backend.services.sending import send_ready_runs
from backend.settings import Settings


def _refuse_while_deleting(study: Study) -> None:
    if study.status == "deleting":
        raise Conflict(f"study {study.id} is being deleted; it waits for its running runs to stop")


def cancel_study(session: Session, study_id: int) -> dict[str, Any]:
    study = get_study(session, study_id)
    _refuse_while_deleting(study)
    cancelled, requested = cancel_runs(session, study_id)
    was_open = study.status in ("pending", "running")
    session.expire_all()
    study = get_study(session, study_id)
    if study.kind == "native" and (cancelled or requested or was_open):
        study.status = "cancelled"
    status = refresh_status(session, study)
    session.commit()
    return {"study_id": study_id, "cancelled": cancelled, "cancel_requested": requested, "status": status}


def cancel_runs(session: Session, study_id: int) -> tuple[int, int]:
    """Cancel the study's unstarted runs and ask its running ones to stop at their next epoch;
    returns (cancelled, asked to stop). Does not commit."""
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
    return cancelled, requested


def delete_study(session: Session, study_id: int, settings: Settings) -> dict[str, Any]:
    """Delete the study now when none of its runs is running, else mark it `deleting` (see the
    module docstring). Returns {"study_id", "deleted": bool, "waiting_for_runs": n}."""
    study = get_study(session, study_id)
    cancel_runs(session, study_id)
    running = session.scalar(
        sa.select(sa.func.count()).where(Run.study_id == study_id, Run.status == "running")
    )
    if running:
        study.status = "deleting"
        study.finished_at = None
        session.commit()
        read_cache.drop_study(study_id)
        return {"study_id": study_id, "deleted": False, "waiting_for_runs": int(running)}
    session.commit()
    purge_study(session, study_id, settings.artifact_root)
    read_cache.drop_study(study_id)
    return {"study_id": study_id, "deleted": True, "waiting_for_runs": 0}


def retry_run(session: Session, run_id: int) -> dict[str, Any]:
    run = get_run(session, run_id)
    if run.status not in RETRYABLE:
        raise Conflict(f"run {run_id} is {run.status}; only failed or cancelled runs can be retried")
    if run.depends_on_id is not None:
        dep = session.get(Run, run.depends_on_id)
        if dep is not None and status_after_dependency(dep.status, run.kind) == "cancelled":
            raise Conflict(
                f"run {run_id} depends on run {dep.id}, which is {dep.status}; retry that run first"
            )
        new_status = "pending" if dep is None else status_after_dependency(dep.status, run.kind)
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
    _refuse_while_deleting(study)
    if study.status == "cancelled":
        study.status = "pending"
    session.commit()
    send_ready_runs(session, run.study_id)
    session.refresh(run)
    return {"run": run_view(run, variant_names(session, run.study_id)), "reopened": reopened}


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
