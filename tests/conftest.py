"""Shared test fixtures: real services on this machine, honest skips only outside CI."""

from __future__ import annotations

import os

import pytest

POSTGRES_URL = os.environ.get(
    "PRUNESCAPE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# scripts/test.sh runs the suite in two pytest-xdist processes (gw0, gw1): each gets its own Redis
# database (15, 14, ...) so that one's queues and keys never meet the other's. Postgres tests
# already work in a schema of their own per session (tests/backend/conftest.py).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_WORKER_INDEX = int(_WORKER[2:]) if _WORKER[2:].isdigit() else 0
REDIS_URL = os.environ.get("PRUNESCAPE_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{15 - _WORKER_INDEX % 15}")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _service_missing(what: str, exc: Exception) -> None:
    """Under CI a missing service is a failure; on a developer machine it is a skip."""
    message = f"{what} not reachable: {exc}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any connection failure means the same thing here
        _service_missing("Postgres", exc)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        _service_missing("Redis", exc)
    return REDIS_URL


@pytest.fixture(autouse=True, scope="session")
def _few_torch_threads():
    """The machine has 2 cores; keep torch from oversubscribing them."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Schemathesis gives every API operation of one test the test's node id (its name alone says
    `[POST /api/v1/studies]`); pytest-xdist runs and reports items by node id, so under
    `--dist loadfile` it ran one operation of 22 (schemathesis renames `_nodeid`, which pytest 9
    no longer reads). Each item gets its name as its id."""
    for item in items:
        head, _, last = item.nodeid.rpartition("::")
        if head and item.name != last and item.name.startswith(last + "["):
            nodeid = f"{head}::{item.name}"
            if hasattr(item, "_id"):  # pytest >= 9 keeps the id structured
                item._id = type(item._id).parse(nodeid)
            else:
                item._nodeid = nodeid
