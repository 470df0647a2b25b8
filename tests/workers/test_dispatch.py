"""Dispatch and reconcile against the real Redis (no worker): runs are marked queued before their
message is sent, a message still waiting is not duplicated, lost messages and dead workers' runs
are sent again."""

from __future__ import annotations

import uuid
from datetime import timedelta

import redis
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from backend.db import lifecycle
from backend.db.models import Run, utcnow
from backend.db.session import get_engine
from backend.services.study_creation import create_study
from backend.settings import Settings
from backend.spec import parse_spec
from tests.workers.conftest import TINY_SPEC
from workers.broker_health import probe_broker as broker_health
from workers.dispatch import dispatch_ready, reconcile


def test_dispatch_and_reconcile(sqlite_db, redis_url, monkeypatch):
    queue = f"prunescape-dispatch-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PRUNESCAPE_QUEUE", queue)
    settings = Settings(
        data_dir=sqlite_db.data_dir,
        database_url=sqlite_db.database_url,
        broker_url=redis_url,
        reconcile_after_s=60,
    )
    client = redis.Redis.from_url(redis_url)
    make = sessionmaker(bind=get_engine(settings))
    try:
        with make() as s:
            study_id = create_study(s, parse_spec(TINY_SPEC), Settings(data_dir=settings.data_dir)).id
            pending = s.scalars(sa.select(Run.id).where(Run.status == "pending").order_by(Run.id)).all()
            assert len(pending) == 9  # the 9 base trains (the base measure waits on the prior)
            assert dispatch_ready(s, study_id, settings) == 9
            assert dispatch_ready(s, study_id, settings) == 0  # nothing twice
            assert client.llen(queue) == 9
            assert set(s.scalars(sa.select(Run.status).where(Run.id.in_(pending)))) == {"queued"}

            # Old queued runs whose message still waits in Redis are left alone.
            old = utcnow() - timedelta(hours=1)
            s.execute(sa.update(Run).where(Run.id.in_(pending)).values(queued_at=old))
            s.commit()
            assert reconcile(s, settings)["resent_queued"] == 0
            assert client.llen(queue) == 9

            # Lost messages (queue emptied) are sent again, once.
            client.delete(queue)
            assert reconcile(s, settings)["resent_queued"] == 9
            assert reconcile(s, settings)["resent_queued"] == 0
            assert client.llen(queue) == 9

            # A running run whose worker stopped beating goes back to the queue.
            run_id = pending[0]
            assert lifecycle.claim_run(s, run_id, "gone", max_attempts=3, stale_after_s=60).claimed
            s.execute(sa.update(Run).where(Run.id == run_id).values(heartbeat_at=old))
            s.commit()
            counts = reconcile(s, settings)
            assert counts["resent_running"] == 1
            s.expire_all()
            run = s.get(Run, run_id)
            assert (run.status, run.worker, run.attempts) == ("queued", None, 1)

        health = broker_health(settings)
        assert health["ok"] and health["queue"] == queue
        bad = broker_health(Settings(broker_url="redis://127.0.0.1:1/0"))
        assert not bad["ok"] and "unreachable" in bad["error"]
    finally:
        client.delete(queue)
