"""Postgres goes away mid-session (a proxy in front of the shared server is cut, then restored):
requests during the outage get 503 with Retry-After, never a 500, and the API recovers by itself."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.reliability.conftest import API, DEMO_SPEC
from tests.reliability.proxy import CuttableProxy


def test_api_answers_503_during_a_database_outage_and_recovers(pg_schema_url, sqlite_settings) -> None:
    from backend.api import create_app

    url = sa.make_url(pg_schema_url)
    proxy = CuttableProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = sqlite_settings.model_copy(update={"database_url": proxied, "db_retry_after_s": 7})
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            created = client.post(f"{API}/studies", json=DEMO_SPEC)
            assert created.status_code == 201, created.text
            study = created.json()["id"]
            assert client.get(f"{API}/studies/{study}").status_code == 200

            proxy.cut()
            during = [
                client.get(f"{API}/studies/{study}"),
                client.get(f"{API}/studies"),
                client.get(f"{API}/studies/{study}/runs"),
                client.post(f"{API}/studies", json=DEMO_SPEC),
                client.post(f"{API}/studies/{study}/cancel"),
                client.get(f"{API}/health"),
            ]
            for response in during:
                assert response.status_code == 503, (
                    response.request.url,
                    response.status_code,
                    response.text,
                )
                assert response.headers.get("retry-after") == "7"
            assert during[0].json()["detail"].startswith("database unavailable")
            assert during[-1].json()["database"]["ok"] is False

            proxy.restore()
            after = client.get(f"{API}/studies/{study}")
            assert after.status_code == 200
            assert after.json()["progress"]["total"] == created.json()["progress"]["total"]
            assert client.get(f"{API}/studies").json()["total"] == 1  # the failed POST stored nothing
    finally:
        proxy.close()
