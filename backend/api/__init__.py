"""The FastAPI application: REST API under /api/v1, the dashboard mounted at / when present."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import sessionmaker

from backend.db.session import get_engine
from backend.services.errors import FieldError, ServiceError
from backend.services.health import broker_health_cache
from backend.settings import Settings, get_settings
from backend.web_security import install_security

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="prunescape",
        description="How compressing a CNN moves its learning-rate x weight-decay landscape.",
        version="0.1.0",
        docs_url=None,  # served by install_docs from local files, not FastAPI's CDN pages
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.sessionmaker = sessionmaker(bind=get_engine(settings), expire_on_commit=False)
    app.state.broker_health = broker_health_cache(settings)

    @app.exception_handler(FieldError)
    async def _field_error(_request: Request, exc: FieldError) -> JSONResponse:
        detail = [{"loc": exc.loc, "msg": exc.message, "type": "value_error"}]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.InterfaceError)
    async def _db_down(_request: Request, exc: sa_exc.DBAPIError) -> JSONResponse:
        reason = str(exc.orig).splitlines()[0] if exc.orig else type(exc).__name__
        log.error("database unavailable: %s", reason)
        return JSONResponse(
            {"detail": f"database unavailable: {reason}"},
            status_code=503,
            headers={"Retry-After": str(settings.db_retry_after_s)},
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default shape, minus `input`/`ctx` (they may echo large bodies or secrets).
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    from backend.api.docs_pages import install_docs
    from backend.api.routes import compare, misc, runs, studies

    install_docs(app)

    app.include_router(studies.router, prefix=API_PREFIX)
    app.include_router(compare.router, prefix=API_PREFIX)
    app.include_router(runs.router, prefix=API_PREFIX)
    app.include_router(misc.router, prefix=API_PREFIX)

    script_hashes: list[str] = []
    try:
        from frontend.app import mount_dashboard
    except ImportError as exc:  # the dashboard is optional for the API
        log.info("dashboard not mounted: %s", exc)
    else:
        script_hashes = list(mount_dashboard(app, settings).csp_hashes())
    install_security(app, settings, script_hashes=script_hashes)  # outermost: hosts, CSP, headers
    return app
