"""Every endpoint of the OpenAPI schema fuzzed by schemathesis against the ASGI app: no 5xx, every
status code documented, every response body and content type matching the schema, and data that
the schema calls invalid rejected with a 4xx. The database holds a native study, an imported study
and an artefact so that ids 1..3 reach the code behind the 404s.

Beyond the schema: the dashboard's callback endpoint (`/_dash-update-component`) with forged bodies
(hostile ids and values, broken structure, foreign Host headers) answers 4xx or harmlessly, never
500, and makes no request but to its own API; every endpoint with forged Host, Authorization and
X-Forwarded-* headers answers without a 5xx, and a foreign Host is a 400."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi import checks as oa_checks

from backend.analysis.synthetic import SyntheticVariant, rows_to_csv, synthetic_rows
from backend.db.models import Artefact, Run
from backend.db.session import session_scope
from backend.services.tokens import create_token
from backend.settings import Settings
from backend.web_security import host_allowed
from tests.reliability.conftest import API, DEMO_SPEC, FUZZ_TALLY
from tests.reliability.dash_forge import CALLBACK_PATH, forged_body

# Examples per operation; 17 operations -> a few hundred requests in about a minute here.
EXAMPLES = int(os.environ.get("PRUNESCAPE_FUZZ_EXAMPLES", "15"))
CHECKS = [
    schemathesis.checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
    oa_checks.negative_data_rejection,
]


def _schema() -> schemathesis.schemas.BaseSchema:
    """The schema as the app serves it (building the app touches no database)."""
    from backend.api import create_app

    return schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(database_url="sqlite://")))


schema = _schema()


@pytest.fixture
def seeded_app(sqlite_settings):
    from backend.api import create_app

    app = create_app(sqlite_settings)
    _seed(app, sqlite_settings.artifact_root)
    return app


def _seed(app, artifact_root: Path) -> None:
    with TestClient(app) as client:
        assert client.post(f"{API}/studies", json=DEMO_SPEC).status_code == 201
        csv_text = rows_to_csv(synthetic_rows([SyntheticVariant("base"), SyntheticVariant("u50")], size=5))
        response = client.post(f"{API}/studies/import", files={"file": ("r.csv", csv_text, "text/csv")})
        assert response.status_code == 201, response.text
    artifact_root.mkdir(parents=True, exist_ok=True)
    (artifact_root / "model.pt").write_bytes(b"\0" * 64)
    with session_scope(app.state.settings) as session:
        run = session.get(Run, 1)
        session.add(
            Artefact(run_id=run.id, variant_id=run.variant_id, kind="model", path="model.pt", bytes=64)
        )
        run.status = "failed"  # so /runs/1/retry has something to reopen


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_endpoint_survives_fuzzing(case, seeded_app) -> None:
    try:
        response = case.call(app=seeded_app)
    except Exception:  # the ASGI transport re-raises what the app did not handle: a 500
        FUZZ_TALLY[500] += 1
        raise
    FUZZ_TALLY[response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


# --- the dashboard's callback endpoint, with bodies no browser of ours sends ------------------------
# Ids, paths, URLs and markup where the pages expect ids and names; structure a renderer never makes.
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "../../internal/secret",
            "1/../../runs/1/retry?",
            "http://127.0.0.1:1/x",
            "//evil.example/x",
            "%2e%2e%2f",
            "1",
            "3",
            "2147483648",
            "-1",
            "1e3",
            " 1",
            "<a href=https://evil>x</a>",
            "top1",
        ]
    ),  # fmt: skip
    st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=4),
    st.dictionaries(
        st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.none()), max_size=4
    ),
)
MUTATIONS = ["none", "drop output", "unknown output", "drop inputs", "inputs not a list", "wrong arity",
             "entry not an object", "other component", "not an object", "changed not strings"]  # fmt: skip


def _mutate(body: dict, mutation: str) -> object:
    body = dict(body)
    if mutation == "drop output":
        body.pop("output")
    elif mutation == "unknown output":
        body["output"] = "no-such.thing"
    elif mutation == "drop inputs":
        body.pop("inputs")
    elif mutation == "inputs not a list":
        body["inputs"] = {"id": "x"}
    elif mutation == "wrong arity":
        body["inputs"] = body["inputs"] + body["inputs"]
    elif mutation == "entry not an object" and body["inputs"]:
        body["inputs"] = ["x", *body["inputs"][1:]]
    elif mutation == "other component" and body["inputs"] and isinstance(body["inputs"][0], dict):
        body["inputs"] = [{**body["inputs"][0], "id": "url", "property": "href"}, *body["inputs"][1:]]
    elif mutation == "not an object":
        return [body]
    elif mutation == "changed not strings":
        body["changedPropIds"] = [1, None]
    return body


class _RecordingTransport(httpx.AsyncBaseTransport):
    """The dashboard's way to the API during the test: into the ASGI app, every URL recorded."""

    def __init__(self, app) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.urls: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        return await self.inner.handle_async_request(request)


