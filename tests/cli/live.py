"""The real prunescape app (create_app on a SQLite copy in tmp_path) served by uvicorn in a thread
of the test process, for the command-line client's tests. In-process so that the tests' fake
dispatcher (no broker) is the one the server uses; the client reaches it over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from backend.settings import Settings


@dataclass
class LiveServer:
    url: str
    settings: Settings


@contextmanager
def serve_in_thread(settings: Settings, *, port: int = 0) -> Iterator[LiveServer]:
    """The app on `port`, by default a free one the OS picks (no race with another test run);
    yields its URL. A second server on the same port and settings is the first one restarted."""
    from backend.api import create_app

    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
