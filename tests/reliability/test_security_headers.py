"""Host checking and security headers of the real server (uvicorn + create_app): a Host header that
names neither this machine's loopback names, the server's own address nor PRUNESCAPE_ALLOWED_HOSTS
is a 400 (a DNS-rebinding page reaches a local server under its own domain name); every answer,
API and dashboard, error or not, carries a CSP, X-Frame-Options, nosniff and a Referrer-Policy."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.conftest import API, LiveServer

PATHS = (
    "/",
    "/studies/1",
    "/api/v1/studies",
    "/api/v1/studies/999",
    "/_dash-layout",
    "/docs",
    "/openapi.json",
)


def _server(tmp_path_factory, sqlite_template: Path, name: str, env: dict[str, str]) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp(name)
    shutil.copy(sqlite_template, data / "prunescape.db")
    server = LiveServer({"PRUNESCAPE_DATA_DIR": str(data), **env}, data / "server.log")
    try:
        server.wait()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def default_hosts(tmp_path_factory, sqlite_template) -> Iterator[LiveServer]:
    yield from _server(tmp_path_factory, sqlite_template, "hosts-default", {})


@pytest.fixture(scope="module")
def named_host(tmp_path_factory, sqlite_template) -> Iterator[LiveServer]:
    env = {"PRUNESCAPE_ALLOWED_HOSTS": "prunescape.example, lab-gpu.internal"}
    yield from _server(tmp_path_factory, sqlite_template, "hosts-named", env)


def _get(server: LiveServer, path: str, host: str | None = None, **headers: str) -> httpx.Response:
    if host is not None:
        headers["Host"] = host
    return httpx.get(server.url + path, headers=headers, timeout=30)


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil.example", "[::2]"]
)
def test_a_foreign_host_header_is_400_everywhere(default_hosts, host) -> None:
    for path in PATHS:
        answer = _get(default_hosts, path, host)
        assert answer.status_code == 400, (host, path, answer.status_code)
        assert "PRUNESCAPE_ALLOWED_HOSTS" in answer.json()["detail"]
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_loopback_names_and_the_servers_own_address_are_served(default_hosts) -> None:
    port = default_hosts.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST", "localhost."):
        for path in PATHS:
            answer = _get(default_hosts, path, host)
            assert answer.status_code in (200, 404), (host, path, answer.status_code)


def test_forwarded_headers_do_not_get_a_foreign_host_in(default_hosts) -> None:
    answer = _get(default_hosts, API + "/studies", "evil.example", **{"X-Forwarded-Host": "localhost"})
    assert answer.status_code == 400
    answer = _get(
        default_hosts, API + "/studies", **{"X-Forwarded-Host": "evil.example", "Forwarded": "host=evil"}
    )
    assert answer.status_code == 200


def test_allowed_hosts_setting_names_the_hosts(named_host) -> None:
    assert _get(named_host, API + "/studies", "prunescape.example:8000").status_code == 200
    assert _get(named_host, API + "/studies", "LAB-GPU.internal").status_code == 200
    assert _get(named_host, API + "/studies", "evil.example").status_code == 400
    # the loopback names are not implied once the list is set; the server's own address still is
    assert _get(named_host, API + "/studies", "localhost").status_code == 400
    assert _get(named_host, API + "/studies").status_code == 200  # Host: 127.0.0.1:port, the socket's


def _csp(answer: httpx.Response) -> dict[str, str]:
    policy = answer.headers["content-security-policy"]
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


def test_every_answer_carries_the_security_headers(default_hosts) -> None:
    answers: dict[str, Any] = {path: _get(default_hosts, path) for path in PATHS}
    answers["422"] = _get(default_hosts, API + "/studies?limit=0")
    answers["suite 404"] = _get(default_hosts, "/_dash-component-suites/nope/x.js")
    for label, answer in answers.items():
        assert answer.headers["x-frame-options"] == "DENY", label
        assert answer.headers["x-content-type-options"] == "nosniff", label
        assert answer.headers["referrer-policy"] == "no-referrer", label
        csp = _csp(answer)
        assert csp["frame-ancestors"] == "frame-ancestors 'none'", label
        assert csp["object-src"] == "object-src 'none'", label
        assert "'unsafe-inline'" not in csp["script-src"] and "'unsafe-eval'" not in csp["script-src"], label
    dashboard = _csp(answers["/"])["script-src"]
    assert dashboard.startswith("script-src 'self' 'sha256-") and "https:" not in dashboard
    docs = _csp(answers["/docs"])
    # the docs' scripts and styles are this server's own files: no other origin anywhere
    assert docs["script-src"].startswith("script-src 'self' 'sha256-")
    assert not any("http" in directive for directive in docs.values()), docs
