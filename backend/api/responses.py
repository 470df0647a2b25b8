"""Responses of the hot read routes (analysis, landscape, run pages), sent as ready JSON bytes.

These routes still declare their `response_model` (OpenAPI, schemathesis), but return a
`Response`, which FastAPI passes through without validating and re-serialising the body: for a
10,000-run study that round trip through pydantic cost more than building the body did.
"""

from __future__ import annotations

from fastapi import Request, Response

from backend.services.read_cache import JsonBody

NOT_MODIFIED = {304: {"description": "the body is unchanged since the ETag sent in If-None-Match"}}


def cached_json_response(request: Request, cached: JsonBody) -> Response:
    """200 with the body and its ETag (gzip-encoded when the client accepts it), or 304 when
    If-None-Match names that body. `no-cache`: a client may keep the body but asks each time
    (the data of a running study moves)."""
    gzipped = cached.gzipped is not None and _accepts_gzip(request.headers.get("accept-encoding"))
    etag = cached.gzip_etag if gzipped else cached.etag
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
    if _matches(request.headers.get("if-none-match"), (cached.etag, cached.gzip_etag)):
        return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(cached.gzipped, media_type="application/json", headers=headers)
    return Response(cached.body, media_type="application/json", headers=headers)


def _matches(if_none_match: str | None, etags: tuple[str, ...]) -> bool:
    """If-None-Match uses the weak comparison: W/ is ignored, and either encoding of the same
    body counts as the same body."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") in etags:
            return True
    return False


def _accepts_gzip(accept_encoding: str | None) -> bool:
    for coding in (accept_encoding or "").split(","):
        name, _, params = coding.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if params.strip().startswith("q=") else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False
