"""Fixtures of the backend tests: a migrated database (SQLite file or a fresh Postgres schema),
settings pointing at it, an app and a client; the broker is replaced by a recording fake."""

from __future__ import annotations

import shutil
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.db.migrate import upgrade
from backend.db.models import Base
from backend.db.session import dispose_engines
from backend.settings import Settings

DEMO_SPEC = {
    "name": "digits demo",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 3, "batch_size": 64},
    "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
    "repeats": 2,
    "variants": [
        {"name": "base", "kind": "base"},
        {"name": "u50", "kind": "structured", "method": "uniform", "flops_ratio": 0.5},
        {"name": "q8", "kind": "int8", "source": "base"},
    ],
}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test session; each test gets a copy (migrating is slow-ish)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(Settings(data_dir=path.parent, database_url=f"sqlite:///{path}"))
    dispose_engines()
    return path


@pytest.fixture(scope="session")
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A fresh schema for this test session, migrated through Alembic, dropped at the end."""
    schema = f"ps_test_{uuid.uuid4().hex[:10]}"
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


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if request.param == "sqlite":
        db = tmp_path / "prunescape.db"
        shutil.copy(sqlite_template, db)
        yield f"sqlite:///{db}"
        dispose_engines()
        return
    url = request.getfixturevalue("postgres_schema_url")
    yield url
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def fake_dispatch(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Stands in for the broker: `workers.dispatch.dispatch_ready` records the studies it was
    asked to send (or fails like a broker that is down), the broker probe answers `health`."""
    calls: list[int] = []
    state = types.SimpleNamespace(calls=calls, fail=False, health={"ok": True, "workers": ["celery@test"]})

    def dispatch_ready(session, study_id: int) -> int:  # noqa: ANN001
        if state.fail:
            raise ConnectionError("broker down")
        calls.append(study_id)
        return 0

    import workers.broker_health
    import workers.dispatch

    monkeypatch.setattr(workers.dispatch, "dispatch_ready", dispatch_ready)
    monkeypatch.setattr(workers.broker_health, "probe_broker", lambda _settings: state.health)
    return state


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, artifact_dir=tmp_path / "artifacts")


@pytest.fixture
def client(settings: Settings, fake_dispatch: types.SimpleNamespace) -> Iterator[TestClient]:
    from backend.api import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client
