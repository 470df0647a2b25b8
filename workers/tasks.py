"""The one Celery task: `prunescape.execute_run(run_id)`.

Claim the run in the database, run its job (workers/jobs/), store the result, release the runs
that waited on it and dispatch them. The task is idempotent: a second delivery of the same id finds
the run claimed or finished and does nothing. `execute()` is the same without Celery (tests, CLI).

Errors: a domain error (the engine's ValueError subclasses: bad data path, unreachable pruning
target, ...) fails the run at once with its message; anything else is retried (the run goes back to
`queued` with the traceback kept) until `settings.max_attempts` claims, then the run fails with the
traceback stored.

Database trouble is not the run's fault: while the database is unreachable (a restart, a network
cut) every read and write of the task is retried with backoff for up to `reconcile_after_s`, the
time after which the reconciler would hand a silent run to another worker anyway.
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import shared_task
from sqlalchemy.orm import Session

from backend.artefact_layout import rewind_rel
from backend.db import lifecycle
from backend.db.models import Artefact, Run, Variant
from backend.db.session import UNREACHABLE_ERRORS, retry_while_unreachable, session_factory
from backend.db.study_purge import purge_if_released
from backend.json_values import json_safe
from backend.settings import Settings, get_settings
from workers.celery_app import TASK_NAME

log = logging.getLogger(__name__)
RETRY_COUNTDOWN_S = (2, 10, 30, 60)


class RetryableError(Exception):
    """An unexpected error in a run that has attempts left; carries the traceback text."""

    def __init__(self, run_id: int, text: str) -> None:
        super().__init__(f"run {run_id} failed, will retry:\n{text}")
        self.run_id = run_id
        self.text = text


@dataclass
class Outcome:
    run_id: int
    status: str  # what the run is now, or "skipped"
    detail: str = ""
    released: int = 0
    group: list[Outcome] = field(default_factory=list)  # the other runs of its fused group, if any


def _is_domain_error(exc: BaseException) -> bool:
    from pydantic import ValidationError

    from workers.engine.errors import EngineError

    return isinstance(exc, EngineError | ValidationError)


def execute(run_id: int, *, settings: Settings | None = None, worker_name: str | None = None) -> Outcome:
    """Claim and run `run_id` to a final state. Raises RetryableError when an unexpected error
    left attempts to spend (the run is `queued` again); never raises for domain errors.

    A train run may take partners: when the worker's fused group size (settings.fused_group_size,
    resolved by the train job) is above 1 and its study allows it (recipe.fused), more claimable
    train runs of its study and variant are claimed with it and trained as one fused group
    (`_execute_group`); each is stored as its solo run would be."""
    settings = settings or get_settings()
    db = partial(retry_while_unreachable, session_factory(settings), within_s=settings.reconcile_after_s)
    worker = lifecycle.worker_identity(worker_name)
    claim = db(
        lambda s: lifecycle.claim_run(
            s, run_id, worker, max_attempts=settings.max_attempts, stale_after_s=settings.reconcile_after_s
        ),
        what=f"claiming run {run_id}",
    )
    if not claim.claimed:
        if claim.released or claim.status == "failed":
            db(lambda s: _dispatch(s, run_id, settings), what=f"dispatching after run {run_id}")
        log.info("run %s not claimed: %s", run_id, claim.reason)
        return Outcome(run_id, "skipped" if claim.status != "failed" else "failed", claim.reason)
    # Beat from the claim on: what follows (reading the inputs, the first import of torch when
    # the group size is decided) can take longer than a reconciler allows a silent run.
    beat = _Heartbeat(session_factory(settings), [run_id], worker, settings.heartbeat_s)
    beat.start()
    try:
        inp = db(lambda s: load_input(s, run_id, settings), what=f"reading run {run_id}")
    except UNREACHABLE_ERRORS:
        beat.stop()
        raise  # still unreachable: the reconciler hands the run on
    except Exception:  # noqa: BLE001 - a run whose inputs cannot be read is a failed run
        beat.stop()
        _fail(db, run_id, worker, traceback.format_exc(), settings)
        return Outcome(run_id, "failed", "could not read its inputs")

    partners = _claim_partners(db, inp, worker, settings)
    if partners:
        beat.hold(sorted(partners))  # claimed with a fresh heartbeat; beaten from now on
        return _execute_group(db, inp, {run_id: claim.attempts, **partners}, worker, settings, beat)
    try:
        result = None if _cancel_requested(db, run_id) else _run_job(inp, db, run_id, beat)
    except UNREACHABLE_ERRORS:
        raise  # the database stayed away, not the run's fault: the reconciler requeues it
    except Exception as exc:  # noqa: BLE001 - sorted into domain / retryable below
        beat.stop()
        text = _error_text(exc, settings)
        outcome = _after_error(db, run_id, worker, claim.attempts, exc, text, settings)
        if outcome is None:
            raise RetryableError(run_id, text) from exc
        return outcome
    finally:
        beat.stop()
    return db(lambda s: _finish(s, inp, worker, result, settings), what=f"storing the result of run {run_id}")


def _finish(session: Session, inp: Any, worker: str, result: Any, settings: Settings) -> Outcome:
    """Store a run's JobResult (None: it was cancelled before it trained), release its dependents."""
    run_id = inp.run_id
    if result is None:
        released = lifecycle.finish_run(session, run_id, worker, status="cancelled")
    else:
        released = store_result(session, inp, worker, result)
    if released is None:
        log.warning("run %s: %s no longer holds it; result dropped", run_id, worker)
        return Outcome(run_id, "skipped", "lost the claim while running")
    _dispatch(session, run_id, settings)
    status = session.scalar(sa.select(Run.status).where(Run.id == run_id))
    session.commit()
    # No row: its study was being deleted, and this run was the last one it waited for.
    return Outcome(run_id, status or "purged with its study", released=len(released))


