"""The Celery app, configured from the settings. Importing this module imports no torch and
touches no GPU: CUDA is initialised only inside a task (workers/tasks.py -> workers/jobs/).

Settings that matter for hour-long GPU jobs (docs/architecture.md):
- `task_acks_late` + `task_reject_on_worker_lost`: a message is acknowledged after the task ends,
  so a worker that dies mid-run does not lose it;
- `worker_prefetch_multiplier=1`: a worker holds one run at a time, the rest stay in the queue for
  other workers;
- broker `visibility_timeout` longer than the longest run (24 h by default): Redis would otherwise
  redeliver a still-running message. A worker killed outright is handled by the reconciler
  (workers/dispatch.py) and the claim in the database, not by waiting for this timeout.

Environment (besides the `PRUNESCAPE_*` settings): `PRUNESCAPE_QUEUE` (default `prunescape`; team
mode may give each GPU its own) and `PRUNESCAPE_VISIBILITY_TIMEOUT_S` (default 86400).
"""

from __future__ import annotations

import os
from functools import lru_cache

from celery import Celery

from backend.settings import Settings, get_settings

TASK_NAME = "prunescape.execute_run"
DEFAULT_QUEUE = "prunescape"
DEFAULT_VISIBILITY_TIMEOUT_S = 24 * 3600


class BrokerNotConfigured(RuntimeError):
    """No broker URL: `prunescape serve` sets one; team mode sets PRUNESCAPE_BROKER_URL."""


def queue_name() -> str:
    return os.environ.get("PRUNESCAPE_QUEUE") or DEFAULT_QUEUE


def visibility_timeout_s() -> float:
    return float(os.environ.get("PRUNESCAPE_VISIBILITY_TIMEOUT_S") or DEFAULT_VISIBILITY_TIMEOUT_S)


def broker_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if not settings.broker_url:
        raise BrokerNotConfigured(
            "no broker: set PRUNESCAPE_BROKER_URL (e.g. redis://host:6379/0) or start `prunescape serve`, "
            "which runs a private Redis"
        )
    return settings.broker_url


def create_app(settings: Settings | None = None, *, queue: str | None = None) -> Celery:
    """A Celery app for `settings.broker_url` whose tasks go to `queue`."""
    settings = settings or get_settings()
    queue = queue or queue_name()
    app = Celery("prunescape", broker=broker_url(settings), include=["workers.tasks"])
    visibility = visibility_timeout_s()
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=settings.result_backend,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": visibility},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # A run never times out on the broker's behalf; cancellation is cooperative (cancel_requested).
        task_time_limit=None,
        task_soft_time_limit=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


@lru_cache(maxsize=8)
def _cached(url: str, queue: str) -> Celery:
    return create_app(Settings(broker_url=url), queue=queue)


def get_app(settings: Settings | None = None) -> Celery:
    """The process' app for the current broker URL and queue (cached per pair)."""
    return _cached(broker_url(settings), queue_name())
