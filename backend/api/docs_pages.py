"""The API's documentation page, served whole by this server: Swagger UI at /docs with its script,
style and favicon from the `fastapi-offline` package (Swagger UI 5, which reads OpenAPI 3.1, as
files), never from a CDN. A self-hosted tool is often run where the internet is not, and a docs page
that loads code from elsewhere is code this server does not control. There is no /redoc: ReDoc's
bundle fetches its logo from cdn.redoc.ly. Also /docs/spec.md: the definitions of every number
(docs/spec.md), when the server runs from a source checkout.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS = "/docs/assets"
SPEC_PATH = "/docs/spec.md"
SPEC_FILE = Path(__file__).resolve().parents[2] / "docs" / "spec.md"
# Swagger UI's online validator badge would send the schema's URL to validator.swagger.io.
SWAGGER_PARAMETERS = {"validatorUrl": None}


def assets_dir() -> Path:
    """The folder of Swagger UI files the `fastapi-offline` package ships."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /docs/oauth2-redirect, their assets and /docs/spec.md on `app` (made with
    docs_url=None, redoc_url=None, so FastAPI's CDN pages are not there)."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - API docs",
            oauth2_redirect_url=root + redirect_url,
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(SPEC_PATH, include_in_schema=False)
    async def spec_text() -> PlainTextResponse:
        if not SPEC_FILE.is_file():
            return PlainTextResponse(
                "The definitions are in docs/spec.md of the prunescape source; this server was "
                "installed without it.",
                status_code=404,
            )
        return PlainTextResponse(SPEC_FILE.read_text(encoding="utf-8"))
