"""Forged dashboard requests against a real server (uvicorn + create_app, auth off as in the embedded
default, no token needed): the dashboard's callbacks reach only the API at the address the server
was started on, whatever the Host header says, and turn only positive integers into API paths.

Found by a probe of `prunescape serve`: a forged `/_dash-update-component` call with
`Host: 127.0.0.1:<any port>` and a study id of `../../internal/secret` made the server GET
`http://127.0.0.1:<port>/internal/secret` and hand the body back; the cancel callback POSTed to
any API path (here: retrying a run) with the caller's token."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import API, DEMO_SPEC, LiveServer
from tests.reliability.dash_forge import CALLBACK_PATH, callback_body, find_callback, response_text

SECRET = "TOP-SECRET-internal-body"


class _Secret(BaseHTTPRequestHandler):
    """Another service on this machine: answers every request with a secret and records it."""

    seen: list[tuple[str, str]] = []

    def _answer(self) -> None:
        self.seen.append((self.command, self.path))
        body = SECRET.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def secret_service() -> Iterator[dict[str, Any]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Secret)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"port": server.server_address[1], "seen": _Secret.seen}
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("forgery")
    shutil.copy(sqlite_template, data / "prunescape.db")
    server = LiveServer({"PRUNESCAPE_DATA_DIR": str(data)}, data / "server.log")
    try:
        server.wait()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            created = client.post(f"{API}/studies", json=DEMO_SPEC)
            assert created.status_code == 201, created.text
            dependencies = client.get("/_dash-dependencies").json()
        yield {
            "server": server,
            "url": server.url,
            "db": data / "prunescape.db",
            "study_id": created.json()["id"],
            "dependencies": dependencies,
        }
    finally:
        server.stop()


def _forge(
    url: str, dep: dict, values: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(url + CALLBACK_PATH, json=callback_body(dep, values), headers=headers or {}, timeout=60)


def test_a_forged_host_header_does_not_choose_where_the_dashboard_reads(live, secret_service) -> None:
    load_study = find_callback(live["dependencies"], "study-data")
    secret_service["seen"].clear()
    for study_id in ("../../internal/secret", str(live["study_id"])):
        answer = _forge(
            live["url"],
            load_study,
            {"study-id.data": study_id, "study-metric.value": "top1"},
            headers={"Host": f"127.0.0.1:{secret_service['port']}"},
        )
        assert answer.status_code < 500, answer.text
        assert SECRET not in answer.text
    assert secret_service["seen"] == []
    # the real study id still reads the study, from the server's own API
    assert "digits demo" in answer.text


@pytest.mark.parametrize(
    "study_id", ["../../internal/secret", "1/../../runs/1/retry?", "1.5", "-1", "2147483648", " 1"]
)
def test_ids_that_are_not_positive_integers_make_no_request(live, study_id) -> None:
    load_study = find_callback(live["dependencies"], "study-data")
    before = live["server"].log_text()
    answer = _forge(live["url"], load_study, {"study-id.data": study_id, "study-metric.value": "top1"})
    assert answer.status_code < 500, answer.text
    assert "not found" in answer.text.lower()
    new_log = live["server"].log_text()[len(before) :]
    api_requests = [line for line in new_log.splitlines() if f'"GET {API}' in line or f'"POST {API}' in line]
    assert api_requests == [], api_requests


def _fail_a_run(db: Path, study_id: int) -> int:
    with sqlite3.connect(db) as conn:
        (run_id,) = conn.execute(
            "select id from runs where study_id = ? and kind = 'train' order by id limit 1", (study_id,)
        ).fetchone()
        conn.execute("update runs set status = 'failed', error = 'boom' where id = ?", (run_id,))
    return run_id


def test_the_cancel_callback_cannot_be_pointed_at_another_api_path(live) -> None:
    """A study id of `1/../../runs/R/retry?` used to turn the cancel POST into a retry of run R."""
    run_id = _fail_a_run(live["db"], live["study_id"])
    cancel = find_callback(live["dependencies"], "study-action-result")
    forged = f"{live['study_id']}/../../runs/{run_id}/retry?"
    answer = _forge(live["url"], cancel, {"study-cancel-confirm.submit_n_clicks": 1, "study-id.data": forged})
    assert answer.status_code < 500, answer.text
    assert "Retried" not in response_text(answer.text)
    run = httpx.get(f"{live['url']}{API}/runs/{run_id}", timeout=30).json()
    assert run["status"] == "failed"
    study = httpx.get(f"{live['url']}{API}/studies/{live['study_id']}", timeout=30).json()
    assert study["status"] != "cancelled"


def test_unknown_component_suites_are_404_and_dash_routes_still_work(live) -> None:
    for path in (
        "/_dash-component-suites/no_such_package/x.js",
        "/_dash-component-suites/dash/no/such/file.js",
        "/_dash-component-suites/dash/..%2F..%2Fetc%2Fpasswd",
        "/_dash-component-suites/os/x.js",
    ):
        answer = httpx.get(live["url"] + path, timeout=30)
        assert answer.status_code == 404, (path, answer.status_code, answer.text[:200])
    assert httpx.get(live["url"] + "/_dash-layout", timeout=30).status_code == 200
    assert httpx.get(live["url"] + "/_dash-dependencies", timeout=30).status_code == 200
    index = httpx.get(live["url"] + "/", timeout=30).text
    script = next(part.split('"')[0] for part in index.split('src="')[1:] if "dash_renderer" in part)
    assert httpx.get(live["url"] + script, timeout=30).status_code == 200
