"""A worker killed outright (SIGKILL, whole process group) mid-run: after a restart the reconciler
re-sends the run, the new worker takes it over, resumes from the epoch checkpoint and finishes it
once, with every epoch recorded exactly once."""

from __future__ import annotations

import signal
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from backend.db.models import EpochMetric, Run
from backend.db.session import get_engine
from backend.services.study_creation import create_study
from backend.settings import Settings
from backend.spec import parse_spec
from tests.workers.conftest import (
    sqlite_settings,
    start_worker,
    stop_worker,
    wait_for,
    worker_env,
)
from workers.dispatch import dispatch_ready, reconcile

EPOCHS = 25
SPEC = {
    "name": "fault",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": EPOCHS, "batch_size": 16},
    "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": 1},
    "variants": [{"name": "base", "kind": "base"}],
}


@pytest.fixture
def sqlite_db(tmp_path):
    from backend.db.migrate import upgrade

    settings = sqlite_settings(tmp_path)
    upgrade(settings)
    return settings


@pytest.mark.slow
def test_killed_worker_resumes_from_checkpoint(sqlite_db, redis_url, tmp_path, monkeypatch):
    queue = f"prunescape-fault-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PRUNESCAPE_QUEUE", queue)
    settings = Settings(
        data_dir=sqlite_db.data_dir,
        database_url=sqlite_db.database_url,
        broker_url=redis_url,
        heartbeat_s=0.5,
        reconcile_after_s=3.0,
    )
    env = worker_env(
        settings, redis_url, queue, PRUNESCAPE_HEARTBEAT_S="0.5", PRUNESCAPE_RECONCILE_AFTER_S="3"
    )
    make = sessionmaker(bind=get_engine(settings))
    with make() as s:
        study_id = create_study(s, parse_spec(SPEC), Settings(data_dir=settings.data_dir, broker_url=None)).id
        run_id = s.scalar(sa.select(Run.id).where(Run.study_id == study_id, Run.kind == "train"))
        assert dispatch_ready(s, study_id, settings) >= 1

    def epochs():
        with make() as s:
            return dict(
                s.execute(
                    sa.select(EpochMetric.epoch, EpochMetric.seconds).where(EpochMetric.run_id == run_id)
                ).all()
            )

    log = tmp_path / "worker.log"
    first = start_worker(env, log)
    try:
        wait_for(lambda: len(epochs()) >= 2, 120, "two epochs recorded")
        stop_worker(first, signal.SIGKILL)
        before = epochs()
        assert 2 <= len(before) < EPOCHS, "the run finished before the kill; make it longer"
        with make() as s:
            run = s.get(Run, run_id)
            assert (run.status, run.attempts) == ("running", 1)
            assert (settings.artifact_root / f"study_{study_id}/run_{run_id}/checkpoint.pt").is_file()

        second = start_worker(env, log)
        try:

            def reconciled_and_done():
                with make() as s:
                    reconcile(s, settings)  # what serve's reconciler thread does
                    return s.get(Run, run_id).status in ("succeeded", "failed")

            wait_for(reconciled_and_done, 180, "the run to be re-sent and finish", interval_s=1.0)
        finally:
            stop_worker(second)
        after = epochs()
        with make() as s:
            run = s.get(Run, run_id)
            assert run.status == "succeeded", run.error
            assert run.attempts == 2 and run.epochs_done == EPOCHS
            n_rows = s.scalar(sa.select(sa.func.count()).where(EpochMetric.run_id == run_id))
        assert n_rows == EPOCHS and sorted(after) == list(range(1, EPOCHS + 1))
        # Resumed, not retrained: the epochs done before the kill keep their recorded wall times
        # (a retraining from scratch would have measured and stored new ones).
        # Every recorded epoch is in the checkpoint (it is written before the epoch is recorded).
        assert {epoch: after[epoch] for epoch in before} == before
    finally:
        stop_worker(first, signal.SIGKILL)
        print(log.read_text()[-3000:])