def _after_error(
    db: Any, run_id: int, worker: str, attempts: int, exc: BaseException, text: str, settings: Settings
) -> Outcome | None:
    """Settle a held run whose job raised `exc`: a domain error fails it with its message, an
    unexpected one fails it once its attempts are spent, ends it cancelled when it was asked to
    stop, else gives it back `queued` (None: the caller has it retried)."""
    if _is_domain_error(exc):
        _fail(db, run_id, worker, f"{type(exc).__name__}: {exc}", settings)
        return Outcome(run_id, "failed", str(exc))
    if attempts >= settings.max_attempts:
        _fail(db, run_id, worker, text, settings)
        return Outcome(run_id, "failed", f"attempts exhausted: {exc}")
    if _cancel_requested(db, run_id):  # cancelled (or its study deleted) meanwhile: no retry
        db(lambda s: _end_cancelled(s, run_id, worker, settings), what=f"cancelling run {run_id}")
        return Outcome(run_id, "cancelled", f"cancelled after an error: {exc}")
    db(lambda s: lifecycle.requeue_after_error(s, run_id, worker, text), what=f"requeueing run {run_id}")
    return None


# --- fused groups (docs/spec.md section 8) ----------------------------------------------------------
def _claim_partners(db: Any, inp: Any, worker: str, settings: Settings) -> dict[int, int]:
    """The train runs claimed to train fused with `inp` (run id -> attempts); none when the group
    size for it is 1."""
    if inp.kind != "train":
        return {}
    from backend.settings import parse_group_size
    from workers.jobs.train import group_size_for

    try:
        size = group_size_for(inp, parse_group_size(settings.fused_group_size))
    except Exception as exc:  # noqa: BLE001 - the solo path meets and reports whatever this was
        log.warning("run %s: no fused group (%s: %s)", inp.run_id, type(exc).__name__, exc)
        return {}
    if size <= 1:
        return {}
    return db(
        lambda s: lifecycle.claim_group_partners(
            s, inp.run_id, worker, limit=size - 1, max_attempts=settings.max_attempts
        ),
        what=f"claiming partners of run {inp.run_id}",
    )