@pytest.fixture
def dashboard(seeded_app, monkeypatch):
    from frontend.api_client import ApiClient

    transport = _RecordingTransport(seeded_app)
    original = ApiClient._client

    def through_the_app(self):  # noqa: ANN001, ANN202
        self.transport = transport
        return original(self)

    monkeypatch.setattr(ApiClient, "_client", through_the_app)
    with TestClient(seeded_app) as client:
        dependencies = client.get("/_dash-dependencies").json()
        yield {"client": client, "dependencies": dependencies, "transport": transport}


@settings(
    max_examples=EXAMPLES * 12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(
    pick=st.integers(min_value=0, max_value=10_000),
    values=st.lists(HOSTILE, min_size=1, max_size=6),
    name=HOSTILE,
    mutation=st.sampled_from(MUTATIONS),
    host=st.sampled_from(["testserver", "127.0.0.1:9", "localhost:1", "[::1]:6379"]),
)
def test_dashboard_callbacks_survive_forged_bodies(dashboard, pick, values, name, mutation, host) -> None:
    """4xx or a harmless answer, never a 500, and the only requests the dashboard makes are to
    its own API (the server's socket, whatever the Host header says) under /api/v1 with integer ids."""
    dependencies = dashboard["dependencies"]
    dep = dependencies[pick % len(dependencies)]
    body = _mutate(forged_body(dep, values, name), mutation)
    transport = dashboard["transport"]
    transport.urls.clear()
    response = dashboard["client"].post(CALLBACK_PATH, json=body, headers={"Host": host})
    FUZZ_TALLY[response.status_code] += 1
    assert response.status_code < 500, (dep["output"], mutation, response.text[:500])
    if mutation != "none":
        assert 400 <= response.status_code < 500 or response.status_code == 204, (
            mutation,
            response.status_code,
        )
    for url in transport.urls:
        assert (url.host, url.port or 80) == ("testserver", 80), url
        assert re.fullmatch(r"/api/v1(/[a-z]+(/[0-9]+)?)+", url.path), url


# --- forged Host, Authorization and X-Forwarded-* on every endpoint ---------------------------------
# Header values a client can send (no leading / trailing blanks: the HTTP client refuses those).
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)
FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8000",
    "127.0.0.1.evil.example",
    "localhost.evil",
    "[::2]:80",
    "",
]
FORGED = st.fixed_dictionaries(
    {
        "host": st.one_of(
            st.sampled_from(["localhost", "127.0.0.1:8000", "[::1]", *FOREIGN_HOSTS]), PRINTABLE
        ),
        "authorization": st.one_of(
            st.none(),
            PRINTABLE,
            st.sampled_from(["Bearer", "Bearer psk_x", "Basic YTpi", "Bearer a b", "bearer  x"]),
        ),
        "x-forwarded-host": st.one_of(st.none(), st.sampled_from(["localhost", "evil.example"]), PRINTABLE),
        "x-forwarded-for": st.one_of(
            st.none(), st.sampled_from(["127.0.0.1", "10.0.0.1, 127.0.0.1"]), PRINTABLE
        ),
        "x-forwarded-proto": st.one_of(st.none(), st.sampled_from(["https", "gopher"]), PRINTABLE),
    }
)


@pytest.fixture
def seeded_team_app(sqlite_settings):
    """The seeded app with auth on writes: Authorization headers are parsed on every request."""
    from backend.api import create_app

    sqlite_settings.auth = "writes"
    with session_scope(sqlite_settings) as session:
        token = create_token(session, "alice")
    app = create_app(sqlite_settings)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.post(f"{API}/studies", json=DEMO_SPEC).status_code == 201
    return app


@schema.parametrize()
@schema.given(forged=FORGED)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_endpoint_survives_forged_headers(case, forged, seeded_team_app) -> None:
    headers = {key: value for key, value in forged.items() if value is not None}
    try:
        response = case.call(app=seeded_team_app, headers=headers)
    except Exception:
        FUZZ_TALLY[500] += 1
        raise
    FUZZ_TALLY[response.status_code] += 1
    case.validate_response(
        response, checks=[schemathesis.checks.not_a_server_error, oa_checks.status_code_conformance]
    )
    allowed = host_allowed(headers["host"], ["127.0.0.1", "localhost", "::1"], ("testserver", 80))
    if not allowed:
        assert response.status_code == 400 and "PRUNESCAPE_ALLOWED_HOSTS" in response.text
    nosniff = response.headers["x-content-type-options"]
    assert (nosniff if isinstance(nosniff, list) else [nosniff]) == ["nosniff"]
