"""Engine and session factory from the settings.

SQLite is shared by the API and the worker processes, so every connection turns on WAL (readers
do not block the writer), foreign keys (ON DELETE CASCADE) and a busy timeout (a writer waits for
the lock instead of failing at once).

`retry_while_unreachable` is how a long-lived process (a worker in the middle of a run) rides out
a database restart or a network cut instead of failing what it was doing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from backend.settings import Settings, get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# What an unreachable database raises (a refused or dropped connection); the API answers 503 for them.
UNREACHABLE_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError)

log = logging.getLogger(__name__)
T = TypeVar("T")

_engines: dict[str, Engine] = {}
_lock = Lock()


def make_engine(database_url: str, *, connect_timeout_s: int = 5) -> Engine:
    """A new engine for `database_url` with the pragmas / timeouts prunescape relies on."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            create_private_file(Path(url.database))
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API object
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": connect_timeout_s} if url.get_backend_name() == "postgresql" else {}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def create_private_file(path: Path) -> None:
    """Create `path` empty and readable by this user only (0600; a directory made for it 0700)
    unless it exists. SQLite gives the -wal and -shm files it adds the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process-wide engine for the settings' database URL (one per URL)."""
    settings = settings or get_settings()
    url = str(settings.database_url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
    return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(settings), expire_on_commit=False)


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back when it raises."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def retry_while_unreachable(
    make_session: Callable[[], Session],
    action: Callable[[Session], T],
    *,
    within_s: float,
    what: str,
    first_delay_s: float = 0.5,
    max_delay_s: float = 5.0,
) -> T:
    """`action(session)` in a fresh session; while the database is unreachable (UNREACHABLE_ERRORS)
    it is tried again, backing off exponentially, for up to `within_s` seconds, then the error
    propagates. `action` must be safe to repeat: a transaction cut off mid-way was rolled back,
    but a COMMIT that reached the server just before the connection dropped was not."""
    deadline = time.monotonic() + within_s
    delay = first_delay_s
    while True:
        try:
            with make_session() as session:
                return action(session)
        except UNREACHABLE_ERRORS as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            reason = str(exc.orig or exc).splitlines()[0]
            log.warning("%s: database unreachable (%s); retrying in %.1f s", what, reason, min(delay, left))
            time.sleep(min(delay, left))
            delay = min(2 * delay, max_delay_s)