def _execute_group(
    db: Any, leader: Any, attempts: dict[int, int], worker: str, settings: Settings, beat: _Heartbeat
) -> Outcome:
    """Train the held runs `attempts` (the leader's and its partners' ids -> attempts) as one fused
    group. Each run is settled on its own as soon as it leaves the group: stored like a solo run
    (its dependents released), or failed / requeued by its own error. An error of the group's
    training settles every run not settled yet. `beat` beats every held run and is stopped here.
    Returns the leader's Outcome (`group`: the others')."""
    from workers.jobs.train import run_train_group

    leader_id = leader.run_id
    outcomes: dict[int, Outcome] = {}
    errors: dict[int, str] = {}  # the runs given back to the queue, with their errors
    inputs = {leader_id: leader}
    for run_id in sorted(attempts):
        if run_id == leader_id:
            continue
        try:
            inputs[run_id] = db(lambda s, r=run_id: load_input(s, r, settings), what=f"reading run {run_id}")
        except UNREACHABLE_ERRORS:
            raise
        except Exception:  # noqa: BLE001 - it fails alone
            beat.release(run_id)
            _fail(db, run_id, worker, traceback.format_exc(), settings)
            outcomes[run_id] = Outcome(run_id, "failed", "could not read its inputs")
    for run_id in sorted(inputs):
        if _cancel_requested(db, run_id):  # asked to stop before it started: as a solo run ends
            inp = inputs.pop(run_id)
            beat.release(run_id)
            outcomes[run_id] = db(
                lambda s, i=inp: _finish(s, i, worker, None, settings), what=f"cancelling run {run_id}"
            )
    log.info("runs %s: training fused as one group", sorted(inputs))

    def settle(run_id: int, result: Any) -> None:
        beat.release(run_id)
        if isinstance(result, Exception):
            text = _error_text(result, settings)
            outcome = _after_error(db, run_id, worker, attempts[run_id], result, text, settings)
            if outcome is None:
                errors[run_id] = text
                outcome = Outcome(run_id, "queued", f"given back after an error: {result}")
        else:
            outcome = db(
                lambda s: _finish(s, inputs[run_id], worker, result, settings),
                what=f"storing the result of run {run_id}",
            )
        outcomes[run_id] = outcome

    hooks = {run_id: _job_hooks(db, run_id, beat) for run_id in inputs}
    try:
        if inputs:
            run_train_group([inputs[r] for r in sorted(inputs)], hooks, on_result=settle)
    except UNREACHABLE_ERRORS:
        raise  # the database stayed away: the reconciler requeues every run still running
    except Exception as exc:  # noqa: BLE001 - the group's error is each unsettled run's
        beat.stop()
        for run_id in sorted(set(inputs) - set(outcomes)):
            settle(run_id, exc)
    finally:
        beat.stop()
    _send_again(sorted(r for r in errors if r != leader_id), settings)
    if leader_id in errors:
        raise RetryableError(leader_id, errors[leader_id])
    outcome = outcomes[leader_id]
    outcome.group = [outcomes[r] for r in sorted(outcomes) if r != leader_id]
    return outcome


def _send_again(run_ids: list[int], settings: Settings) -> None:
    """Partners given back to the queue after an error: their own messages may be spent already,
    so each gets a new one (a duplicate does nothing); the reconciler re-sends any that fail."""
    if not run_ids or not settings.broker_url:
        return
    from workers.dispatch import send_run

    for run_id in run_ids:
        try:
            send_run(run_id, settings)
        except Exception as exc:  # noqa: BLE001 - the reconciler re-sends queued runs without a message
            log.warning("run %s: could not send it again (%s)", run_id, exc)


def _error_text(exc: BaseException, settings: Settings) -> str:
    """The traceback of `exc`, headed by a line an operator can act on when it is a file error
    in the artefact directory (unwritable, full, a file where a directory should be)."""
    text = "".join(traceback.format_exception(exc))
    path = getattr(exc, "filename", None)
    if (
        isinstance(exc, OSError)
        and isinstance(path, str)
        and Path(path).is_relative_to(settings.artifact_root)
    ):
        return f"artefact directory {settings.artifact_root} (PRUNESCAPE_ARTIFACT_DIR): {exc.strerror}: '{path}'\n{text}"
    return text


def _end_cancelled(session: Session, run_id: int, worker: str, settings: Settings) -> None:
    lifecycle.finish_run(session, run_id, worker, status="cancelled")
    _dispatch(session, run_id, settings)


def _fail(db: Any, run_id: int, worker: str, error: str, settings: Settings) -> None:
    """Fail the run (its dependents are cancelled) and send whatever that made ready."""

    def fail(session: Session) -> None:
        lifecycle.fail_run(session, run_id, worker, error)
        _dispatch(session, run_id, settings)

    db(fail, what=f"failing run {run_id}")


def _run_job(inp: Any, db: Any, run_id: int, beat: _Heartbeat) -> Any:
    from workers import jobs

    return jobs.JOBS[inp.kind](inp, _job_hooks(db, run_id, beat))


def _job_hooks(db: Any, run_id: int, beat: _Heartbeat) -> Any:
    """A run's hooks: each epoch recorded as it ends; stop when cancelled or the claim was lost."""
    from workers import jobs

    def on_epoch(metrics: Any) -> None:
        values = epoch_values(metrics)
        db(lambda s: lifecycle.record_epoch(s, run_id, metrics.epoch, values), what=f"recording run {run_id}")

    def should_stop() -> bool:
        return beat.is_lost(run_id) or _cancel_requested(db, run_id)

    return jobs.JobHooks(on_epoch=on_epoch, should_stop=should_stop)


