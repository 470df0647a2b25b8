"""Fixtures of the reliability tests: migrated databases (a SQLite copy per test, or a fresh
Postgres schema), an app with low caps so hostile specs stay cheap, and a tally of what the
fuzzer sent that is printed at the end of the session."""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.db.migrate import upgrade
from backend.db.session import dispose_engines
from backend.settings import Settings

API = "/api/v1"
DEMO_SPEC = {
    "name": "digits demo",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 2, "batch_size": 64},
    "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
    "repeats": 1,
    "variants": [
        {"name": "base", "kind": "base"},
        {"name": "u50", "kind": "structured", "method": "uniform", "flops_ratio": 0.5},
        {"name": "q8", "kind": "int8", "source": "base"},
    ],
}

# What the schemathesis run saw, by status code (printed in the terminal summary).
FUZZ_TALLY: Counter[int] = Counter()


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's reporter
    if FUZZ_TALLY:
        total = sum(FUZZ_TALLY.values())
        server_errors = sum(n for code, n in FUZZ_TALLY.items() if code >= 500)
        by_code = ", ".join(f"{code}: {n}" for code, n in sorted(FUZZ_TALLY.items()))
        terminalreporter.write_line(
            f"schemathesis fuzz: {total} requests, {server_errors} with a 5xx status ({by_code})"
        )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reliability-template") / "template.db"
    upgrade(Settings(data_dir=path.parent, database_url=f"sqlite:///{path}"))
    dispose_engines()
    return path


@pytest.fixture
def sqlite_settings(tmp_path: Path, sqlite_template: Path) -> Iterator[Settings]:
    db = tmp_path / "prunescape.db"
    shutil.copy(sqlite_template, db)
    yield Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{db}",
        artifact_dir=tmp_path / "artifacts",
        max_grid_size=9,
        max_runs_per_study=300,
        max_upload_bytes=2 * 1024 * 1024,
    )
    dispose_engines()


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A fresh, migrated schema on the shared Postgres, dropped afterwards."""
    schema = f"ps_rel_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    upgrade(Settings(database_url=url))
    yield url
    dispose_engines()
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def row_counts(settings: Settings) -> dict[str, int]:
    """Rows per table, to show that a rejected request stored nothing."""
    engine = sa.create_engine(str(settings.database_url))
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(sa.text(f"select count(*) from {table}")).scalar_one()
                for table in ("studies", "variants", "runs", "artefacts")
            }
    finally:
        engine.dispose()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """`uvicorn backend.api:create_app --factory` in a subprocess, configured by PRUNESCAPE_* env."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        import os
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.api:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "debug"],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait(self, timeout: float = 60.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"server did not start: {self.log_path.read_text()[-3000:]}")

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
