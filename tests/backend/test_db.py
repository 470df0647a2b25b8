"""The schema comes from Alembic; SQLite pragmas; 503 when the database is unreachable."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.db.migrate import downgrade, upgrade
from backend.db.models import Base
from backend.db.session import get_engine
from backend.settings import Settings


def test_migration_builds_the_models_schema(settings):
    engine = get_engine(settings)
    inspector = sa.inspect(engine)
    tables = set(inspector.get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"} == tables
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in inspector.get_columns(table.name)} == {c.name for c in table.columns}
    run_indexes = {ix["name"] for ix in inspector.get_indexes("runs")}
    assert {
        "ix_runs_study_status",
        "ix_runs_study_variant",
        "ix_runs_depends_on",
        "ix_runs_study_ids",
    } <= run_indexes
    with engine.connect() as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() == "0003"


def test_sqlite_pragmas_and_downgrade(tmp_path):
    settings = Settings(data_dir=tmp_path)
    upgrade(settings)
    engine = get_engine(settings)
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 30000
    downgrade(settings)
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}


def test_database_down_is_503_with_retry_after(tmp_path, fake_dispatch):
    from backend.api import create_app

    settings = Settings(data_dir=tmp_path, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    with TestClient(create_app(settings)) as client:
        for path in ("/api/v1/studies", "/api/v1/studies/1", "/api/v1/health"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["retry-after"] == "5"
        assert client.get("/api/v1/health").json()["database"]["ok"] is False


def test_health_reports_broker_and_workers(client, fake_dispatch):
    body = client.get("/api/v1/health").json()
    assert body["artefacts"]["ok"] is True and body["artefacts"]["free_bytes"] > 0
    assert {k: v for k, v in body.items() if k != "artefacts"} == {
        "status": "ok",
        "database": {"ok": True},
        "broker": {"ok": True, "workers": ["celery@test"]},
        "workers": ["celery@test"],
    }
    fake_dispatch.health = {"ok": False, "error": "connection refused"}
    body = client.get("/api/v1/health").json()
    assert body["status"] == "degraded" and body["workers"] == []


def test_health_says_when_runs_could_not_write_their_artefacts(client, settings):
    from backend.services.storage import artefact_store_health

    root = settings.artifact_root
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("a file where the artefact directory should be")
    body = client.get("/api/v1/health").json()
    assert body["status"] == "degraded" and body["artefacts"]["ok"] is False
    assert "not a directory" in body["artefacts"]["error"]
    root.unlink()
    assert artefact_store_health(root / "not" / "yet" / "made")["ok"] is True  # the first run creates it
    low = artefact_store_health(root.parent, min_free_bytes=2**62)  # more than any disk has
    assert low["ok"] is False and "MiB free" in low["error"]
