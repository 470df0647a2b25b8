"""Team mode (PRUNESCAPE_AUTH=1) against a real uvicorn process: every write route, found by walking
the app's routes, refuses missing / malformed / unknown / revoked tokens; tokens are stored only as
hashes; no secret reaches the logs or an error body; the dashboard's writes obey the same rule;
uploads above the limit are refused before the body is read."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.reliability.conftest import API, DEMO_SPEC, LiveServer, row_counts

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# POST routes that validate and answer but store nothing: open like the reads.
DRY_RUNS = {("POST", f"{API}/studies/plan")}
UPLOAD_LIMIT = 1024 * 1024
CLI = [sys.executable, "-c", "from backend.cli.main import main; raise SystemExit(main())"]


def walk_routes(routes: list[Any]) -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every HTTP route, through included routers (FastAPI >= 0.16x nests them)."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from walk_routes(route.effective_candidates())
            continue
        original = getattr(route, "original_route", route)
        path = getattr(route, "path", None) or getattr(original, "path", None)
        methods = getattr(original, "methods", None)
        if path and methods:
            yield path, set(methods)


def write_routes(app) -> list[tuple[str, str]]:  # noqa: ANN001
    return sorted(
        (method, path) for path, methods in walk_routes(app.routes) for method in methods & WRITE_METHODS
    )


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[dict[str, Any]]:
    """A live server with auth on, an active token (alice) and a revoked one (bob), made by the CLI."""
    data = tmp_path_factory.mktemp("team")
    shutil.copy(sqlite_template, data / "prunescape.db")
    env = {
        "PRUNESCAPE_DATA_DIR": str(data),
        "PRUNESCAPE_AUTH": "1",
        "PRUNESCAPE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "PRUNESCAPE_MAX_GRID_SIZE": "9",
    }
    import os

    cli_env = {**os.environ, **env}
    made = subprocess.run([*CLI, "token", "create", "alice"], env=cli_env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    alice = made.stdout.strip()
    bob = subprocess.run([*CLI, "token", "create", "bob"], env=cli_env, capture_output=True, text=True)
    revoked = subprocess.run([*CLI, "token", "revoke", "bob"], env=cli_env, capture_output=True, text=True)
    assert revoked.returncode == 0, revoked.stderr
    carol = subprocess.run([*CLI, "token", "create", "carol"], env=cli_env, capture_output=True, text=True)
    root = subprocess.run(
        [*CLI, "token", "create", "root", "--admin"], env=cli_env, capture_output=True, text=True
    )
    assert root.returncode == 0 and "admin token 'root' created" in root.stderr, root.stderr
    listed = subprocess.run([*CLI, "token", "list"], env=cli_env, capture_output=True, text=True)
    server = LiveServer(env, data / "server.log")
    try:
        server.wait()
        yield {
            "server": server,
            "url": server.url,
            "db": f"sqlite:///{data / 'prunescape.db'}",
            "alice": alice,
            "bob": bob.stdout.strip(),
            "carol": carol.stdout.strip(),
            "root": root.stdout.strip(),
            "token_list": listed.stdout,
            "cli_output": made.stdout
            + made.stderr
            + bob.stderr
            + revoked.stdout
            + revoked.stderr
            + listed.stdout,
            "settings_env": env,
        }
    finally:
        server.stop()


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_write_route_refuses_bad_tokens(team) -> None:
    from backend.api import create_app
    from backend.settings import Settings

    app = create_app(Settings(database_url="sqlite://", auth=True))
    routes = [(m, p) for m, p in write_routes(app) if p.startswith(API) and (m, p) not in DRY_RUNS]
    # the walk must see the routes we know of, so a new write route is covered too
    assert {("POST", f"{API}/studies"), ("DELETE", f"{API}/studies/{{study_id}}"),
            ("POST", f"{API}/studies/import"), ("POST", f"{API}/runs/{{run_id}}/retry")} <= set(routes)  # fmt: skip
    assert len(routes) >= 6
    with httpx.Client(base_url=team["url"], timeout=30) as client:
        created = client.post(
            f"{API}/studies", json=DEMO_SPEC, headers={"Authorization": f"Bearer {team['alice']}"}
        )
        assert created.status_code == 201, created.text
        assert created.json()["created_by"] == "alice"
        settings = Settings(database_url=team["db"])
        before = row_counts(settings)
        bad_headers = {
            "missing": ({}, 401),
            "wrong scheme": ({"Authorization": f"Token {team['alice']}"}, 401),
            "basic": ({"Authorization": "Basic YWxpY2U6c2VjcmV0"}, 401),
            "bare bearer": ({"Authorization": "Bearer"}, 401),
            "two tokens": ({"Authorization": f"Bearer {team['alice']} {team['alice']}"}, 401),
            "unknown": ({"Authorization": "Bearer psk_" + "A" * 43}, 403),
            "truncated": ({"Authorization": f"Bearer {team['alice'][:-1]}"}, 403),
            "revoked": ({"Authorization": f"Bearer {team['bob']}"}, 403),
        }
        for method, path in routes:
            for label, (headers, expected) in bad_headers.items():
                body = {"json": DEMO_SPEC} if method == "POST" and path.endswith("/studies") else {}
                response = client.request(method, _fill(path), headers=headers, **body)
                assert response.status_code == expected, (method, path, label, response.text)
                if expected == 401:
                    assert response.headers["www-authenticate"] == "Bearer"
                assert team["alice"] not in response.text and team["bob"] not in response.text
        assert row_counts(settings) == before
        # reads stay open, and so do the dry runs: they answer without a token and store nothing
        assert client.get(f"{API}/studies/{created.json()['id']}").status_code == 200
        for method, path in DRY_RUNS:
            assert client.request(method, path, json=DEMO_SPEC).status_code == 200, path
        assert row_counts(settings) == before


def test_tokens_are_stored_hashed_and_never_logged(team) -> None:
    engine = sa.create_engine(team["db"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select * from api_tokens")).mappings().all()
    engine.dispose()
    assert {r["name"] for r in rows} == {"alice", "bob", "carol", "root"}
    assert {r["name"]: bool(r["is_admin"]) for r in rows} == {
        "alice": False,
        "bob": False,
        "carol": False,
        "root": True,
    }
    stored = " ".join(str(v) for r in rows for v in r.values())
    for token in (team["alice"], team["bob"], team["root"]):
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored
    # the CLI prints the token exactly once (stdout of `create`), nowhere else
    assert team["cli_output"].count(team["alice"]) == 1
    with httpx.Client(base_url=team["url"], timeout=30) as client:
        wrong = "psk_wrong-secret-" + "x" * 30
        client.post(f"{API}/studies", json=DEMO_SPEC, headers={"Authorization": f"Bearer {wrong}"})
        client.post(f"{API}/studies", json=DEMO_SPEC, headers={"Authorization": f"Bearer {team['bob']}"})
        spec = {**DEMO_SPEC, "api_key": "hunter2-secret-value"}
        bad = client.post(f"{API}/studies", json=spec, headers={"Authorization": f"Bearer {team['alice']}"})
        assert bad.status_code == 422 and "hunter2" not in bad.text  # error bodies do not echo input
    log = team["server"].log_text()
    assert "POST /api/v1/studies" in log  # the log is being written at debug level
    for secret in (team["alice"], team["bob"], wrong, "hunter2-secret-value"):
        assert secret not in log


def test_dashboard_writes_obey_auth(team, tmp_path, monkeypatch) -> None:
    """The dashboard has no token of its own: each write carries the token of the browser user who
    pasted it into the top bar. Without one its study submission is refused like any anonymous write
    (401, nothing stored), a revoked one is 403, a valid one writes as its owner. The old shared
    server-side token (PRUNESCAPE_DASHBOARD_TOKEN) is gone: set, it changes nothing."""
    from backend.settings import Settings
    from frontend.api_client import ApiError
    from frontend.app import make_client_factory

    assert "dashboard_token" not in Settings.model_fields
    monkeypatch.setenv("PRUNESCAPE_DASHBOARD_TOKEN", team["alice"])
    settings = Settings(database_url=team["db"])
    before = row_counts(settings)
    factory = make_client_factory(Settings(data_dir=tmp_path, api_url=team["url"]))
    with pytest.raises(ApiError) as refused:
        asyncio.run(factory().create_study(DEMO_SPEC))
    assert refused.value.status == 401
    assert row_counts(settings) == before
    with pytest.raises(ApiError) as refused:
        asyncio.run(factory(team["bob"]).create_study(DEMO_SPEC))
    assert refused.value.status == 403
    assert team["bob"] not in str(refused.value)
    assert row_counts(settings) == before
    # reads need no token; the dry run stores nothing
    assert asyncio.run(factory().list_studies()) is not None
    assert asyncio.run(factory().plan_study(DEMO_SPEC))["run_counts"]["total"] == 31
    assert row_counts(settings) == before
    created = asyncio.run(factory(team["alice"]).create_study(DEMO_SPEC))
    assert created["created_by"] == "alice"
    after = row_counts(settings)
    assert after["studies"] == before["studies"] + 1 and after["runs"] == before["runs"] + 31
    log = team["server"].log_text()
    assert team["alice"] not in log and team["bob"] not in log


def _status_after_head(url: str, head: str) -> str:
    """Send only the request head (no body) and return the status line the server answers with."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        return sock.recv(65536).split(b"\r\n", 1)[0].decode()


