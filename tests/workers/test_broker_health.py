"""/health under a slow or silent broker (issue 13, item 2). Many parallel health checks used to
run one broker ping each while every request held a database connection: with the broker slow, the
pool ran dry and every database route answered 500. Now one probe runs at a time, a request waits
for it at most `broker_probe_wait_s`, and no database connection is held meanwhile."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

import workers.broker_health as broker_health
from backend.settings import Settings
from tests.cli.live import serve_in_thread
from workers.broker_health import BrokerHealth


class SlowBroker:
    """A probe that takes `seconds` and counts how often it was asked."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls, self.lock = seconds, 0, threading.Lock()

    def __call__(self, _settings: Settings) -> dict:
        with self.lock:
            self.calls += 1
        time.sleep(self.seconds)
        return {"ok": True, "workers": ["celery@slow"], "checked_at": time.time()}


def test_one_probe_serves_every_caller_and_nobody_waits_longer_than_asked(monkeypatch) -> None:
    slow = SlowBroker(1.0)
    monkeypatch.setattr(broker_health, "probe_broker", slow)
    cache = BrokerHealth(Settings(broker_url="redis://unused"), max_age_s=30, wait_s=0.2)
    with ThreadPoolExecutor(30) as pool:
        started = time.perf_counter()
        answers = list(pool.map(lambda _: cache.get(), range(30)))
        waited = time.perf_counter() - started
    assert slow.calls == 1  # one probe for thirty callers
    assert waited < 1.0  # each gave up after wait_s, before the probe ended
    assert all(a["ok"] is False and "did not answer within 0.2 s" in a["error"] for a in answers)
    time.sleep(1.0)  # the probe has ended: its result is served, fresh, without a new probe
    assert cache.get()["workers"] == ["celery@slow"] and slow.calls == 1


def test_a_stale_result_is_served_while_a_new_probe_runs(monkeypatch) -> None:
    slow = SlowBroker(0.0)
    monkeypatch.setattr(broker_health, "probe_broker", slow)
    cache = BrokerHealth(Settings(broker_url="redis://unused"), max_age_s=0.05, wait_s=0.1)
    assert cache.get()["ok"] is True
    slow.seconds = 1.0
    time.sleep(0.1)  # the result has aged
    answer = cache.get()
    assert answer["ok"] is True and answer["stale"] is True and slow.calls == 2


def test_health_stays_bounded_and_the_database_free_while_the_broker_hangs(
    monkeypatch, tmp_path, sqlite_db
) -> None:
    slow = SlowBroker(20.0)  # a broker that does not answer for longer than any request waits
    monkeypatch.setattr(broker_health, "probe_broker", slow)
    settings = sqlite_db.model_copy(update={"broker_probe_wait_s": 0.5})
    with serve_in_thread(settings) as server:
        api = f"{server.url}/api/v1"

        def health(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            return httpx.get(f"{api}/health", timeout=30).status_code, time.perf_counter() - t0

        with ThreadPoolExecutor(40) as pool:
            checks = pool.map(health, range(40))
            # meanwhile the database routes answer at once: no connection is held by /health
            t0 = time.perf_counter()
            listed = [httpx.get(f"{api}/studies", timeout=30).status_code for _ in range(10)]
            listing = time.perf_counter() - t0
            checks = list(checks)
        assert [code for code, _ in checks] == [200] * 40
        assert max(seconds for _, seconds in checks) < 5.0
        assert listed == [200] * 10 and listing < 5.0
        body = httpx.get(f"{api}/health", timeout=30).json()
        assert body["status"] == "degraded" and "did not answer within 0.5 s" in body["broker"]["error"]
    assert slow.calls == 1
