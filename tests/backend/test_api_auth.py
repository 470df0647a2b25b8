"""Auth modes (off | writes | all): 401 without / with a malformed header, 403 for unknown or revoked
tokens; tokens stored as sha256 hashes only; a study is managed by its creator or an admin token;
readers without a token see run errors without tracebacks or server paths."""

from __future__ import annotations

import copy
import hashlib
import logging

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from backend.db.models import ApiToken, Run, Study
from backend.db.session import session_scope
from backend.services.tokens import create_token, list_tokens, revoke_token
from backend.settings import Settings
from tests.backend.conftest import DEMO_SPEC

API = "/api/v1"


def test_writes_need_a_valid_token(settings, fake_dispatch, caplog):
    from backend.api import create_app

    settings.auth = "writes"
    with session_scope(settings) as session:
        token = create_token(session, "alice")
        old = create_token(session, "bob")
        revoke_token(session, "bob")
        stored = session.scalar(sa.select(ApiToken).where(ApiToken.name == "alice"))
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in stored.token_hash
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(settings)) as client:
        spec = copy.deepcopy(DEMO_SPEC)
        assert client.post(f"{API}/studies", json=spec).status_code == 401
        malformed = client.post(f"{API}/studies", json=spec, headers={"Authorization": f"Token {token}"})
        assert malformed.status_code == 401 and malformed.headers["www-authenticate"] == "Bearer"
        assert (
            client.post(f"{API}/studies", json=spec, headers={"Authorization": "Bearer"}).status_code == 401
        )
        wrong = client.post(f"{API}/studies", json=spec, headers={"Authorization": "Bearer psk_guess"})
        assert wrong.status_code == 403
        revoked = client.post(f"{API}/studies", json=spec, headers={"Authorization": f"Bearer {old}"})
        assert revoked.status_code == 403
        ok = client.post(f"{API}/studies", json=spec, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 201 and ok.json()["created_by"] == "alice"
        sid = ok.json()["id"]
        # reads stay open; other writes are guarded too
        assert client.get(f"{API}/studies/{sid}").status_code == 200
        assert client.post(f"{API}/studies/{sid}/cancel").status_code == 401
        assert client.delete(f"{API}/studies/{sid}").status_code == 401
        assert client.post(f"{API}/runs/1/retry").status_code == 401
        assert (
            client.delete(f"{API}/studies/{sid}", headers={"Authorization": f"Bearer {token}"}).status_code
            == 204
        )
    assert token not in caplog.text and old not in caplog.text


def test_auth_off_needs_no_token(client):
    assert client.post(f"{API}/studies", json=DEMO_SPEC).status_code == 201


# --- auth modes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "mode"),
    [("1", "writes"), ("true", "writes"), ("writes", "writes"), ("all", "all"), ("ALL", "all"),
     ("0", "off"), ("false", "off"), ("off", "off"), ("", "off")],
)  # fmt: skip
def test_the_auth_setting_is_a_mode_and_1_still_means_writes(monkeypatch, value, mode):
    monkeypatch.setenv("PRUNESCAPE_AUTH", value)
    assert Settings().auth == mode
    assert bool(Settings().auth) is (mode != "off")  # `if settings.auth:` still means "auth is on"
    assert Settings(auth=True).auth == "writes" and Settings(auth=False).auth == "off"


def test_an_unknown_auth_mode_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setenv("PRUNESCAPE_AUTH", "everything")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "auth" in str(refused.value) and "off, writes or all" in str(refused.value)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def team(settings, fake_dispatch):
    """Auth on writes; alice and bob (plain tokens), root (an admin token); a study of alice's."""
    from backend.api import create_app

    settings.auth = "writes"
    with session_scope(settings) as session:
        tokens = {name: create_token(session, name) for name in ("alice", "bob")}
        tokens["root"] = create_token(session, "root", admin=True)
    with TestClient(create_app(settings)) as client:
        created = client.post(f"{API}/studies", json=DEMO_SPEC, headers=_bearer(tokens["alice"]))
        assert created.status_code == 201, created.text
        yield {"client": client, "tokens": tokens, "study_id": created.json()["id"], "settings": settings}


