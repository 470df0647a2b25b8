"""`prunescape serve` (the embedded service) and `prunescape worker` (one Celery worker: the one
way to start a worker, used by serve, docker-compose and extra machines)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="run API + dashboard + one worker with a private Redis and SQLite (no Docker)"
    )
    serve.add_argument(
        "--demo", action="store_true", help="submit the digits demo study once the server is up"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--data-dir", type=Path, default=None, help="database, Redis and artefacts (default ./data)"
    )
    serve.add_argument("--workers", type=int, default=1, help="concurrency of the worker subprocess")
    serve.set_defaults(func=_serve)

    worker = subparsers.add_parser(
        "worker", help="run a Celery worker for the broker in PRUNESCAPE_BROKER_URL"
    )
    worker.add_argument(
        "--queue", default=None, help="queue to consume (default: PRUNESCAPE_QUEUE or prunescape)"
    )
    worker.add_argument("--concurrency", type=int, default=1, help="runs at once (1 per GPU)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=_worker)

    reconcile = subparsers.add_parser(
        "reconcile",
        help="re-send lost run messages, requeue runs of dead workers, auto-extend grids (team mode)",
    )
    reconcile.add_argument("--every", type=float, default=None, help="repeat every N seconds (default: once)")
    reconcile.set_defaults(func=_reconcile)


def _serve(args: argparse.Namespace) -> int:
    from backend.cli.main import CliError
    from backend.embedded import ServeOptions, serve

    if args.workers < 1:
        raise CliError("--workers must be >= 1")
    options = ServeOptions(
        host=args.host, port=args.port, data_dir=args.data_dir, workers=args.workers, demo=args.demo
    )
    return serve(options)


def _worker(args: argparse.Namespace) -> int:
    from backend.cli.main import CliError
    from workers.celery_app import BrokerNotConfigured, create_app, queue_name

    if args.concurrency < 1:
        raise CliError("--concurrency must be >= 1")
    if args.queue:
        os.environ["PRUNESCAPE_QUEUE"] = args.queue
    try:
        app = create_app(queue=args.queue or queue_name())
    except BrokerNotConfigured as exc:
        raise CliError(str(exc)) from None
    queue = app.conf.task_default_queue
    app.worker_main(
        [
            "worker",
            f"--loglevel={args.loglevel}",
            f"--concurrency={args.concurrency}",
            f"--queues={queue}",
            f"--hostname=prunescape-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    import sys
    import time

    from backend.db.session import session_scope
    from backend.services.auto_extension import auto_extend_pass
    from backend.settings import get_settings
    from workers.dispatch import reconcile

    settings = get_settings()
    while True:
        try:
            with session_scope(settings) as session:
                counts = reconcile(session, settings)
            with session_scope(settings) as session:
                records = auto_extend_pass(session, settings)
            counts["auto_extended"] = sum(r["kind"] == "auto" for r in records)
            counts["auto_stopped"] = sum(r["kind"] == "stop" for r in records)
        except Exception as exc:  # noqa: BLE001 - the daemon outlives a broker or database outage
            if args.every is None:
                raise
            print(f"reconcile pass failed (next in {args.every:g} s): {exc}", file=sys.stderr, flush=True)
        else:
            print(" ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
            for record in records:
                print(
                    f"study {record['study_id']}: auto-extension {record['kind']}: {record['why']}",
                    flush=True,
                )
        if args.every is None:
            return 0
        time.sleep(max(1.0, args.every))
