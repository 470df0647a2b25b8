"""Shared by bench/api.py and bench/load.py: a fresh Postgres schema, a 10,000-run synthetic study
CSV, a uvicorn API process, and percentile arithmetic. Loopback addresses only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.analysis.synthetic import SyntheticVariant, rows_to_csv, synthetic_rows  # noqa: E402

API = "/api/v1"
DEFAULT_POSTGRES = os.environ.get(
    "PRUNESCAPE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def study_csv(runs: int = 10_000) -> str:
    """9 variants x 33 x 33 grid x 1 seed plus second-seed base points: exactly `runs` rows."""
    variants = [SyntheticVariant("base")] + [
        SyntheticVariant(f"v{i}", shift_lr=0.1 * (i - 4), shift_wd=-0.05 * i, peak=92.5) for i in range(8)
    ]
    rows = synthetic_rows(variants, size=33, step=0.1, seeds=1, seed=1)
    extra = synthetic_rows([SyntheticVariant("base")], size=33, step=0.1, seeds=2, seed=2)
    rows = (rows + [r for r in extra if r["seed"] == 1])[:runs]
    return rows_to_csv(rows)


class Schema:
    """A fresh schema on the Postgres server (migrated), dropped on close."""

    def __init__(self, base_url: str = DEFAULT_POSTGRES) -> None:
        from backend.db.migrate import upgrade
        from backend.settings import Settings

        self.name = f"ps_bench_{uuid.uuid4().hex[:8]}"
        self.admin = sa.create_engine(base_url)
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self.name}"'))
        sep = "&" if "?" in base_url else "?"
        self.url = f"{base_url}{sep}options=-csearch_path%3D{self.name}"
        upgrade(Settings(database_url=self.url))

    def close(self) -> None:
        with self.admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{self.name}" CASCADE'))
        self.admin.dispose()


class Server:
    """uvicorn serving backend.api:create_app on a free loopback port."""

    def __init__(self, database_url: str, data_dir: Path, workers: int = 1) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PRUNESCAPE_DATABASE_URL": database_url,
            "PRUNESCAPE_DATA_DIR": str(data_dir),
            "PRUNESCAPE_CHECK_DATASET_PATHS": "0",
        }
        self.log = open(data_dir / "server.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.api:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited; see {data_dir / 'server.log'}")
            try:
                httpx.get(f"{self.url}{API}/health", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise TimeoutError("server did not start")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def import_study(base_url: str, csv_text: str, name: str, headers: dict[str, str] | None = None) -> int:
    response = httpx.post(
        f"{base_url}{API}/studies/import",
        files={"file": ("bench.csv", csv_text, "text/csv")},
        data={"name": name},
        headers=headers or {},
        timeout=300,
    )
    response.raise_for_status()
    return int(response.json()["id"])


def percentiles(samples_s: list[float]) -> str:
    if not samples_s:
        return "no samples"
    ms = np.asarray(samples_s) * 1000
    return (
        f"n={len(ms):5d}  p50={np.percentile(ms, 50):8.1f} ms  p95={np.percentile(ms, 95):8.1f} ms  "
        f"p99={np.percentile(ms, 99):8.1f} ms  max={ms.max():8.1f} ms"
    )