def _fail_first_run(settings, study_id: int) -> int:
    with session_scope(settings) as session:
        run = session.scalar(sa.select(Run).where(Run.study_id == study_id).order_by(Run.id).limit(1))
        run.status, run.error = "failed", "boom"
        return run.id


def test_only_the_creator_or_an_admin_cancels_extends_deletes_or_retries(team):
    client, tokens, sid = team["client"], team["tokens"], team["study_id"]
    run_id = _fail_first_run(team["settings"], sid)
    refused_as_bob = {
        "cancel": client.post(f"{API}/studies/{sid}/cancel", headers=_bearer(tokens["bob"])),
        "extend": client.post(f"{API}/studies/{sid}/extend", json={}, headers=_bearer(tokens["bob"])),
        "delete": client.delete(f"{API}/studies/{sid}", headers=_bearer(tokens["bob"])),
        "retry": client.post(f"{API}/runs/{run_id}/retry", headers=_bearer(tokens["bob"])),
    }
    for action, response in refused_as_bob.items():
        assert response.status_code == 403, (action, response.text)
        assert response.json()["detail"].startswith(f"study {sid} belongs to alice; its creator or an admin")
    assert client.get(f"{API}/runs/{run_id}").json()["status"] == "failed"
    assert client.get(f"{API}/studies/{sid}").json()["status"] != "cancelled"
    # the creator retries her run; an admin cancels her study; she deletes it
    assert client.post(f"{API}/runs/{run_id}/retry", headers=_bearer(tokens["alice"])).status_code == 200
    cancelled = client.post(f"{API}/studies/{sid}/cancel", headers=_bearer(tokens["root"]))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.delete(f"{API}/studies/{sid}", headers=_bearer(tokens["bob"])).status_code == 403
    assert client.delete(f"{API}/studies/{sid}", headers=_bearer(tokens["alice"])).status_code == 204
    # a study that is gone is a 404 for everyone with a token, never an ownership question
    assert client.delete(f"{API}/studies/{sid}", headers=_bearer(tokens["bob"])).status_code == 404
    assert client.post(f"{API}/runs/{run_id}/retry", headers=_bearer(tokens["bob"])).status_code == 404


def test_a_study_made_while_auth_was_off_is_managed_by_admin_tokens(team):
    client, tokens = team["client"], team["tokens"]
    with session_scope(team["settings"]) as session:
        session.get(Study, team["study_id"]).created_by = None
    refused = client.delete(f"{API}/studies/{team['study_id']}", headers=_bearer(tokens["alice"]))
    assert refused.status_code == 403 and "no recorded creator" in refused.json()["detail"]
    assert (
        client.delete(f"{API}/studies/{team['study_id']}", headers=_bearer(tokens["root"])).status_code == 204
    )


def test_auth_off_keeps_every_write_open(client):
    sid = client.post(f"{API}/studies", json=DEMO_SPEC).json()["id"]
    assert client.post(f"{API}/studies/{sid}/cancel").status_code == 200
    assert client.delete(f"{API}/studies/{sid}").status_code == 204


def test_admin_tokens_are_stored_as_such(settings):
    with session_scope(settings) as session:
        create_token(session, "root", admin=True)
        create_token(session, "carol")
    with session_scope(settings) as session:
        flags = {t.name: t.is_admin for t in list_tokens(session)}
    assert flags == {"root": True, "carol": False}


# --- reads under auth=all, and what readers without a token see -------------------------------------

