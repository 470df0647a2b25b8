"""The schema comes from Alembic; SQLite pragmas; 503 when the database is unreachable."""

from __future__ import annotations

import json
import time

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
    from alembic.script import ScriptDirectory

    from backend.db.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(str(settings.database_url))).get_current_head()
    with engine.connect() as conn:  # one linear history, and the database at its head
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() == head


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


def test_health_reports_broker_and_workers(settings, fake_dispatch):
    from backend.api import create_app

    settings.broker_probe_max_age_s = 0.3  # the broker part is one cached probe, fresh for 0.3 s here
    client = TestClient(create_app(settings))
    body = client.get("/api/v1/health").json()
    assert body["artefacts"]["ok"] is True and body["artefacts"]["free_bytes"] > 0
    assert {k: v for k, v in body.items() if k != "artefacts"} == {
        "status": "ok",
        "database": {"ok": True},
        "broker": {"ok": True, "workers": ["celery@test"]},
        "workers": ["celery@test"],
    }
    fake_dispatch.health = {"ok": False, "error": "connection refused"}
    assert client.get("/api/v1/health").json()["status"] == "ok"  # the cached probe, still fresh
    time.sleep(0.4)
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


def test_ids_are_never_reused_after_a_delete(client, settings, fake_dispatch):
    """Issue 13: SQLite handed a deleted study's ids to the next study (max(id) + 1), so a worker
    still finishing a deleted run wrote into the new study's run. AUTOINCREMENT (migration 0003) and
    Postgres sequences never reuse an id."""
    from tests.backend.conftest import DEMO_SPEC

    first = client.post("/api/v1/studies", json=DEMO_SPEC).json()
    runs = client.get(f"/api/v1/studies/{first['id']}/runs", params={"limit": 1000}).json()["items"]
    assert client.delete(f"/api/v1/studies/{first['id']}").status_code == 204
    second = client.post("/api/v1/studies", json=DEMO_SPEC).json()
    new_runs = client.get(f"/api/v1/studies/{second['id']}/runs", params={"limit": 1000}).json()["items"]
    assert second["id"] > first["id"]
    assert min(r["id"] for r in new_runs) > max(r["id"] for r in runs)
    assert min(r["variant_id"] for r in new_runs) > max(r["variant_id"] for r in runs)


def test_the_autoincrement_migration_keeps_every_row_and_reference(tmp_path):
    """Migration 0003 rebuilds each SQLite table: rows, ids and foreign keys survive (no cascade
    fires while the parents are rebuilt), and downgrading gives the plain tables back."""
    from backend.db.migrate import downgrade, upgrade

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(settings, "0002")
    engine = sa.create_engine(str(settings.database_url))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "insert into studies (id, name, kind, spec, status, created_at, updated_at) "
            "values (7, 's', 'native', '{}', 'pending', '2026-12-01', '2026-12-01')"
        )
        conn.exec_driver_sql(
            "insert into variants (id, study_id, name, kind, spec) values (3, 7, 'base', 'base', '{}')"
        )
        conn.exec_driver_sql(
            "insert into runs (id, study_id, variant_id, kind, seed, status, attempts, cancel_requested, "
            "epochs_done, created_at) values (11, 7, 3, 'train', 0, 'pending', 0, 0, 0, '2026-12-01')"
        )
    upgrade(settings)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select id, study_id, variant_id from runs").fetchall() == [(11, 7, 3)]
        ddl = dict(
            conn.exec_driver_sql("select name, sql from sqlite_master where type = 'table'").fetchall()
        )
        for table in ("studies", "variants", "runs", "epoch_metrics", "artefacts", "api_tokens"):
            assert "AUTOINCREMENT" in ddl[table], table
        assert conn.exec_driver_sql("pragma foreign_key_check").fetchall() == []
    downgrade(settings, "0002")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from runs").scalar() == 1
    engine.dispose()


def test_health_shows_no_server_path_when_auth_is_on(settings, fake_dispatch):
    """/health stays open for monitors in every auth mode; with auth on its error texts name no
    directory of the server (here: a file where the artefact directory should be)."""
    from backend.api import create_app

    root = settings.artifact_root
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("not a directory")
    fake_dispatch.health = {"ok": True, "workers": ["w"], "url": "redis://secret-host:6379/0"}
    open_body = TestClient(create_app(settings)).get("/api/v1/health").json()
    assert str(root) in open_body["artefacts"]["error"]  # auth off: the operator's own server
    settings.auth = "writes"
    body = TestClient(create_app(settings)).get("/api/v1/health").json()
    assert body["status"] == "degraded" and "not a directory" in body["artefacts"]["error"]
    assert str(root) not in json.dumps(body) and "secret-host" not in json.dumps(body)