def test_oversized_upload_is_413_before_the_body_is_read(team) -> None:
    auth = f"Authorization: Bearer {team['alice']}\r\n"
    huge = 1024**3  # 1 GiB declared, never sent
    head = (f"POST {API}/studies/import HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: multipart/form-data; "
            f"boundary=b\r\nContent-Length: {huge}\r\n\r\n")  # fmt: skip
    assert " 413 " in _status_after_head(team["url"], head)
    # without Content-Length (chunked), the server stops reading soon after the limit
    head = (f"POST {API}/studies/import HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: multipart/form-data; "
            "boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    host, port = team["url"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode())
        piece = b"a" * 65536
        sent, status = 0, ""
        sock.settimeout(0.05)
        while sent < 50 * UPLOAD_LIMIT:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                status = sock.recv(65536).split(b"\r\n", 1)[0].decode()
                if status:
                    break
            except TimeoutError:
                continue
        assert " 413 " in status, status
        assert sent < 4 * UPLOAD_LIMIT


def test_token_list_names_the_admin_tokens(team) -> None:
    lines = dict(line.split("\t", 1) for line in team["token_list"].splitlines())
    assert lines["root"].startswith("admin\t") and lines["alice"].startswith("user\t")
    assert "revoked" in lines["bob"] and "active" in lines["carol"]
    for token in (team["alice"], team["root"]):
        assert token not in team["token_list"]


def test_only_the_creator_or_an_admin_token_manages_a_study(team) -> None:
    """Any token used to delete anyone's study: now it is the creator's, or an admin's."""

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {team[name]}"}

    with httpx.Client(base_url=team["url"], timeout=30) as client:
        created = client.post(f"{API}/studies", json=DEMO_SPEC, headers=bearer("alice"))
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        for method, path, body in (
            ("POST", f"{API}/studies/{sid}/cancel", None),
            ("POST", f"{API}/studies/{sid}/extend", {}),
            ("DELETE", f"{API}/studies/{sid}", None),
        ):
            refused = client.request(method, path, json=body, headers=bearer("carol"))
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["detail"] == (
                f"study {sid} belongs to alice; its creator or an admin token can cancel, extend or "
                "delete it and retry its runs"
            )
        assert client.get(f"{API}/studies/{sid}").json()["status"] != "cancelled"
        assert (
            client.post(f"{API}/studies/{sid}/cancel", headers=bearer("root")).json()["status"] == "cancelled"
        )
        assert client.delete(f"{API}/studies/{sid}", headers=bearer("alice")).status_code == 204


@pytest.fixture(scope="module")
def readers_need_tokens(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[dict[str, Any]]:
    """A live server with PRUNESCAPE_AUTH=all and one token (alice), made by the CLI."""
    import os

    data = tmp_path_factory.mktemp("team-all")
    shutil.copy(sqlite_template, data / "prunescape.db")
    env = {"PRUNESCAPE_DATA_DIR": str(data), "PRUNESCAPE_AUTH": "all"}
    made = subprocess.run(
        [*CLI, "token", "create", "alice"], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr
    server = LiveServer(env, data / "server.log")
    try:
        server.wait()
        yield {
            "server": server,
            "url": server.url,
            "alice": made.stdout.strip(),
            "db": data / "prunescape.db",
        }
    finally:
        server.stop()


def test_auth_all_needs_a_token_to_read_over_http(readers_need_tokens) -> None:
    url, alice = readers_need_tokens["url"], readers_need_tokens["alice"]
    with httpx.Client(base_url=url, timeout=30) as client:
        created = client.post(f"{API}/studies", json=DEMO_SPEC, headers={"Authorization": f"Bearer {alice}"})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        for path in (f"{API}/studies", f"{API}/studies/{sid}", f"{API}/studies/{sid}/runs", f"{API}/runs/1",
                     f"{API}/studies/{sid}/export", f"{API}/studies/{sid}/compare", f"{API}/artefacts/1"):  # fmt: skip
            refused = client.get(path)
            assert refused.status_code == 401 and "token" in refused.json()["detail"], path
            assert client.get(path, headers={"Authorization": "Bearer psk_guess"}).status_code == 403, path
            assert client.get(path, headers={"Authorization": f"Bearer {alice}"}).status_code in (200, 404), (
                path
            )
        assert client.get(f"{API}/health").status_code in (200, 503)  # probes need no token


def test_the_dashboard_reads_with_the_users_token_under_auth_all(readers_need_tokens) -> None:
    """The dashboard's read callbacks carry the token from the top bar; without one the page says
    the server requires a token to read (instead of an empty page)."""
    from tests.reliability.dash_forge import CALLBACK_PATH, callback_body, find_callback

    url, alice = readers_need_tokens["url"], readers_need_tokens["alice"]
    dependencies = httpx.get(url + "/_dash-dependencies", timeout=30).json()
    load_studies = find_callback(dependencies, "studies-data")
    show_studies = find_callback(dependencies, "studies-table")

    def studies_page(token: str | None) -> str:
        data = httpx.post(
            url + CALLBACK_PATH, json=callback_body(load_studies, {"api-token.data": token}), timeout=60
        )
        assert data.status_code == 200, data.text
        stored = data.json()["response"]["studies-data"]["data"]
        shown = httpx.post(
            url + CALLBACK_PATH, json=callback_body(show_studies, {"studies-data.data": stored}), timeout=60
        )
        assert shown.status_code == 200, shown.text
        return shown.text

    assert "This server requires an API token to read" in studies_page(None)
    assert "Token rejected" in studies_page("psk_not-a-real-token")
    page = studies_page(alice)
    assert "requires an API token" not in page and "studies-list" in page
