"""`prunescape serve` as a user runs it: a subprocess on a temp data dir and a free port, with its
private Redis and worker. A 3x3 digits study with a structured and an int8 variant is submitted
over HTTP and every run finishes; analysis and comparison come back complete; the dashboard shows
the finished native study (landscapes, cost and pruning panels, histograms) and a run's epoch
curves in headless chromium, saving docs/screenshots/{study-native,run-native}.png; Ctrl-C stops
it all. Killed with SIGKILL, it still takes its private Redis and its worker with it; the data
directory and the database it creates are its user's alone."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "serve e2e",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 1, "batch_size": 64},
    "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": 3},
    "variants": [
        {"name": "base", "kind": "base"},
        {"name": "u50", "kind": "structured", "method": "uniform", "flops_ratio": 0.5},
        {"name": "q8", "kind": "int8", "source": "base"},
    ],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.add(int(entry.name))
    return found


def _screenshot_native_study(url: str, study_id: int, run_id: int) -> None:
    from playwright.sync_api import sync_playwright

    from tests.frontend.live import CHROMIUM, CHROMIUM_ARGS

    shots = REPO / "docs" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(60_000)
            page.goto(f"{url}/studies/{study_id}")
            page.wait_for_function(
                "() => document.querySelectorAll('#study-landscapes .js-plotly-plot').length === 3"
            )
            page.locator("#study-cost .js-plotly-plot").first.wait_for()  # accuracy vs latency / size
            page.locator("#study-kept .js-plotly-plot").first.wait_for()  # where u50 cut filters
            page.locator("#study-hist-panel .js-plotly-plot").first.wait_for()  # weight histograms
            assert "u50" in page.locator("#study-measure-table").inner_text()
            page.wait_for_timeout(1_000)
            page.screenshot(path=str(shots / "study-native.png"), full_page=True)
            page.goto(f"{url}/runs/{run_id}")
            page.wait_for_selector(f"text=Run {run_id}")
            page.locator("[id*='epoch-curves'] .js-plotly-plot .scatterlayer .trace").first.wait_for()
            page.wait_for_timeout(1_000)
            page.screenshot(path=str(shots / "run-native.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.browser
def test_serve_runs_a_study_over_http(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESCAPE_")}
    env["OMP_NUM_THREADS"] = "1"
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed in finally
    # A short data dir keeps the redis unix socket path under the AF_UNIX limit.
    data_dir = Path(f"/tmp/ps-e2e-{os.getpid()}-{port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backend.cli.main", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    started: set[int] = set()
    try:
        client = httpx.Client(base_url=base, timeout=30)
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                health = client.get("/health").json()
                if health["workers"]:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up with a worker"
            time.sleep(0.5)
        assert health["status"] == "ok" and health["broker"]["ok"]
        started = _children(proc.pid)
        created = client.post("/studies", json=SPEC)
        assert created.status_code == 201, created.text
        study_id = created.json()["id"]
        total = created.json()["progress"]["total"]
        deadline = time.monotonic() + 400
        while True:
            study = client.get(f"/studies/{study_id}").json()
            if study["progress"]["finished"] == total:
                break
            assert time.monotonic() < deadline, study["progress"]
            time.sleep(2)
        assert study["status"] == "succeeded", study["progress"]
        assert study["progress"]["succeeded"] == total == 31

        analysis = client.get(f"/studies/{study_id}/analysis").json()
        assert set(analysis["variants"]) == {"base", "u50", "q8"}
        for name in ("base", "u50", "q8"):
            result = analysis["results"][name]
            assert result["best"] is not None, name
            assert result["n_runs"] == 9, name
            assert sum(m is not None for m in result["landscape"]["points"]["mean"]) == 9, name
            assert result["risk"] is not None, name
        compare = client.get(f"/studies/{study_id}/compare").json()
        rows = {row["name"]: row for row in compare["variants"]}
        for name, row in rows.items():
            assert row["finished_runs"] == 9, name
            assert row["best_top1"] > 20, name
            assert row["params"] and row["flops"] and row["size_bytes"] and row["latency"], name
        assert 0.49 <= rows["u50"]["flops_ratio_achieved"] <= 0.51
        assert rows["q8"]["size_bytes"] < rows["base"]["size_bytes"]
        best_run = analysis["results"]["base"]["best"]["run_ids"][0]
        _screenshot_native_study(f"http://127.0.0.1:{port}", study_id, best_run)
    finally:
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            log.close()
    assert proc.returncode in (0, 130, -signal.SIGINT)
    time.sleep(1)
    alive = {pid for pid in started if Path(f"/proc/{pid}").exists()}
    assert not alive, f"serve left processes behind: {alive}"


def _start_serve(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNESCAPE_")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "backend.cli.main", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=open(log_path, "wb"),  # noqa: SIM115 - the child holds it; closed when it exits
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _logged(log_path: Path, pattern: str, timeout_s: float = 90) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, log_path.read_text(errors="replace"))
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in the serve log:\n{log_path.read_text()[-3000:]}")


@pytest.mark.slow
def test_serve_killed_with_sigkill_takes_its_redis_and_worker_with_it(tmp_path):
    """SIGKILL gives serve no chance to clean up (nor does a SIGINT it ignored): its private
    redis-server and its worker must still end, not linger holding the data directory."""
    import redis

    port = _free_port()
    data_dir = Path(f"/tmp/ps-kill-{os.getpid()}-{port}")
    log_path = tmp_path / "serve.log"
    proc = _start_serve(data_dir, port, log_path)
    try:
        socket_path = _logged(log_path, r"private Redis .*on (\S+)")[1]
        worker_pid = int(_logged(log_path, r"worker started \(pid (\d+)")[1])
        redis_pid = int(redis.Redis(unix_socket_path=socket_path).info("server")["process_id"])
        _logged(log_path, r"Uvicorn running on")
        assert _alive(redis_pid) and _alive(worker_pid)
        # the dashboard calls the API where serve listens, whatever port a forged Host names
        from tests.reliability.dash_forge import CALLBACK_PATH, callback_body, find_callback

        base = f"http://127.0.0.1:{port}"
        load_studies = find_callback(
            httpx.get(base + "/_dash-dependencies", timeout=30).json(), "studies-data"
        )
        forged = httpx.post(
            base + CALLBACK_PATH,
            json=callback_body(load_studies),
            headers={"Host": "127.0.0.1:9"},
            timeout=30,
        )
        # a forged Host changes nothing: the dashboard read its own server's (empty) list
        listed = forged.json()["response"]["studies-data"]["data"]
        assert forged.status_code == 200 and (listed["studies"], listed["total"]) == ([], 0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while (_alive(redis_pid) or _alive(worker_pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [name for name, pid in (("redis", redis_pid), ("worker", worker_pid)) if _alive(pid)]
        assert not left, f"{left} outlived serve; log:\n{log_path.read_text()[-2000:]}"
        # what serve created is its user's alone: the data directory, the database and its WAL
        assert data_dir.stat().st_mode & 0o777 == 0o700
        for name in ("prunescape.db", "prunescape.db-wal", "prunescape.db-shm"):
            if (data_dir / name).exists():
                assert (data_dir / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _leftovers(data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(data_dir, ignore_errors=True)


def _leftovers(data_dir: Path) -> list[int]:
    """Processes still using data_dir (cleanup after a failed run of the test above)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(data_dir) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
