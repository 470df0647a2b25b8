"""A real `prunescape worker` process against the real Redis executes a tiny study end to end:
the API side only sends run ids, the worker claims, trains, prunes, quantises, measures and
dispatches the runs it releases."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from backend.db.models import Run, Study
from backend.db.session import get_engine
from backend.services.study_creation import create_study
from backend.settings import Settings, get_settings
from backend.spec import parse_spec
from tests.workers.conftest import TINY_SPEC, start_worker, stop_worker, wait_for, worker_env
from workers.broker_health import probe_broker as broker_health


@pytest.mark.slow
def test_worker_runs_a_study_end_to_end(sqlite_db, redis_url, tmp_path, monkeypatch, request):
    queue = f"prunescape-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PRUNESCAPE_QUEUE", queue)
    # The service dispatches with the process settings (get_settings), as the API does.
    monkeypatch.setenv("PRUNESCAPE_BROKER_URL", redis_url)
    monkeypatch.setenv("PRUNESCAPE_DATA_DIR", str(sqlite_db.data_dir))
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    settings = Settings(
        data_dir=sqlite_db.data_dir, database_url=sqlite_db.database_url, broker_url=redis_url
    )
    spec = {**TINY_SPEC, "recipe": {"epochs": 1, "batch_size": 64}}
    spec["grid"] = {**spec["grid"], "size": 1}
    worker = start_worker(worker_env(settings, redis_url, queue), tmp_path / "worker.log")
    try:
        make = sessionmaker(bind=get_engine(settings))
        with make() as s:
            study_id = create_study(s, parse_spec(spec), settings).id
            assert (
                s.scalar(sa.select(sa.func.count()).where(Run.study_id == study_id, Run.status == "queued"))
                > 0
            )
        health = wait_for(
            lambda: (h := broker_health(settings))["workers"] and h, 60, "the worker to answer a ping"
        )
        assert health["ok"] and health["queue"] == queue

        def finished():
            with make() as s:
                return s.get(Study, study_id).status in ("succeeded", "failed")

        wait_for(finished, 240, "the study to finish")
        with make() as s:
            runs = s.scalars(sa.select(Run).where(Run.study_id == study_id)).all()
            assert {r.status for r in runs} == {"succeeded"}, [
                (r.id, r.kind, r.status, r.error) for r in runs
            ]
            assert all(r.attempts == 1 and r.worker for r in runs)
            assert {r.kind for r in runs} == {"train", "prune", "quantise", "measure"}
    finally:
        stop_worker(worker)
        print((tmp_path / "worker.log").read_text()[-3000:])
