"""Is the broker reachable, and which workers answer? The probe behind /health's `broker`.

`probe_broker(settings)` asks the broker directly (a connection, then a worker ping of ~1 s).
`BrokerHealth` is what a server answers /health from: one probe at a time in a thread of its own,
its result kept for `max_age_s`, a caller waiting at most `wait_s` for a fresh one. Many callers
at once therefore cost one probe, never a blocked request thread, and never a database
connection held while the broker is slow: 20 parallel /health requests used to run 20 pings at
once, which deadlocked inside kombu's connection pools and, with every request thread stuck
holding a database connection, wedged the whole API.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from backend.settings import Settings

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 1.0
CONNECT_TIMEOUT_S = 2.0


def shown_url(broker_url: str) -> str:
    """The broker URL without its password."""
    import sqlalchemy.engine.url as sa_url

    try:
        return sa_url.make_url(broker_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - e.g. redis+socket:// URLs that SQLAlchemy cannot parse
        return broker_url.split("@")[-1]


def probe_broker(settings: Settings) -> dict[str, Any]:
    """{"ok": broker reachable, "url" (no password), "queue", "workers": names that answered a
    ping within ~1 s, "error" when unreachable, "checked_at" (epoch seconds)}."""
    from workers.celery_app import get_app

    checked_at = time.time()
    if not settings.broker_url:
        return {
            "ok": False,
            "error": "no broker configured (PRUNESCAPE_BROKER_URL)",
            "workers": [],
            "checked_at": checked_at,
        }
    app = get_app(settings)
    health: dict[str, Any] = {
        "url": shown_url(settings.broker_url),
        "queue": app.conf.task_default_queue,
        "workers": [],
        "checked_at": checked_at,
    }
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return {**health, "ok": False, "error": f"broker unreachable: {exc}"}
    try:
        replies = app.control.ping(timeout=PING_TIMEOUT_S) or []
        health["workers"] = sorted(name for reply in replies for name in reply)
    except Exception as exc:  # noqa: BLE001 - a failed ping is reported, not raised
        health["ping_error"] = str(exc)
    health["ok"] = True
    return health


class BrokerHealth:
    """Cached, single-flight broker probe (see the module docstring)."""

    def __init__(self, settings: Settings, *, max_age_s: float = 5.0, wait_s: float = 3.0) -> None:
        self.settings = settings
        self.max_age_s = max_age_s
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._result: dict[str, Any] | None = None
        self._fresh_until = 0.0
        self._probing: threading.Event | None = None

    def get(self) -> dict[str, Any]:
        """The last probe's result if it is fresh, else a new one (waiting at most `wait_s`);
        a probe that takes longer answers with the last result marked stale, or a 'checking'
        error when there is none yet. Blocks the calling thread for at most `wait_s`."""
        fresh, done = self._fresh_or_start()
        if fresh is not None:
            return fresh
        done.wait(self.wait_s)
        return self._answer()

    async def aget(self) -> dict[str, Any]:
        """`get()` for an event loop: waits without holding a thread."""
        fresh, done = self._fresh_or_start()
        if fresh is not None:
            return fresh
        deadline = time.monotonic() + self.wait_s
        while not done.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self._answer()

    def _fresh_or_start(self) -> tuple[dict[str, Any] | None, threading.Event]:
        with self._lock:
            if self._result is not None and time.monotonic() < self._fresh_until:
                return self._result, threading.Event()
            done = self._probing
            if done is None:
                done = self._probing = threading.Event()
                threading.Thread(target=self._probe, args=(done,), name="broker-probe", daemon=True).start()
            return None, done

    def _answer(self) -> dict[str, Any]:
        with self._lock:
            last, fresh = self._result, time.monotonic() < self._fresh_until
        if last is not None and fresh:
            return last
        if last is not None:
            return {**last, "stale": True, "note": f"the broker did not answer within {self.wait_s:g} s"}
        return {
            "ok": False,
            "workers": [],
            "error": f"the broker did not answer within {self.wait_s:g} s (still checking)",
        }

    def _probe(self, done: threading.Event) -> None:
        try:
            result = probe_broker(self.settings)
        except Exception as exc:  # noqa: BLE001 - health reports, it never raises
            log.warning("broker probe failed: %s", exc)
            result = {"ok": False, "workers": [], "error": str(exc), "checked_at": time.time()}
        with self._lock:
            self._result = result
            self._fresh_until = time.monotonic() + self.max_age_s
            self._probing = None
        done.set()
