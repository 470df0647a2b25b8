"""The run state machine against real SQLite and Postgres: claims are atomic, finishing releases
or cancels dependents, attempts end in `failed`, epoch rows are upserted."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from backend.db import lifecycle
from backend.db.models import EpochMetric, Run, Study, Variant, utcnow
from backend.services.study_creation import create_study
from backend.spec import parse_spec
from tests.workers.conftest import TINY_SPEC, new_engine


def _study(settings) -> tuple[sessionmaker[Session], int]:
    make = sessionmaker(bind=new_engine(settings), expire_on_commit=False)
    with make() as session:
        study = create_study(session, parse_spec(TINY_SPEC), settings)  # no broker: runs stay pending
        return make, study.id


def _run(session: Session, study_id: int, variant: str, kind: str, i=0, j=0) -> Run:
    query = (
        sa.select(Run)
        .join(Variant, Variant.id == Run.variant_id)
        .where(Run.study_id == study_id, Variant.name == variant, Run.kind == kind)
    )
    if kind in ("train", "quantise"):
        query = query.where(Run.grid_i == i, Run.grid_j == j)
    return session.scalars(query).one()


def test_claim_is_atomic_across_sessions(db):
    make, sid = _study(db)
    with make() as s:
        run_id = _run(s, sid, "base", "train").id
    barrier = threading.Barrier(4)
    results = []

    def claim(name: str) -> None:
        with make() as session:
            barrier.wait()
            results.append(lifecycle.claim_run(session, run_id, name, max_attempts=3, stale_after_s=600))

    threads = [threading.Thread(target=claim, args=(f"w{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(c.claimed for c in results) == 1
    with make() as s:
        run = s.get(Run, run_id)
        assert (run.status, run.attempts) == ("running", 1)
        assert run.worker in {f"w{k}" for k in range(4)}


def test_redelivery_takes_over_only_a_stale_run(db):
    make, sid = _study(db)
    with make() as s:
        run_id = _run(s, sid, "base", "train").id
        assert lifecycle.claim_run(s, run_id, "a", max_attempts=3, stale_after_s=600).claimed
        # fresh heartbeat: a redelivered message does nothing
        again = lifecycle.claim_run(s, run_id, "b", max_attempts=3, stale_after_s=600)
        assert not again.claimed and again.status == "running"
        assert lifecycle.heartbeat(s, run_id, "a")
        s.execute(sa.update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
        s.commit()
        takeover = lifecycle.claim_run(s, run_id, "b", max_attempts=3, stale_after_s=600)
        assert takeover.claimed and takeover.attempts == 2
        assert not lifecycle.heartbeat(s, run_id, "a")  # the old holder learns it lost the run
        assert lifecycle.finish_run(s, run_id, "a", status="succeeded", top1=1.0) is None
        assert s.get(Run, run_id).status == "running"


def test_attempts_exhausted_fails_with_error_and_cancels_chain(db):
    make, sid = _study(db)
    with make() as s:
        prior = _run(s, sid, "base", "train")
        prune = _run(s, sid, "u50", "prune")
        pruned_trains = s.scalars(
            sa.select(Run.id).where(Run.depends_on_id == prune.id, Run.kind == "train")
        ).all()
        for attempt in range(2):
            claim = lifecycle.claim_run(s, prior.id, f"w{attempt}", max_attempts=2, stale_after_s=600)
            assert claim.claimed
            assert lifecycle.requeue_after_error(s, prior.id, f"w{attempt}", f"boom {attempt}")
        last = lifecycle.claim_run(s, prior.id, "w9", max_attempts=2, stale_after_s=600)
        assert not last.claimed and last.status == "failed"
        s.expire_all()
        run = s.get(Run, prior.id)
        assert run.status == "failed" and run.attempts == 2
        assert "boom 1" in run.error and "gave up after 2" in run.error
        assert s.get(Run, prune.id).status == "cancelled"
        statuses = {s.get(Run, rid).status for rid in pruned_trains}
        assert statuses == {"cancelled"}  # cancelled down the chain
        # the base quantise run at the prior waited on the failed run too
        assert _run(s, sid, "q8", "quantise").status == "cancelled"


def test_finish_releases_dependents(db):
    make, sid = _study(db)
    with make() as s:
        prior = _run(s, sid, "base", "train")
        other = _run(s, sid, "base", "train", 1, 1)
        prune = _run(s, sid, "u50", "prune")
        q_prior = _run(s, sid, "q8", "quantise")
        q_other = _run(s, sid, "q8", "quantise", 1, 1)
        assert prune.status == "blocked" and q_prior.status == "blocked"
        for run, status in ((prior, "succeeded"), (other, "diverged")):
            assert lifecycle.claim_run(s, run.id, "w", max_attempts=3, stale_after_s=600).claimed
            released = lifecycle.finish_run(s, run.id, "w", status=status, top1=50.0, top5=90.0)
            assert released is not None
        s.expire_all()
        assert s.get(Run, prune.id).status == "pending"
        assert s.get(Run, q_prior.id).status == "pending"
        # a quantised evaluation still runs on a diverged source
        assert s.get(Run, q_other.id).status == "pending"
        assert s.get(Run, other.id).top1 == 50.0 and s.get(Run, other.id).finished_at is not None


def test_epoch_upsert_is_idempotent(db):
    make, sid = _study(db)
    with make() as s:
        run_id = _run(s, sid, "base", "train").id
        for value in (10.0, 20.0):  # the second write is a resumed run rewriting epoch 1
            lifecycle.record_epoch(s, run_id, 1, {"top1": value, "train_loss": 1.0})
        lifecycle.record_epoch(s, run_id, 2, {"top1": 30.0, "train_loss": float("nan")})
        rows = s.execute(
            sa.select(EpochMetric.epoch, EpochMetric.top1, EpochMetric.train_loss)
            .where(EpochMetric.run_id == run_id)
            .order_by(EpochMetric.epoch)
        ).all()
        assert [tuple(r) for r in rows] == [(1, 20.0, 1.0), (2, 30.0, None)]
        assert s.get(Run, run_id).epochs_done == 2


def test_study_rolls_up_when_all_runs_are_terminal(db):
    make, sid = _study(db)
    with make() as s:
        ids = list(s.scalars(sa.select(Run.id).where(Run.study_id == sid).order_by(Run.id)))
        done = set()
        while len(done) < len(ids):
            pending = s.scalars(sa.select(Run.id).where(Run.study_id == sid, Run.status == "pending")).all()
            assert pending, "nothing pending while runs are unfinished"
            for run_id in pending:
                assert lifecycle.claim_run(s, run_id, "w", max_attempts=3, stale_after_s=600).claimed
                lifecycle.finish_run(s, run_id, "w", status="succeeded", top1=1.0)
                done.add(run_id)
                if len(done) == 1:
                    s.expire_all()
                    assert s.get(Study, sid).status == "running"
        s.expire_all()
        assert s.get(Study, sid).status == "succeeded"
        assert lifecycle.study_is_finished(s, sid)
