"""The dashboard's only way to the data: the REST API under /api/v1, over HTTP.

Async on purpose: mounted on the API's own uvicorn server, the Dash callbacks run on the server's
event loop, so a blocking request back to the same server would wait on itself forever.

Ids come from the browser (a forged callback can send any text), so every method that puts an id
into a path takes it through `resource_id` first: anything but a positive integer the API could
hold is answered like a 404, without a request (a study id of `1/../../runs/5/retry?` once turned
"cancel this study" into "retry run 5").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

API_PREFIX = "/api/v1"
# The API's ids are 32-bit integers (backend.api.deps.ID_MAX); larger numbers name nothing.
ID_MAX = 2**31 - 1
ID_DIGITS = re.compile(r"[0-9]{1,10}")
# What a path of ours looks like: no dot segments, query or fragment can ride in on an id.
SAFE_PATH = re.compile(r"(/[A-Za-z0-9_-]+)+")
# A bearer token as a header can carry it: printable ASCII, no blanks (the browser's store is
# forgeable too, and a newline in a header value is an error of its own).
TOKEN_TEXT = re.compile(r"[!-~]{1,512}")


def parse_id(value: Any) -> int | None:
    """`value` as an id the API could hold (an int, or a string of ASCII digits, 1..ID_MAX), else
    None. No signs, blanks, dots or other characters: the text goes into a URL path."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and ID_DIGITS.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 1 <= number <= ID_MAX else None


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


def resource_id(value: Any, what: str) -> int:
    """The id for a path, or ApiError 404 (the pages' not-found answer) without any request."""
    number = parse_id(value)
    if number is None:
        raise ApiError(404, f"{what} not found: {what} ids are whole numbers from 1 to {ID_MAX}", what)
    return number


class ApiClient:
    """Thin async wrapper: one method per endpoint the dashboard reads or writes. With `token`,
    every request carries `Authorization: Bearer <token>` (the browser user's, reads and writes)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.bad_token = bool(token) and not (isinstance(token, str) and TOKEN_TEXT.fullmatch(token))
        self.headers = {"authorization": f"Bearer {token}"} if token and not self.bad_token else {}
        self.timeout = timeout
        self.transport = transport
        self.problem: str | None = None  # set by `unreachable`: every request fails with it

    @classmethod
    def unreachable(cls, reason: str) -> ApiClient:
        """A client whose every request fails as an unreachable API would, saying `reason`."""
        client = cls("http://api.invalid")
        client.problem = reason
        return client

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url + API_PREFIX,
            headers=self.headers,
            timeout=self.timeout,
            transport=self.transport,
        )

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if not SAFE_PATH.fullmatch(path):
            raise ApiError(404, "not found: not a path of the API", "(refused)")
        if self.problem is not None:
            raise ApiError(0, self.problem, path)
        if self.bad_token:  # what the API answers for a token it does not know
            raise ApiError(403, "unknown or revoked token", path)
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

    # --- server ---------------------------------------------------------------------------------
    async def auth_mode(self) -> dict:
        """`AuthOut`: what a token is needed for on this server (open in every auth mode)."""
        return await self.get("/auth")

    async def catalog(self) -> dict:
        """`CatalogOut`: the models and data sets a spec may name, the variant kinds."""
        return await self.get("/catalog")

    # --- studies -------------------------------------------------------------------------------
    async def list_studies(self) -> list[dict]:
        body = await self.get("/studies")
        return body.get("items", body) if isinstance(body, dict) else body

    async def studies_page(
        self,
        *,
        limit: int,
        offset: int,
        sort: str = "-created_at",
        status: str | None = None,
        q: str | None = None,
    ) -> dict:
        """One page of the study list (`StudyList`: items, total), filtered and sorted by the API."""
        return await self.get("/studies", limit=limit, offset=offset, sort=sort, status=status, q=q or None)

    async def landscape(self, study_id: int | str, variant: str, metric: str = "top1") -> dict:
        """`Landscape`: every grid point of a variant with its state (finished, running, failed, ...)."""
        return await self.get(
            f"/studies/{resource_id(study_id, 'study')}/landscape", variant=variant, metric=metric
        )

    async def export_study(self, study_id: int | str, fmt: str = "csv") -> Any:
        """The whole study's runs: CSV text, or the JSON body (`{"study", "rows"}`)."""
        return await self.get(f"/studies/{resource_id(study_id, 'study')}/export", format=fmt)

    async def get_study(self, study_id: int | str) -> dict:
        return await self.get(f"/studies/{resource_id(study_id, 'study')}")

    async def get_analysis(self, study_id: int | str, metric: str = "top1") -> dict:
        return await self.get(f"/studies/{resource_id(study_id, 'study')}/analysis", metric=metric)

    async def compare(self, study_id: int | str) -> dict:
        return await self.get(f"/studies/{resource_id(study_id, 'study')}/compare")

    async def compare_studies(self, study_ids: list[int | str], metric: str = "top1") -> dict:
        """GET /compare?studies=1,2,...: the chosen studies side by side (`StudiesCompare`)."""
        ids = ",".join(str(resource_id(study_id, "study")) for study_id in study_ids)
        return await self.get("/compare", studies=ids, metric=metric)

    async def variants(self, study_id: int | str) -> dict:
        return await self.get(f"/studies/{resource_id(study_id, 'study')}/variants")

    async def list_runs(self, study_id: int | str, **filters: Any) -> dict:
        return await self.get(f"/studies/{resource_id(study_id, 'study')}/runs", **filters)

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
        return await self.post(f"/studies/{resource_id(study_id, 'study')}/extend", json=body or {})

    async def cancel_study(self, study_id: int | str) -> dict:
        """`CancelOut`: queued runs cancelled, running ones asked to stop at their next epoch."""
        return await self.post(f"/studies/{resource_id(study_id, 'study')}/cancel")

    async def delete_study(self, study_id: int | str) -> None:
        await self.request("DELETE", f"/studies/{resource_id(study_id, 'study')}")

    # --- runs ----------------------------------------------------------------------------------
    async def get_run(self, run_id: int | str) -> dict:
        return await self.get(f"/runs/{resource_id(run_id, 'run')}")

    async def retry_run(self, run_id: int | str) -> dict:
        """`RetryOut`: the run reopened (`pending`, or `blocked` behind its dependency)."""
        return await self.post(f"/runs/{resource_id(run_id, 'run')}/retry")
