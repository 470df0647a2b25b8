"""Fixtures of the orchestration tests: migrated SQLite and Postgres databases, a tiny study."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.db.migrate import upgrade
from backend.db.session import make_engine
from backend.settings import Settings

TINY_SPEC = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 2, "batch_size": 64},
    "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": 3},
    "variants": [
        {"name": "base", "kind": "base"},
        {"name": "u50", "kind": "structured", "method": "uniform", "flops_ratio": 0.5},
        {"name": "q8", "kind": "int8", "source": "base"},
    ],
}


def sqlite_settings(tmp: Path, **overrides) -> Settings:
    return Settings(data_dir=tmp, database_url=None, broker_url=None, **overrides)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Settings:
    settings = sqlite_settings(tmp_path)
    upgrade(settings)
    return settings


@pytest.fixture
def postgres_db(postgres_url: str, tmp_path: Path) -> Iterator[Settings]:
    """A fresh database on the Postgres server (others' tests share `test`), dropped afterwards."""
    name = f"ps_workers_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    settings = Settings(data_dir=tmp_path, database_url=url, broker_url=None)
    upgrade(settings)
    yield settings
    from backend.db.session import dispose_engines

    dispose_engines()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Settings:
    return request.getfixturevalue(f"{request.param}_db")


def new_engine(settings: Settings) -> sa.Engine:
    return make_engine(str(settings.database_url))


def worker_env(settings: Settings, redis_url: str, queue: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESCAPE_")}
    env.update(
        PRUNESCAPE_DATA_DIR=str(settings.data_dir),
        PRUNESCAPE_DATABASE_URL=str(settings.database_url),
        PRUNESCAPE_BROKER_URL=redis_url,
        PRUNESCAPE_QUEUE=queue,
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


def start_worker(env: dict[str, str], log_path: Path):
    """`prunescape worker` as a subprocess in its own process group (so a test can kill it all)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "backend.cli.main", "worker", "--concurrency", "1"],
            env=env,
            cwd=repo,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_worker(proc, sig=None) -> None:
    import signal
    import subprocess

    if proc.poll() is not None:
        return
    for s in (sig or signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
