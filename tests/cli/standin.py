"""A stand-in for the Celery worker (the client's tests run no broker, no torch): it claims each
claimable run of a study and ends it through the real lifecycle functions, as a worker process
does, on a database engine of its own. Finishing a run releases the runs waiting on it, so the
stand-in works through a study's whole dependency chain."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from backend.db import lifecycle
from backend.db.models import Run, Study, Variant
from backend.db.session import make_engine
from backend.run_states import CLAIMABLE

WORKER = "standin|nohost|0|cli"
ACTIVE = ("blocked", "pending", "queued", "running")


def top1_at(grid_i: int | None, grid_j: int | None) -> float | None:
    """Top-1 rising towards the grid's (high lr, high wd) corner, so the analysis proposes to
    extend the grid there."""
    if grid_i is None or grid_j is None:
        return None
    return 80.0 + 3.0 * (grid_i + grid_j)


class StandinWorker:
    """Work through the study `study_id` (or the first study to appear) in a background thread:
    `delay_s` per run, so a waiting client sees the bar move; `fail_first_base_run` fails the first
    base train run (its dependants are cancelled by the lifecycle), making the study `failed`."""

    def __init__(
        self,
        database_url: str,
        *,
        study_id: int | None = None,
        delay_s: float = 0.0,
        fail_first_base_run: bool = False,
    ) -> None:
        self._engine = make_engine(database_url)
        self._sessions = sessionmaker(bind=self._engine, expire_on_commit=False)
        self.study_id = study_id
        self.delay_s = delay_s
        self.fail_first_base_run = fail_first_base_run
        self.ended: list[int] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name="standin", daemon=True)

    def start(self) -> StandinWorker:
        self._thread.start()
        return self

    def join(self, timeout: float = 60) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(10)
            raise AssertionError("the stand-in worker did not finish the study in time")
        self._engine.dispose()
        if self.error is not None:
            raise self.error

    def run_now(self) -> list[int]:
        """Work through the study in this thread; returns the ids of the runs it ended."""
        self._work()
        self._engine.dispose()
        return self.ended

    def _guarded(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test by join()
            self.error = exc

    def _work(self) -> None:
        with self._sessions() as session:
            study_id = self._wait_for_study(session)
            failed_one = not self.fail_first_base_run
            while not self._stop.is_set():
                run = self._next_run(session, study_id)
                if run is None:
                    if not self._active(session, study_id):
                        return
                    time.sleep(0.05)
                    continue
                run_id, kind, variant_kind, grid_i, grid_j = run
                claim = lifecycle.claim_run(session, run_id, WORKER, max_attempts=3, stale_after_s=600)
                assert claim.claimed, claim.reason
                if self.delay_s:
                    time.sleep(self.delay_s)
                if not failed_one and kind == "train" and variant_kind == "base":
                    lifecycle.fail_run(session, run_id, WORKER, "RuntimeError: stand-in failure")
                    failed_one = True
                else:
                    top1 = top1_at(grid_i, grid_j)
                    done = lifecycle.finish_run(
                        session,
                        run_id,
                        WORKER,
                        status="succeeded",
                        top1=top1,
                        top5=None if top1 is None else 99.0,
                        loss=0.5,
                        epochs_done=1,
                    )
                    assert done is not None, f"run {run_id}: the stand-in lost its claim"
                self.ended.append(run_id)

    def _wait_for_study(self, session: Session) -> int:
        """The study to work on, once it exists (a client may still be submitting it)."""
        query = sa.select(sa.func.min(Study.id))
        if self.study_id is not None:
            query = query.where(Study.id == self.study_id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self._stop.is_set():
            study_id = session.scalar(query)
            session.commit()
            if study_id is not None:
                return study_id
            time.sleep(0.05)
        raise AssertionError("no study appeared for the stand-in worker")

    @staticmethod
    def _next_run(session: Session, study_id: int) -> tuple | None:
        row = session.execute(
            sa.select(Run.id, Run.kind, Variant.kind, Run.grid_i, Run.grid_j)
            .join(Variant, Variant.id == Run.variant_id)
            .where(Run.study_id == study_id, Run.status.in_(CLAIMABLE))
            .order_by(Run.id)
            .limit(1)
        ).first()
        session.commit()
        return None if row is None else tuple(row)

    @staticmethod
    def _active(session: Session, study_id: int) -> int:
        active = session.scalar(
            sa.select(sa.func.count()).where(Run.study_id == study_id, Run.status.in_(ACTIVE))
        )
        session.commit()
        return active or 0