def epoch_values(metrics: Any) -> dict[str, Any]:
    return {
        "train_loss": metrics.train_loss,
        "train_top1": metrics.train_top1,
        "val_loss": metrics.val_loss,
        "top1": metrics.val_top1,
        "top5": metrics.val_top5,
        "lr": metrics.lr,
        "seconds": metrics.seconds,
    }


def _cancel_requested(db: Any, run_id: int) -> bool:
    return db(lambda s: lifecycle.is_cancel_requested(s, run_id), what=f"reading run {run_id}")


class _Heartbeat:
    """Refreshes the heartbeat of the runs a job holds (one, or a fused group) every `interval_s`
    while it runs; `is_lost(run_id)` turns true when another claim took that run over (the job then
    stops it at its next epoch). `release(run_id)`: the run has ended, stop beating it."""

    def __init__(self, make_session: Any, run_ids: list[int], worker: str, interval_s: float) -> None:
        self._make_session, self._worker = make_session, worker
        self._runs = list(run_ids)
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._interval = max(0.2, float(interval_s))
        self._stop = threading.Event()
        name = f"heartbeat-run-{run_ids[0]}" if run_ids else "heartbeat"
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def is_lost(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._lost

    def release(self, run_id: int) -> None:
        with self._lock:
            if run_id in self._runs:
                self._runs.remove(run_id)

    def hold(self, run_ids: list[int]) -> None:
        """Beat these runs too (partners claimed into the group after the leader)."""
        with self._lock:
            self._runs.extend(r for r in run_ids if r not in self._runs)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                runs = list(self._runs)
            for run_id in runs:
                try:
                    with self._make_session() as session:
                        held = lifecycle.heartbeat(session, run_id, self._worker)
                except Exception as exc:  # noqa: BLE001 - a missed beat is not fatal; try again
                    log.warning("heartbeat of run %s failed: %s", run_id, exc)
                    continue
                if not held:
                    with self._lock:
                        self._lost.add(run_id)
                        if run_id in self._runs:
                            self._runs.remove(run_id)


def load_input(session: Session, run_id: int, settings: Settings) -> Any:
    """A jobs.RunInput for `run_id`, with the model paths it depends on resolved."""
    from backend.db.models import Study
    from workers import jobs

    run = session.get(Run, run_id)
    variant = session.get(Variant, run.variant_id)
    study = session.get(Study, run.study_id)
    inp = jobs.RunInput(
        run_id=run.id,
        study_id=run.study_id,
        kind=run.kind,
        variant_id=variant.id,
        variant_name=variant.name,
        variant_kind=variant.kind,
        variant_spec=dict(variant.spec or {}),
        spec=dict(study.spec),
        artifact_root=settings.artifact_root,
        data_roots=tuple(settings.dataset_roots),
        max_dataset_bytes=settings.max_dataset_bytes,
        latency_warmup=settings.latency_warmup,
        latency_runs=settings.latency_runs,
        lr=run.lr,
        wd=run.wd,
        seed=run.seed,
        grid_i=run.grid_i,
        grid_j=run.grid_j,
    )
    dependency = session.get(Run, run.depends_on_id) if run.depends_on_id else None
    if run.kind == "train" and variant.kind in ("structured", "unstructured"):
        inp.variant_model = variant.model_path
        if (variant.spec or {}).get("retrain") == "rewind":
            inp.rewind_weights = _rewind_weights(session, run, variant, dependency)
    elif run.kind in ("prune", "quantise", "scan") and dependency is not None:
        inp.source_model, inp.source_status = dependency.model_path, dependency.status
        inp.source_run_id = dependency.id
        spec = variant.spec or {}
        if run.kind == "prune" and spec.get("retrain") == "rewind" and spec.get("iterations", 1) > 1:
            # every round of iterative pruning rewinds to the base prior run's early weights
            inp.rewind_weights = rewind_rel(run.study_id, dependency.id, int(spec["rewind_epoch"]))
    elif run.kind == "measure":
        if variant.kind in ("structured", "unstructured"):
            inp.source_model = variant.model_path
        elif dependency is not None and dependency.status == "succeeded":
            if variant.kind == "base":
                inp.source_model = dependency.model_path  # the base model trained at the prior
            else:  # the quantise run at the prior: its ONNX model, and the fp32 model it came from
                inp.quantised_model = dependency.model_path
                source_run = session.get(Run, dependency.depends_on_id) if dependency.depends_on_id else None
                inp.source_model = source_run.model_path if source_run is not None else None
        elif variant.kind == "base" and dependency is None:  # planned before measure waited on the prior
            prior = _base_prior_run(session, run.study_id, variant.id)
            if prior is not None and prior.status == "succeeded" and prior.model_path:
                inp.source_model = prior.model_path
    session.commit()
    return inp


def _base_prior_run(session: Session, study_id: int, base_variant_id: int) -> Run | None:
    return session.scalar(
        sa.select(Run).where(
            Run.study_id == study_id,
            Run.variant_id == base_variant_id,
            Run.kind == "train",
            Run.grid_i == 0,
            Run.grid_j == 0,
            Run.seed == 0,
        )
    )


def _rewind_weights(session: Session, run: Run, variant: Variant, prune_run: Run | None) -> str | None:
    if prune_run is None or prune_run.depends_on_id is None:
        return None
    epoch = (variant.spec or {}).get("rewind_epoch")
    return rewind_rel(run.study_id, prune_run.depends_on_id, int(epoch)) if epoch is not None else None


def store_result(session: Session, inp: Any, worker: str, result: Any) -> list[int] | None:
    """Write a JobResult: epochs, variant columns and artefacts, then finish the run (which
    releases its dependents). None when `worker` no longer holds the run."""
    if not lifecycle.holds(session, inp.run_id, worker):
        return None
    for metrics in result.epochs:
        lifecycle.record_epoch(session, inp.run_id, metrics.epoch, epoch_values(metrics))
    if result.variant_updates:
        session.execute(
            sa.update(Variant)
            .where(Variant.id == inp.variant_id)
            .values(**result.variant_updates)
            .execution_options(synchronize_session=False)
        )
    for artefact in result.artefacts:
        owner = (
            {"variant_id": inp.variant_id, "run_id": None}
            if artefact.variant_level
            else {"run_id": inp.run_id, "variant_id": None}
        )
        key = Artefact.variant_id if artefact.variant_level else Artefact.run_id
        session.execute(
            sa.delete(Artefact).where(
                key == (owner["variant_id"] or owner["run_id"]), Artefact.path == artefact.path
            )
        )
        session.add(Artefact(kind=artefact.kind, path=artefact.path, bytes=artefact.bytes, **owner))
    session.commit()
    return lifecycle.finish_run(
        session,
        inp.run_id,
        worker,
        status=result.status,
        top1=result.top1,
        top5=result.top5,
        loss=result.loss,
        result=json_safe(result.result),
        model_path=result.model_path,
        checkpoint_path=result.checkpoint_path,
        epochs_done=result.epochs_done,
    )


def _dispatch(session: Session, run_id: int, settings: Settings) -> None:
    """After a run ended: purge its study if it was being deleted and this was the last run
    running, else send the runs this one released (broker trouble leaves them `pending` for the
    reconciler)."""
    study_id = session.scalar(sa.select(Run.study_id).where(Run.id == run_id))
    session.commit()
    if study_id is None or purge_if_released(session, study_id, settings.artifact_root):
        return
    if not settings.broker_url:
        return
    from workers.dispatch import dispatch_ready

    try:
        dispatch_ready(session, study_id, settings)
    except Exception as exc:  # noqa: BLE001
        session.rollback()
        log.warning("run %s finished; dispatching its dependents failed (%s)", run_id, exc)


@shared_task(name=TASK_NAME, bind=True, acks_late=True, max_retries=None, ignore_result=True)
def execute_run(self: Any, run_id: int) -> str:
    """Celery entry point: carries only the run id (the database holds everything else)."""
    try:
        outcome = execute(int(run_id), worker_name=self.request.hostname)
    except RetryableError as exc:
        retries = self.request.retries or 0
        countdown = RETRY_COUNTDOWN_S[min(retries, len(RETRY_COUNTDOWN_S) - 1)]
        log.warning("run %s: unexpected error, retrying in %ss", run_id, countdown)
        raise self.retry(exc=exc, countdown=countdown) from None
    text = f"run {outcome.run_id}: {outcome.status} {outcome.detail}".strip()
    if outcome.group:
        text += "; fused group: " + ", ".join(f"{o.run_id} {o.status}" for o in outcome.group)
    return text
