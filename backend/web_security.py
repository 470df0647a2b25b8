"""Allowed hosts and security headers for everything a prunescape web server answers: the API with
its mounted dashboard and docs (`backend.api.create_app`), and the dashboard run on its own
(`frontend.app.create_standalone`). Outside `backend.api` so that the dashboard process, which
reaches data only through the HTTP API, can use it too.

Hosts: a page on an attacker's domain can have its name resolve to 127.0.0.1 (DNS rebinding) and
then read a local server as its own origin; its requests still carry the attacker's name in
`Host`. So a Host that is not one of `settings.allowed_hosts` (default: 127.0.0.1, localhost, ::1;
`prunescape serve` adds the host it binds; `*` allows any) nor the address of the socket the
request arrived on (an IP literal the client connected to: no name to rebind) is answered 400.

Headers (MLflow's and Jupyter Server's set): a Content-Security-Policy that allows only this
server's own scripts plus the inline scripts it knows (Dash's renderer start-up line, by hash),
`frame-ancestors 'none'` and X-Frame-Options DENY (no clickjacking), nosniff, no Referer. The
docs page (/docs) is FastAPI's fixed template loading Swagger UI from this server
(`backend.api.docs_pages`): its policy adds only the template's own inline script, by its hash;
nothing from another origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.settings import LOOPBACK_HOSTS

HOST_TEXT = re.compile(r"[a-z0-9._-]+|\[[0-9a-f:.]+\]")
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")
INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)(?P<attrs>[^>]*)>(?P<body>.*?)</script>", re.S | re.I)
DATA_SCRIPT = re.compile(rb"""type\s*=\s*["']application/json["']""", re.I)  # data, never run
FIXED_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def hostname(host_header: str) -> str | None:
    """The name or address of a Host header, lower case, without port or trailing dot; None when
    it is not a host name at all."""
    text = host_header.strip().lower()
    if text.startswith("["):
        name, bracket, _port = text.partition("]")
        text = name + bracket if bracket else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    text = text.rstrip(".")
    if not HOST_TEXT.fullmatch(text):
        return None
    return text.strip("[]")


def host_allowed(host_header: str | None, allowed: Sequence[str], server: Any = None) -> bool:
    """Whether a request with `Host: host_header` is answered: no Host (not a browser), `*` in
    `allowed`, a name in `allowed`, or the address of the socket it arrived on (`server`)."""
    if host_header is None:
        return True
    name = hostname(host_header)
    if name is None:
        return False
    if "*" in allowed or name in allowed:
        return True
    own = str(server[0]).lower().strip("[]") if server else None
    return name == own


def script_hash(script: bytes) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"


def inline_script_hashes(html: bytes) -> list[str]:
    """CSP hashes of the inline scripts a page runs (not its JSON data blocks)."""
    return [
        script_hash(match["body"])
        for match in INLINE_SCRIPT.finditer(html)
        if not DATA_SCRIPT.search(match["attrs"])
    ]


def policy(script_src: Iterable[str]) -> str:
    """The Content-Security-Policy text; `script_src` are extra sources (inline script hashes)."""
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'", *script_src],
        # Dash's components and plotly set inline styles; styles run no code.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "worker-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


class SecurityMiddleware:
    """Pure ASGI (no body buffering except the small docs pages): refuses foreign Host headers and
    adds the security headers to every response that does not set its own."""

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: Sequence[str], script_hashes: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)
        self.policy = policy(script_hashes).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), None)
        if not host_allowed(host, self.allowed_hosts, scope.get("server")):
            await self._refuse(scope, receive, send, host)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if scope["path"] in DOCS_PATHS:
            await self._docs_page(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._add_headers(message, self.policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _add_headers(message: Message, csp: bytes) -> None:
        # Raw header tuples (lower-case names): this runs for every response of the server.
        headers = list(message.get("headers") or [])
        present = {name.lower() for name, _value in headers}
        for name, value in (*FIXED_HEADERS, (b"content-security-policy", csp)):
            if name not in present:
                headers.append((name, value))
        message["headers"] = headers

    async def _docs_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's docs template, its inline script allowed by the hash of what it rendered (the
        template holds the app's settings only, no request data)."""
        start: Message = {}
        body = bytearray()

        async def collect(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    sources = inline_script_hashes(bytes(body))
                    self._add_headers(start, policy(sources).encode())
                    await send(start)
                    await send({"type": "http.response.body", "body": bytes(body)})
            else:
                await send(message)

        await self.app(scope, receive, collect)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, host: str | None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        from starlette.responses import JSONResponse

        name = hostname(host or "")
        shown = f"{name!r} is" if name else "an invalid Host header is"
        detail = (
            f"Host not allowed: {shown} not one of this server's names; set PRUNESCAPE_ALLOWED_HOSTS "
            "(comma-separated, `*` for any) to the names clients use"
        )
        response = JSONResponse({"detail": detail}, status_code=400)
        response.headers.update({k.decode(): v.decode() for k, v in FIXED_HEADERS})
        response.headers["content-security-policy"] = self.policy.decode()
        await response(scope, receive, send)


def install_security(app: Any, settings: Any, *, script_hashes: Sequence[str] = ()) -> None:
    """Add SecurityMiddleware to `app` as its outermost layer (call after mounting the dashboard)."""
    allowed = settings.allowed_hosts if settings.allowed_hosts is not None else list(LOOPBACK_HOSTS)
    app.add_middleware(SecurityMiddleware, allowed_hosts=allowed, script_hashes=script_hashes)
