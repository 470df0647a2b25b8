"""/artefacts/{id} (file download), /catalog, /auth and /health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from backend.api.deps import ArtefactId, ReaderDep, SessionDep, SettingsDep
from backend.api.redaction import public_error
from backend.api.schemas import READ_ERRORS, AuthOut, CatalogOut, HealthOut
from backend.services import artefact_files
from backend.services import health as health_checks
from backend.services.catalog_view import catalog_view

router = APIRouter(tags=["misc"], responses=READ_ERRORS)


@router.get("/artefacts/{artefact_id}", response_class=FileResponse)
def download_artefact(
    artefact_id: ArtefactId, session: SessionDep, settings: SettingsDep, _reader: ReaderDep
) -> Any:
    path, filename = artefact_files.artefact_file(session, artefact_id, settings)
    return FileResponse(path, filename=filename, media_type="application/octet-stream")


@router.get("/catalog", response_model=CatalogOut)
def catalog(_reader: ReaderDep) -> Any:
    """The models and data sets a study may name, the variant kinds, the FLOPs convention."""
    return catalog_view()


@router.get("/auth", response_model=AuthOut)
def auth_mode(settings: SettingsDep) -> Any:
    """What a token is needed for on this server; open in every mode (like /health), so a client
    without a token can say so. Names the mode only, nothing about any token."""
    mode = settings.auth_mode
    return {"mode": str(mode), "reads_need_token": mode == "all", "writes_need_token": mode != "off"}


def _without_paths(part: dict[str, Any]) -> dict[str, Any]:
    hidden = {k: public_error(v) for k, v in part.items() if k in ("error", "ping_error", "note") and v}
    hidden.pop("url", None)
    return {**{k: v for k, v in part.items() if k != "url"}, **hidden}


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(request: Request, settings: SettingsDep) -> Any:
    """Bounded in time under any load: no request-scoped database session, the broker answered
    from a cached single-flight probe (backend/services/health.py). Open in every auth mode (for
    monitors); with auth on, its error texts carry no server path (the artefact directory, the
    database's host)."""
    database = await run_in_threadpool(health_checks.database_health, request.app.state.sessionmaker)
    broker = await request.app.state.broker_health.aget()
    workers = [str(w) for w in broker.get("workers") or []]
    artefacts = await run_in_threadpool(health_checks.artefacts_health, settings)
    if settings.auth_mode != "off":
        database, broker, artefacts = (_without_paths(part) for part in (database, broker, artefacts))
    body = HealthOut(
        status=health_checks.overall(database, broker, artefacts),
        database=database,
        broker=broker,
        workers=workers,
        artefacts=artefacts,
    )
    if not database["ok"]:
        return JSONResponse(
            body.model_dump(), status_code=503, headers={"Retry-After": str(settings.db_retry_after_s)}
        )
    return body
