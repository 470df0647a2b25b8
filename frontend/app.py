"""The Dash dashboard: mounted on the API's FastAPI server, or run as its own process.

It reads and writes only through the REST API (`frontend.api_client`), so the same code serves
both deployments: mounted, it calls the API at `settings.api_url` (`prunescape serve` sets it to the
address it listens on), else at the local address of the socket the request came in on; standalone,
`--api-url` names the API. Never at an address taken from a request header: a forged `Host` once
pointed the dashboard's requests at any port of the machine and handed back what answered. It holds
no token of its own: reads and writes carry the token the user pasted into the top bar
(`frontend.pages.token`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from frontend.api_client import ApiClient, parse_id
from frontend.dash_server import HttpCallbackBackend
from frontend.pages import compare, components, new, run, studies, study
from frontend.pages import token as api_token

ASSETS = Path(__file__).parent / "assets"
# Paths the FastAPI app owns; the dashboard's catch-all must never answer for them.
RESERVED_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/_dash-", "/assets/")

# factory(token=None): a client for one callback, carrying the browser user's token (if any).
ClientFactory = Callable[..., ApiClient]


def _setting(settings: Any, name: str, default: Any = None) -> Any:
    return getattr(settings, name, default) if settings is not None else default


def own_address(scope: dict[str, Any]) -> str | None:
    """http://host:port of the socket a request arrived on (ASGI `server`: the listening socket's
    own address, set by the server, not by anything the client sends), or None (a unix socket)."""
    server = scope.get("server")
    if not server or len(server) != 2 or not isinstance(server[1], int):
        return None
    host, port = str(server[0]), server[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_client_factory(settings: Any = None, api_url: str | None = None) -> ClientFactory:
    """A client per callback: to `api_url` / `settings.api_url`, else to the server's own address
    (`own_address`). `factory(token)` sends `Authorization: Bearer <token>` (the browser user's)."""
    fixed_url = api_url or _setting(settings, "api_url")
    timeout = float(_setting(settings, "dashboard_api_timeout", 60.0) or 60.0)

    def factory(token: str | None = None) -> ApiClient:
        if fixed_url:
            return ApiClient(str(fixed_url), token=token, timeout=timeout)
        from dash.backends._fastapi import get_current_request

        address = own_address(get_current_request().scope)
        if address is None:
            return ApiClient.unreachable(
                "the dashboard does not know the API's address: set PRUNESCAPE_API_URL"
            )
        return ApiClient(address, token=token, timeout=timeout)

    return factory


def _layout() -> html.Div:
    return html.Div(
        [
            dcc.Location(id="url", refresh="callback-nav"),
            api_token.store(),
            html.Header(
                [
                    dcc.Link("prunescape", href="/", className="brand"),
                    dcc.Link("Studies", href="/"),
                    dcc.Link("New study", href="/new"),
                    html.A("API docs", href="/docs", target="_blank"),
                    api_token.control(),
                ],
                className="topbar",
            ),
            html.Main(id="page", className="page"),
        ]
    )


def build_dash(server: FastAPI, client_factory: ClientFactory) -> Dash:
    """Create the Dash app on `server` and register every page's callbacks on it."""
    # Dash picks its backend from a server passed to the constructor; to use ours, attach it after.
    app = Dash(
        __name__,
        server=False,
        backend=HttpCallbackBackend,
        title="prunescape",
        assets_folder=str(ASSETS),
        suppress_callback_exceptions=True,
        update_title=None,
        serve_locally=True,
    )
    app.init_app(server)
    app.layout = _layout()

    @app.callback(Output("page", "children"), Input("url", "pathname"), State("url", "search"))
    def render_page(pathname: str | None, search: str | None):
        return route(
            pathname if isinstance(pathname, str) else "/", search if isinstance(search, str) else ""
        )

    components.register(app)
    api_token.register(app, client_factory)
    for page in (studies, study, run, new, compare):
        page.register(app, client_factory)
    _replace_catchall(app)
    return app


def route(pathname: str, search: str = "") -> Any:
    """Pathname (and query string) -> page layout. Every page is addressable and survives a
    reload; a study page's view (metric, colour scale, floor) comes from its query string."""
    parts = [part for part in pathname.strip("/").split("/") if part]
    if not parts:
        return studies.layout()
    if parts == ["new"]:
        return new.layout()
    if parts == ["compare"]:  # the studies come from the query string (?studies=1,2), checked there
        return compare.layout()
    # Only ids the API could hold make a page (its callbacks check the id again: the store is forgeable).
    if len(parts) == 2 and parts[0] == "studies" and parse_id(parts[1]) is not None:
        return study.layout(parts[1], search)
    if len(parts) == 2 and parts[0] == "runs" and parse_id(parts[1]) is not None:
        return run.layout(parts[1])
    return html.Div(
        [
            html.H1("Page not found"),
            html.P(["No page at ", html.Code(pathname), ". "]),
            dcc.Link("All studies", href="/"),
        ]
    )


def _replace_catchall(app: Dash) -> None:
    """Dash's FastAPI backend adds a GET `{path:path}` route at startup that answers every path,
    /api/v1/typo included, with the dashboard's HTML. Ours serves the dashboard only outside the
    API's prefixes, so unknown API paths stay JSON 404s."""

    def setup() -> None:
        async def catchall(request: Request, path: str) -> Response:
            if ("/" + path).startswith(RESERVED_PREFIXES):
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            from dash.backends._fastapi import reset_current_request, set_current_request

            token = set_current_request(request)
            try:
                app._setup_server()  # noqa: SLF001 - Dash runs it only for "/" and /_dash-* paths
                return Response(content=app.index(), media_type="text/html")
            finally:
                reset_current_request(token)

        app.backend.server.add_api_route(
            "/{path:path}", catchall, methods=["GET"], include_in_schema=False, name="dashboard"
        )

    app.backend._setup_catchall = setup  # noqa: SLF001 - the backend exposes no other hook


def mount_dashboard(app: FastAPI, settings: Any = None) -> Dash:
    """Serve the dashboard at / of the API's FastAPI app (called by `backend.api.create_app`)."""
    return build_dash(app, make_client_factory(settings))


def create_standalone(api_url: str, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The dashboard as its own process, talking to the API at `api_url`, with the API's Host check
    and security headers (`allowed_hosts`: None = the loopback names)."""
    # An ASGI middleware, no data: the dashboard still reaches data only through the HTTP API.
    from backend.settings import LOOPBACK_HOSTS
    from backend.web_security import SecurityMiddleware

    server = FastAPI(title="prunescape dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    dash_app = build_dash(server, make_client_factory(api_url=api_url))
    server.add_middleware(
        SecurityMiddleware,
        allowed_hosts=allowed_hosts if allowed_hosts is not None else list(LOOPBACK_HOSTS),
        script_hashes=dash_app.csp_hashes(),
    )
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frontend.app", description="prunescape dashboard alone")
    parser.add_argument("--api-url", default=os.environ.get("PRUNESCAPE_API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument(
        "--allowed-hosts",
        default=os.environ.get("PRUNESCAPE_ALLOWED_HOSTS"),
        help="Host names browsers use for this dashboard, comma-separated (default: loopback and --host)",
    )
    args = parser.parse_args(argv)
    import uvicorn

    if args.allowed_hosts:
        hosts = [name.strip().lower() for name in args.allowed_hosts.split(",") if name.strip()]
    else:
        hosts = ["127.0.0.1", "localhost", "::1", args.host.lower()]
    uvicorn.run(create_standalone(args.api_url, hosts), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