TRACEBACK = """Traceback (most recent call last):
  File "/srv/prunescape/workers/tasks.py", line 88, in execute
    result = _run_job(inp, db, run_id, beat)
  File "/srv/prunescape/workers/engine/data.py", line 301, in load_dataset
    raise OSError(2, "No such file or directory")
FileNotFoundError: [Errno 2] No such file or directory: '/srv/data/cifar10/data_batch_1'
"""
# How workers/tasks.py heads a file error in the artefact directory.
HEADED = "artefact directory /srv/artifacts (PRUNESCAPE_ARTIFACT_DIR): No such file\n" + TRACEBACK


def _give_run_an_error(settings, study_id: int, error: str) -> int:
    with session_scope(settings) as session:
        run = session.scalar(sa.select(Run).where(Run.study_id == study_id).order_by(Run.id).limit(1))
        run.status, run.error = "failed", error
        return run.id


def test_readers_without_a_token_see_run_errors_without_tracebacks_or_paths(team):
    client, tokens, sid = team["client"], team["tokens"], team["study_id"]
    run_id = _give_run_an_error(team["settings"], sid, HEADED)
    anonymous = client.get(f"{API}/runs/{run_id}").json()["error"]
    page = client.get(f"{API}/studies/{sid}/runs").json()["items"]
    listed = next(r["error"] for r in page if r["id"] == run_id)
    for text in (anonymous, listed):
        assert "Traceback" not in text and "tasks.py" not in text and "/srv" not in text, text
        assert "FileNotFoundError: [Errno 2] No such file or directory" in text
        assert "send an API token" in text
    full = client.get(f"{API}/runs/{run_id}", headers=_bearer(tokens["bob"])).json()["error"]
    assert full == HEADED
    page = client.get(f"{API}/studies/{sid}/runs", headers=_bearer(tokens["bob"])).json()["items"]
    assert next(r["error"] for r in page if r["id"] == run_id) == full


def test_auth_off_shows_the_full_error(client, settings):
    sid = client.post(f"{API}/studies", json=DEMO_SPEC).json()["id"]
    run_id = _give_run_an_error(settings, sid, TRACEBACK)
    assert client.get(f"{API}/runs/{run_id}").json()["error"] == TRACEBACK


def _read_routes(app) -> list[str]:
    from tests.reliability.test_auth import walk_routes

    return sorted(
        path
        for path, methods in walk_routes(app.routes)
        # open in every mode: /health for probes, /auth so a client without a token can say what
        # one is needed for
        if "GET" in methods and path.startswith(API) and path not in (f"{API}/health", f"{API}/auth")
    )


def test_auth_all_needs_a_token_for_every_read(settings, fake_dispatch):
    from backend.api import create_app

    settings.auth = "all"
    with session_scope(settings) as session:
        token = create_token(session, "alice")
        old = create_token(session, "mallory")
        revoke_token(session, "mallory")
    app = create_app(settings)
    reads = _read_routes(app)
    assert {f"{API}/studies", f"{API}/studies/{{study_id}}", f"{API}/runs/{{run_id}}",
            f"{API}/artefacts/{{artefact_id}}", f"{API}/studies/{{study_id}}/analysis"} <= set(reads)  # fmt: skip
    with TestClient(app) as client:
        sid = client.post(f"{API}/studies", json=DEMO_SPEC, headers=_bearer(token)).json()["id"]
        for path in reads:
            path = path.replace("{study_id}", str(sid)).replace("{run_id}", "1").replace("{artefact_id}", "1")
            missing = client.get(path)
            assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", path
            assert client.get(path, headers=_bearer(old)).status_code == 403, path
            assert client.get(path, headers=_bearer(token)).status_code not in (401, 403), path
        # the dry run answers only a token holder too; health stays open for probes
        assert client.post(f"{API}/studies/plan", json=DEMO_SPEC).status_code == 401
        assert client.post(f"{API}/studies/plan", json=DEMO_SPEC, headers=_bearer(token)).status_code == 200
        assert client.get(f"{API}/health").status_code == 200
        assert client.get(f"{API}/auth").json()["mode"] == "all"
