"""A real prunescape server (uvicorn + create_app on a temp SQLite database) for the browser tests,
and Debian's chromium launched through Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(data_dir: Path, *, auth: bool | str = False) -> Iterator[str]:
    """The app on a free port, its log in data_dir/server.log; yields the base URL. `auth`: False
    (off), True (writes need a token) or an auth mode ("writes", "all")."""
    port = free_port()
    log = open(data_dir / "server.log", "w")  # noqa: SIM115 - closed below
    command = [sys.executable, "-m", "tests.frontend.serve_app", str(port), str(data_dir)]
    mode = "writes" if auth is True else (auth or "off")
    proc = subprocess.Popen(
        command + [mode],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(base + "/openapi.json", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.terminate()
    if proc.poll() is not None:
        log.close()
        pytest.fail("server did not start:\n" + (data_dir / "server.log").read_text()[-3000:])
    try:
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
