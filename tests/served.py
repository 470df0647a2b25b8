"""`prunescape serve` as a user starts it, for tests that need the whole embedded deployment (SQLite,
the private Redis, the worker subprocess, the reconciler, uvicorn): a subprocess on a short data
dir (the Redis unix socket path must stay under the AF_UNIX limit) and a free port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    api: str  # url + /api/v1
    process: subprocess.Popen
    data_dir: Path
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_for_worker(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_tail()
            try:
                if httpx.get(f"{self.api}/health", timeout=10).json().get("workers"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"no worker answered within {timeout_s:.0f} s\n{self.log_tail()}")


@contextmanager
def served(log_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Start serve, wait until the API answers (the worker may still be starting), yield; then
    Ctrl-C (SIGINT), and assert everything stopped within 60 s."""
    port = free_port()
    data_dir = Path(f"/tmp/ps-srv-{os.getpid()}-{port}")
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESCAPE_")}
    clean_env.update(OMP_NUM_THREADS="1", **(env or {}))
    log_path = log_dir / f"serve-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli.main", "serve", "--data-dir", str(data_dir), "--port", str(port), *args],
        cwd=REPO,
        env=clean_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    handle = Served(url, f"{url}/api/v1", process, data_dir, log_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, handle.log_tail()
            try:
                if httpx.get(f"{url}/openapi.json", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"serve did not come up\n{handle.log_tail()}"
            time.sleep(0.3)
        yield handle
    finally:
        stopped = False
        if process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
                stopped = True
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert stopped, f"serve did not stop within 60 s of Ctrl-C\n{handle.log_tail()}"
