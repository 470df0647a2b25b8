"""Fixtures of the client tests: a real server per test on a fresh SQLite copy (auth off, or on
with tokens), the broker replaced by the backend tests' recording fake."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from backend.db.session import dispose_engines, session_scope
from backend.settings import Settings
from tests.backend.conftest import fake_dispatch, sqlite_template  # noqa: F401 - fixtures used here
from tests.cli.live import LiveServer, serve_in_thread


def _settings(tmp_path: Path, template: Path, *, auth: bool) -> Settings:
    db = tmp_path / "prunescape.db"
    shutil.copy(template, db)
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{db}",
        artifact_dir=tmp_path / "artifacts",
        check_dataset_paths=False,
        auth=auth,
    )


@pytest.fixture
def server_settings(
    tmp_path: Path,
    sqlite_template: Path,  # noqa: F811
    fake_dispatch: SimpleNamespace,  # noqa: F811
) -> Iterator[Settings]:
    """Settings of a server (auth off) that the test starts and stops itself."""
    yield _settings(tmp_path, sqlite_template, auth=False)
    dispose_engines()


@pytest.fixture
def server(server_settings: Settings) -> Iterator[LiveServer]:
    with serve_in_thread(server_settings) as live:
        yield live


@pytest.fixture
def team_server(
    tmp_path: Path,
    sqlite_template: Path,  # noqa: F811
    fake_dispatch: SimpleNamespace,  # noqa: F811
) -> Iterator[SimpleNamespace]:
    """Auth on (team mode): `token` is active, `revoked` was revoked."""
    from backend.services.tokens import create_token, revoke_token

    settings = _settings(tmp_path, sqlite_template, auth=True)
    with session_scope(settings) as session:
        token = create_token(session, "alice")
        revoked = create_token(session, "bob")
        revoke_token(session, "bob")
    with serve_in_thread(settings) as live:
        yield SimpleNamespace(url=live.url, settings=settings, token=token, revoked=revoked)
    dispose_engines()
