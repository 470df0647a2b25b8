"""The run state machine in the database (docs/contracts.md section 3). No Celery here.

Every transition is a conditional UPDATE, so two processes racing on one run (a redelivered
message, a reconciler re-send, a second worker) cannot both win:

    pending|queued --claim--> running --finish--> succeeded | diverged | cancelled
                                       --fail---> failed
    running (holder gone: stale heartbeat, or a dead pid on this host) --claim--> running

`attempts` counts claims; a run claimed `max_attempts` times without finishing ends `failed` with
its last error kept. Finishing releases the runs that waited on it (blocked -> pending, or
cancelled when the dependency did not produce what they need) and rolls the study status up.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import EpochMetric, Run, Study, utcnow
from backend.db.study_state import refresh_status
from backend.json_values import finite_or_none
from backend.run_states import CLAIMABLE, ENDED, status_after_dependency


def worker_identity(name: str | None = None) -> str:
    """A unique holder name for one claim: `<name or host>|<host>|<pid>|<nonce>`.

    The host and pid let a later claim on the same host see that the holder process is gone; the
    nonce makes ownership exact even when a restarted worker gets the same pid."""
    host = socket.gethostname()
    return f"{name or host}|{host}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


def holder_is_dead(worker: str | None) -> bool:
    """True when `worker` (a `worker_identity`) names a process on this host that no longer runs."""
    if not worker or worker.count("|") != 3:
        return False
    _, host, pid, _ = worker.split("|")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@dataclass
class Claim:
    claimed: bool
    status: str | None  # the run's status after the attempt
    attempts: int = 0
    reason: str = ""
    released: list[int] = field(default_factory=list)  # runs made pending (only when failed here)


def _stale_before(stale_after_s: float) -> datetime:
    return utcnow() - timedelta(seconds=stale_after_s)


def claim_run(
    session: Session, run_id: int, worker: str, *, max_attempts: int, stale_after_s: float
) -> Claim:
    """Take `run_id` for `worker` (see module doc). Commits. A run that would be claimed for the
    (max_attempts + 1)-th time is failed instead, with its last error kept."""
    now = utcnow()
    stale = _stale_before(stale_after_s)
    takeover = sa.and_(
        Run.status == "running",
        sa.or_(
            Run.heartbeat_at.is_(None) & (sa.func.coalesce(Run.started_at, Run.created_at) < stale),
            Run.heartbeat_at < stale,
        ),
    )
    claimable = sa.or_(Run.status.in_(CLAIMABLE), takeover)
    if _claim_update(session, run_id, worker, now, claimable, max_attempts):
        return _claimed(session, run_id)
    row = session.execute(sa.select(Run.status, Run.worker, Run.attempts).where(Run.id == run_id)).first()
    session.commit()
    if row is None:
        return Claim(False, None, reason=f"run {run_id} does not exist")
    status, holder, attempts = row
    if status == "running" and holder == worker:
        # Ours already: a retry after the connection dropped just after this claim's COMMIT.
        return Claim(True, "running", attempts)
    holder_dead = status == "running" and holder_is_dead(holder)
    # Same host, holder process gone (killed worker): no need to wait for its heartbeat to age.
    if holder_dead and _claim_update(session, run_id, worker, now, Run.worker == holder, max_attempts):
        return _claimed(session, run_id)
    exhausted = sa.or_(claimable, (Run.status == "running") & (Run.worker == holder))
    could_take = status in CLAIMABLE or holder_dead or _is_stale(session, run_id, takeover)
    if could_take and attempts >= max_attempts:
        failed = session.execute(
            sa.update(Run)
            .where(Run.id == run_id, Run.attempts >= max_attempts, exhausted)
            .values(
                status="failed",
                finished_at=now,
                worker=None,
                error=sa.func.coalesce(Run.error + "\n\n", "")
                + f"gave up after {attempts} attempt(s) (max_attempts={max_attempts})",
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if failed:
            released = after_terminal(session, run_id)
            return Claim(False, "failed", attempts, "attempts exhausted", released)
    return Claim(False, status, attempts, f"run {run_id} is {status}")


def _is_stale(session: Session, run_id: int, takeover: Any) -> bool:
    stale = session.scalar(sa.select(sa.func.count()).where(Run.id == run_id, takeover))
    session.commit()
    return bool(stale)


def _claim_update(
    session: Session, run_id: int, worker: str, now: datetime, condition: Any, max_attempts: int
) -> bool:
    claimed = session.execute(
        sa.update(Run)
        .where(Run.id == run_id, Run.attempts < max_attempts, condition)
        .values(
            status="running",
            worker=worker,
            attempts=Run.attempts + 1,
            started_at=sa.func.coalesce(Run.started_at, now),
            heartbeat_at=now,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return claimed == 1


def _claimed(session: Session, run_id: int) -> Claim:
    attempts = session.scalar(sa.select(Run.attempts).where(Run.id == run_id)) or 0
    session.commit()
    return Claim(True, "running", attempts)


def claim_group_partners(
    session: Session, leader_id: int, worker: str, *, limit: int, max_attempts: int
) -> dict[int, int]:
    """Claim for `worker` up to `limit` more train runs to train fused with `leader_id` (which it
    holds): same study, same variant, still claimable (pending / queued, not asked to stop, attempts
    left), lowest ids first (grid order). Commits; returns {run id: attempts} of the partners held,
    ascending (those `worker` already held count: a repeat after a lost reply completes the claim).

    One conditional UPDATE per pass takes only rows that are still claimable when it runs, so two
    workers racing for the same rows never both get one (Postgres re-checks the condition on rows
    another transaction changed; SQLite serialises writers). Each partner counts an attempt, as a
    claim does; its own message, delivered later, finds it running or finished and does nothing."""
    leader = session.execute(
        sa.select(Run.study_id, Run.variant_id, Run.kind, Run.status, Run.worker).where(Run.id == leader_id)
    ).first()
    session.commit()
    if (
        limit < 1
        or leader is None
        or leader.kind != "train"
        or (leader.status, leader.worker) != ("running", worker)
    ):
        return {}
    same_group = (
        (Run.study_id == leader.study_id)
        & (Run.variant_id == leader.variant_id)
        & (Run.kind == "train")
        & (Run.id != leader_id)
    )
    held = dict(
        session.execute(
            sa.select(Run.id, Run.attempts)
            .where(same_group, Run.status == "running", Run.worker == worker)
            .order_by(Run.id)
            .limit(limit)
        ).all()
    )
    session.commit()
    claimable = (
        same_group
        & Run.status.in_(CLAIMABLE)
        & (Run.attempts < max_attempts)
        & Run.cancel_requested.is_not(True)
    )
    for _ in range(3):  # a pass can lose rows to another worker's claim; look for others twice more
        wanted = limit - len(held)
        if wanted <= 0:
            break
        candidates = list(session.scalars(sa.select(Run.id).where(claimable).order_by(Run.id).limit(wanted)))
        if not candidates:
            session.commit()
            break
        now = utcnow()
        rows = session.execute(
            sa.update(Run)
            .where(Run.id.in_(candidates), claimable)
            .values(
                status="running",
                worker=worker,
                attempts=Run.attempts + 1,
                started_at=sa.func.coalesce(Run.started_at, now),
                heartbeat_at=now,
            )
            .returning(Run.id, Run.attempts)
            .execution_options(synchronize_session=False)
        )
        held.update(rows.tuples().all())
        session.commit()
    return dict(sorted(held.items()))


def heartbeat(session: Session, run_id: int, worker: str) -> bool:
    """Refresh the run's heartbeat; False when `worker` no longer holds the run. Commits."""
    held = session.execute(
        sa.update(Run)
        .where(Run.id == run_id, Run.status == "running", Run.worker == worker)
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return held == 1


def is_cancel_requested(session: Session, run_id: int) -> bool:
    requested = session.scalar(sa.select(Run.cancel_requested).where(Run.id == run_id))
    session.commit()
    return bool(requested)


def holds(session: Session, run_id: int, worker: str) -> bool:
    held = session.scalar(sa.select(sa.func.count()).where(Run.id == run_id, Run.worker == worker))
    session.commit()
    return bool(held)


_EPOCH_FIELDS = ("train_loss", "train_top1", "val_loss", "top1", "top5", "lr", "seconds")


def record_epoch(session: Session, run_id: int, epoch: int, metrics: dict[str, Any]) -> None:
    """Upsert one epoch's metrics (a resumed run rewrites, never duplicates, an epoch). Commits.

    `metrics` uses the table's names (train_loss, train_top1, val_loss, top1, top5, lr, seconds)."""
    values = {k: finite_or_none(metrics.get(k)) for k in _EPOCH_FIELDS}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(EpochMetric).values(run_id=run_id, epoch=epoch, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["run_id", "epoch"], set_=values)
    session.execute(stmt)
    session.execute(
        sa.update(Run)
        .where(Run.id == run_id)
        .values(
            epochs_done=sa.case((Run.epochs_done < epoch, epoch), else_=Run.epochs_done),
            heartbeat_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()


def finish_run(
    session: Session,
    run_id: int,
    worker: str,
    *,
    status: str,
    top1: float | None = None,
    top5: float | None = None,
    loss: float | None = None,
    result: dict[str, Any] | None = None,
    model_path: str | None = None,
    checkpoint_path: str | None = None,
    epochs_done: int | None = None,
) -> list[int] | None:
    """Store the outcome of a run `worker` holds; returns the ids released to `pending`, or None
    when the worker no longer holds the run (its result is dropped: another claim owns it)."""
    if status not in ("succeeded", "diverged", "cancelled"):
        raise ValueError(f"finish_run: status must be succeeded, diverged or cancelled, got {status!r}")
    values: dict[str, Any] = {
        "status": status,
        "top1": finite_or_none(top1),
        "top5": finite_or_none(top5),
        "loss": finite_or_none(loss),
        "result": result,
        "finished_at": utcnow(),
        "error": None,
    }
    if model_path is not None:
        values["model_path"] = model_path
    if checkpoint_path is not None:
        values["checkpoint_path"] = checkpoint_path
    if epochs_done is not None:
        values["epochs_done"] = epochs_done
    return _terminal(session, run_id, worker, values)


def fail_run(session: Session, run_id: int, worker: str | None, error: str) -> list[int] | None:
    """Mark the run failed with `error` (a message or a traceback); dependents are cancelled."""
    values = {"status": "failed", "error": error, "finished_at": utcnow()}
    return _terminal(session, run_id, worker, values)


def requeue_after_error(session: Session, run_id: int, worker: str, error: str) -> bool:
    """Give a held run back (`queued`) after an unexpected error, keeping the error; a retry will
    claim it again (attempts keeps counting). False when `worker` no longer holds it."""
    released = session.execute(
        sa.update(Run)
        .where(Run.id == run_id, Run.status == "running", Run.worker == worker)
        .values(status="queued", worker=None, error=error, queued_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return released == 1


def _terminal(session: Session, run_id: int, worker: str | None, values: dict[str, Any]) -> list[int] | None:
    where = [Run.id == run_id, Run.status == "running"]
    if worker is not None:
        where.append(Run.worker == worker)
    done = session.execute(
        sa.update(Run).where(*where).values(**values).execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    if done != 1 and not (worker is not None and _ended_by(session, run_id, worker, values["status"])):
        return None
    return after_terminal(session, run_id)


def _ended_by(session: Session, run_id: int, worker: str, status: str) -> bool:
    """The run already ended `status` under `worker`: a retry after the connection dropped just
    after the first attempt's COMMIT (releasing the dependents again is harmless)."""
    ended = session.scalar(
        sa.select(sa.func.count()).where(Run.id == run_id, Run.status == status, Run.worker == worker)
    )
    session.commit()
    return bool(ended)


def after_terminal(session: Session, run_id: int) -> list[int]:
    """Release / cancel the dependents of a finished run and roll the study up. Commits."""
    released = release_dependents(session, run_id)
    study_id = session.scalar(sa.select(Run.study_id).where(Run.id == run_id))
    if study_id is not None:
        roll_up_study(session, study_id)
    session.commit()
    return released


def release_dependents(session: Session, run_id: int) -> list[int]:
    """Blocked runs waiting on `run_id` become pending when it produced what they need, else
    cancelled (and so on down the chain). Returns the ids made pending. Does not commit."""
    status = session.scalar(sa.select(Run.status).where(Run.id == run_id))
    if status not in ENDED:
        return []
    released: list[int] = []
    waiting = session.execute(
        sa.select(Run.id, Run.kind).where(Run.depends_on_id == run_id, Run.status == "blocked")
    ).all()
    now = utcnow()
    to_cancel = []
    for dep_id, kind in waiting:
        if status_after_dependency(status, kind) == "pending":
            hit = session.execute(
                sa.update(Run)
                .where(Run.id == dep_id, Run.status == "blocked")
                .values(status="pending")
                .execution_options(synchronize_session=False)
            ).rowcount
            if hit:
                released.append(dep_id)
        else:
            to_cancel.append(dep_id)
    while to_cancel:
        session.execute(
            sa.update(Run)
            .where(Run.id.in_(to_cancel), Run.status == "blocked")
            .values(
                status="cancelled",
                finished_at=now,
                error=f"cancelled: run {run_id} it depends on (directly or not) ended {status}",
            )
            .execution_options(synchronize_session=False)
        )
        to_cancel = list(
            session.scalars(
                sa.select(Run.id).where(Run.depends_on_id.in_(to_cancel), Run.status == "blocked")
            )
        )
    return released


def roll_up_study(session: Session, study_id: int) -> str | None:
    """Bring the study's stored status up to date from its runs (the service's one rule:
    running while any run is active, else succeeded / failed; `cancelled` sticks). Does not commit."""
    study = session.get(Study, study_id)
    if study is None:
        return None
    session.refresh(study)
    return refresh_status(session, study)


def study_is_finished(session: Session, study_id: int) -> bool:
    active = session.scalar(
        sa.select(sa.func.count()).where(Run.study_id == study_id, Run.status.not_in(ENDED))
    )
    return not active
