"""/artefacts/{id} (file download) and /health."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from backend.api.deps import ArtefactId, ReaderDep, SessionDep, SettingsDep
from backend.api.schemas import READ_ERRORS, HealthOut
from backend.services import studies as svc
from backend.services.storage import artefact_store_health

router = APIRouter(tags=["misc"], responses=READ_ERRORS)
log = logging.getLogger(__name__)


@router.get("/artefacts/{artefact_id}", response_class=FileResponse)
def download_artefact(
    artefact_id: ArtefactId, session: SessionDep, settings: SettingsDep, _reader: ReaderDep
) -> Any:
    path, filename = svc.artefact_file(session, artefact_id, settings)
    return FileResponse(path, filename=filename, media_type="application/octet-stream")


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(session: SessionDep, settings: SettingsDep) -> Any:
    database: dict[str, Any] = {"ok": True}
    try:
        session.execute(sa.text("select 1"))
    except sa.exc.DBAPIError as exc:
        database = {"ok": False, "error": str(exc.orig).splitlines()[0] if exc.orig else str(exc)}
    broker = _broker()
    workers = [str(w) for w in broker.get("workers") or []]
    artefacts = artefact_store_health(settings.artifact_root)
    ok = database["ok"] and bool(broker.get("ok")) and bool(workers) and artefacts["ok"]
    body = HealthOut(
        status="ok" if ok else "degraded",
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


def _broker() -> dict[str, Any]:
    try:
        from backend.services.dispatch import broker_health
    except ImportError as exc:
        return {"ok": False, "error": f"no dispatcher: {exc}"}
    try:
        result = broker_health()
    except Exception as exc:  # noqa: BLE001 - health must answer whatever the broker does
        log.warning("broker health check failed: %s", exc)
        return {"ok": False, "error": str(exc)}
    return dict(result) if isinstance(result, dict) else {"ok": bool(result)}
