"""Every endpoint of the OpenAPI schema fuzzed by schemathesis against the ASGI app: no 5xx, every
status code documented, every response body and content type matching the schema, and data that
the schema calls invalid rejected with a 4xx. The database holds a native study, an imported study
and an artefact so that ids 1..3 reach the code behind the 404s."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi import checks as oa_checks

from backend.analysis.synthetic import SyntheticVariant, rows_to_csv, synthetic_rows
from backend.db.models import Artefact, Run
from backend.db.session import session_scope
from backend.settings import Settings
from tests.reliability.conftest import API, DEMO_SPEC, FUZZ_TALLY

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
