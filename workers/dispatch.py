"""Sending runs to the workers, and the reconciler that repairs what a lost message or a dead
worker left behind. Celery carries run ids only; the database holds the state.

Order of operations in `dispatch_ready`: mark runs `queued` and commit, then send. A crash between
the two leaves `queued` runs with no message, which `reconcile` re-sends; the opposite order could
start a run the database still calls `pending` and dispatch it twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import Run, Study, utcnow
from backend.db.study_purge import purge_if_released
from backend.settings import Settings, get_settings

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 1.0


def _app(settings: Settings | None = None):  # noqa: ANN202 - celery.Celery, imported lazily
    from workers.celery_app import get_app

    return get_app(settings)


def send_run(run_id: int, settings: Settings | None = None) -> None:
    from workers.celery_app import TASK_NAME

    app = _app(settings)
    app.send_task(TASK_NAME, args=[run_id], queue=app.conf.task_default_queue)


def dispatch_ready(session: Session, study_id: int | None = None, settings: Settings | None = None) -> int:
    """Queue every `pending` run (of `study_id`, or all) and send one task per run; returns how
    many were sent. Commits. When sending fails the unsent runs go back to `pending` and the
    error propagates (the broker is down: they are picked up later)."""
    query = sa.select(Run.id).where(Run.status == "pending").order_by(Run.id)
    if study_id is not None:
        query = query.where(Run.study_id == study_id)
    candidates = list(session.scalars(query))
    session.commit()
    if not candidates:
        return 0
    # Fail before touching the rows when no broker is configured.
    _app(settings)
    now = utcnow()
    queued: list[int] = []
    for chunk in _chunks(candidates, 500):
        rows = session.execute(
            sa.update(Run)
            .where(Run.id.in_(chunk), Run.status == "pending")
            .values(status="queued", queued_at=now)
            .returning(Run.id)
            .execution_options(synchronize_session=False)
        )
        queued.extend(rows.scalars())
    session.commit()
    queued.sort()
    sent = 0
    try:
        for run_id in queued:
            send_run(run_id, settings)
            sent += 1
    except Exception:
        unsent = queued[sent:]
        session.rollback()
        session.execute(
            sa.update(Run)
            .where(Run.id.in_(unsent), Run.status == "queued")
            .values(status="pending", queued_at=None)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        raise
    if sent:
        log.info("dispatched %d run(s)%s", sent, f" of study {study_id}" if study_id else "")
    return sent


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def reconcile(session: Session, settings: Settings | None = None) -> dict[str, int]:
    """One pass of repair; returns counts. Commits.

    - `pending` runs are dispatched (the broker was down when they became ready);
    - `queued` runs older than `reconcile_after_s` whose message is neither in the broker's queue
      nor held by a worker are sent again (the message was lost);
    - `running` runs whose heartbeat is older than `reconcile_after_s` (the worker died) go back to
      `queued` and are sent again; the claim lets the new delivery take them over and training
      resumes from the run's checkpoint. Such a run that was asked to stop (cancelled, or its
      study deleted) ends `cancelled` instead;
    - studies marked `deleting` none of whose runs still runs are purged.
    Duplicate messages are harmless: the claim in the database lets only one of them run.
    """
    settings = settings or get_settings()
    stale = utcnow() - timedelta(seconds=settings.reconcile_after_s)
    counts = {"dispatched": 0, "resent_queued": 0, "resent_running": 0, "cancelled_stale": 0, "purged": 0}
    counts["dispatched"] = dispatch_ready(session, settings=settings)
    counts["purged"] = _purge_released(session, settings)

    old_queued = list(
        session.scalars(
            sa.select(Run.id).where(Run.status == "queued", Run.queued_at < stale).order_by(Run.id)
        )
    )
    from backend.db.lifecycle import holder_is_dead

    running = session.execute(
        sa.select(
            Run.id, Run.worker, Run.heartbeat_at, Run.started_at, Run.created_at, Run.cancel_requested
        ).where(Run.status == "running")
    ).all()
    stale_running = []
    for run_id, holder, beat, started, created, cancel in running:
        if not (_older(beat or started or created, stale) or holder_is_dead(holder)):
            continue
        if cancel:
            counts["cancelled_stale"] += _cancel_stale(session, run_id, holder, settings)
        else:
            stale_running.append((run_id, holder))
    session.commit()
    if not old_queued and not stale_running:
        return counts
    waiting = _run_ids_in_flight(settings)
    now = utcnow()
    for run_id in old_queued:
        if run_id in waiting:
            continue
        hit = session.execute(
            sa.update(Run)
            .where(Run.id == run_id, Run.status == "queued", Run.queued_at < stale)
            .values(queued_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if hit:
            send_run(run_id, settings)
            counts["resent_queued"] += 1
    for run_id, holder in stale_running:
        hit = session.execute(
            sa.update(Run)
            .where(Run.id == run_id, Run.status == "running", Run.worker == holder)
            .values(status="queued", queued_at=now, worker=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if hit:
            log.warning("run %s: heartbeat of %s is stale; sending it again", run_id, holder)
            send_run(run_id, settings)
            counts["resent_running"] += 1
    return counts


def _cancel_stale(session: Session, run_id: int, holder: str | None, settings: Settings) -> int:
    """End a run whose worker is gone and that was asked to stop; purge its study if it was
    being deleted and this was its last running run. Returns 1 if this pass ended it."""
    from backend.db.lifecycle import after_terminal

    hit = session.execute(
        sa.update(Run)
        .where(Run.id == run_id, Run.status == "running", Run.worker == holder)
        .values(status="cancelled", finished_at=utcnow(), worker=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    if not hit:
        return 0
    study_id = session.scalar(sa.select(Run.study_id).where(Run.id == run_id))
    after_terminal(session, run_id)
    if study_id is not None:
        purge_if_released(session, study_id, settings.artifact_root)
    return 1


def _purge_released(session: Session, settings: Settings) -> int:
    deleting = list(session.scalars(sa.select(Study.id).where(Study.status == "deleting")))
    session.commit()
    return sum(purge_if_released(session, study_id, settings.artifact_root) for study_id in deleting)


def _older(moment: Any, limit: Any) -> bool:
    """`moment < limit`, also for SQLite, which hands timestamps back without their time zone."""
    if moment is None:
        return True
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=limit.tzinfo)
    return moment < limit


def _run_ids_in_flight(settings: Settings) -> set[int]:
    """Run ids whose message waits in the broker queue (Redis) or is held by a live worker.
    Best effort: what cannot be inspected counts as not waiting (a duplicate is harmless)."""
    from workers.celery_app import TASK_NAME

    app = _app(settings)
    ids: set[int] = set()
    try:
        replies = app.control.inspect(timeout=PING_TIMEOUT_S)
        for method in (replies.active, replies.reserved):
            for tasks in (method() or {}).values():
                for task in tasks:
                    if task.get("name") == TASK_NAME and task.get("args"):
                        ids.add(int(task["args"][0]))
    except Exception as exc:  # noqa: BLE001 - inspection is advisory
        log.debug("worker inspection failed: %s", exc)
    try:
        with app.connection_for_write() as conn:
            client = conn.default_channel.client
            for raw in client.lrange(app.conf.task_default_queue, 0, -1):
                ids.update(_run_id_of_message(raw))
    except Exception as exc:  # noqa: BLE001 - not a Redis broker, or unreachable
        log.debug("queue inspection failed: %s", exc)
    return ids


def _run_id_of_message(raw: bytes) -> set[int]:
    try:
        message = json.loads(raw)
        headers = message.get("headers") or {}
        if headers.get("task") != "prunescape.execute_run":
            return set()
        args = headers.get("argsrepr") or ""
        return {int(args.strip("()[], "))}
    except (ValueError, TypeError, AttributeError):
        return set()
