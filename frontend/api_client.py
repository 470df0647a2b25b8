"""The dashboard's only way to the data: the REST API under /api/v1, over HTTP.

Async on purpose: mounted on the API's own uvicorn server, the Dash callbacks run on the server's
event loop, so a blocking request back to the same server would wait on itself forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

API_PREFIX = "/api/v1"


@dataclass
class ApiError(Exception):
    """A non-2xx answer of the API, with its decoded body (FastAPI's `detail`)."""

    status: int
    detail: Any
    path: str

    def __str__(self) -> str:
        return f"{self.status} from {self.path}: {self.detail}"

    def stale_page(self) -> bool:
        """A write refused because the thing is gone (404) or no longer in the state the page
        showed (409, e.g. someone else retried the run): the page should read it again."""
        return self.status in (404, 409)

    def field_errors(self) -> dict[str, str]:
        """422 details as {'grid.step': 'message'}: the location without the leading 'body'."""
        errors: dict[str, str] = {}
        if isinstance(self.detail, list):
            for item in self.detail:
                if not isinstance(item, dict):
                    continue
                loc = [str(part) for part in item.get("loc", []) if part not in ("body",)]
                key = ".".join(loc) or "_"
                errors.setdefault(key, str(item.get("msg", item)))
        elif isinstance(self.detail, dict) and "field" in self.detail:
            errors[str(self.detail["field"])] = str(self.detail.get("message", self.detail))
        else:
            errors["_"] = str(self.detail)
        return errors


class ApiClient:
    """Thin async wrapper: one method per endpoint the dashboard reads or writes. With `token`,
    every request carries `Authorization: Bearer <token>` (the pages pass one for writes only)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.transport = transport

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url + API_PREFIX,
            headers=self.headers,
            timeout=self.timeout,
            transport=self.transport,
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            async with self._client() as client:
                response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:  # unreachable API: the same kind of error for the pages
            raise ApiError(0, f"API not reachable at {self.base_url}: {exc}", path) from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                detail = body.get("detail", body) if isinstance(body, dict) else body
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail, path)
        if response.status_code == 204 or not response.content:
            return None
        content_type = response.headers.get("content-type", "")
        return response.json() if "json" in content_type else response.text

    async def get(self, path: str, **params: Any) -> Any:
        clean = {key: value for key, value in params.items() if value is not None}
        return await self.request("GET", path, params=clean)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Any:
        return await self.request("POST", path, json=json, **kwargs)

    # --- studies -------------------------------------------------------------------------------
    async def list_studies(self) -> list[dict]:
        body = await self.get("/studies")
        return body.get("items", body) if isinstance(body, dict) else body

    async def get_study(self, study_id: int | str) -> dict:
        return await self.get(f"/studies/{study_id}")

    async def get_analysis(self, study_id: int | str, metric: str = "top1") -> dict:
        return await self.get(f"/studies/{study_id}/analysis", metric=metric)

    async def create_study(self, spec: dict) -> dict:
        return await self.post("/studies", json=spec)

    async def plan_study(self, spec: dict) -> dict:
        """The dry run: what `create_study(spec)` would plan; stores nothing."""
        return await self.post("/studies/plan", json=spec)

    async def import_csv(self, filename: str, content: bytes, name: str | None = None) -> dict:
        files = {"file": (filename, content, "text/csv")}
        data = {"name": name} if name else None
        return await self.request("POST", "/studies/import", files=files, data=data)

    async def extend_study(self, study_id: int | str, body: dict | None = None) -> dict:
        return await self.post(f"/studies/{study_id}/extend", json=body or {})

    async def cancel_study(self, study_id: int | str) -> dict:
        """`CancelOut`: queued runs cancelled, running ones asked to stop at their next epoch."""
        return await self.post(f"/studies/{study_id}/cancel")

    async def delete_study(self, study_id: int | str) -> None:
        await self.request("DELETE", f"/studies/{study_id}")

    # --- runs ----------------------------------------------------------------------------------
    async def get_run(self, run_id: int | str) -> dict:
        return await self.get(f"/runs/{run_id}")

    async def retry_run(self, run_id: int | str) -> dict:
        """`RetryOut`: the run reopened (`pending`, or `blocked` behind its dependency)."""
        return await self.post(f"/runs/{run_id}/retry")
