"""The embedded deployment (`prunescape serve`: SQLite, private Redis, worker, reconciler) under the
hostile probes of issue 13 that wedged or corrupted it:

- 20 parallel GET /health on a fresh server: 15 hung, 5 answered 500 (QueuePool limit), every
  database route then answered 500 and SIGINT no longer stopped the process;
- deleting a running study: the worker kept writing the deleted run's checkpoint, the next study got
  the same ids and its run "resumed" from that checkpoint and "succeeded" in 0.34 s;
- a results CSV import parsed on the event loop: every other request waited for it;
- 200 mixed requests with 50 in flight, /health among them: no 5xx, the API answers within 1 s after.

Figures (latencies, counts) are printed for the closing note; the assertions are the user's view.
"""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.served import Served, served

pytestmark = pytest.mark.slow

DIGITS = {
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": 1},
    "variants": [{"name": "base", "kind": "base"}],
}


def _spec(name: str, epochs: int) -> dict:
    return {"name": name, **DIGITS, "recipe": {"epochs": epochs, "batch_size": 64}}


def _wait(predicate, timeout_s: float, what: str, interval_s: float = 0.3):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Served:
    with served(tmp_path_factory.mktemp("served")) as handle:
        handle.wait_for_worker()
        yield handle


def test_twenty_parallel_health_checks_on_a_fresh_server_all_answer(tmp_path) -> None:
    with served(tmp_path) as fresh:
        started = time.perf_counter()

        def health(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            response = httpx.get(f"{fresh.api}/health", timeout=30)
            return response.status_code, time.perf_counter() - t0

        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(health, range(20)))
        codes = [code for code, _ in answers]
        slowest = max(seconds for _, seconds in answers)
        print(f"20 parallel /health on a fresh server: codes {sorted(set(codes))}, slowest {slowest:.2f} s")
        assert codes == [200] * 20
        assert slowest < 10
        # the database routes are unharmed and answer at once
        t0 = time.perf_counter()
        assert httpx.get(f"{fresh.api}/studies", timeout=10).status_code == 200
        assert time.perf_counter() - t0 < 1.0
        assert time.perf_counter() - started < 30
    # leaving the block sent Ctrl-C and asserted that serve stopped within 60 s


def test_deleting_a_running_study_never_touches_the_next_one(server: Served) -> None:
    client = httpx.Client(base_url=server.api, timeout=30)
    first = client.post("/studies", json=_spec("to delete", epochs=200)).json()
    (run,) = client.get(f"/studies/{first['id']}/runs", params={"kind": "train"}).json()["items"]
    _wait(
        lambda: client.get(f"/runs/{run['id']}").json()["epochs_done"] >= 2,
        120,
        "the first study's run to be under way (two epochs checkpointed)",
    )
    deleted = client.delete(f"/studies/{first['id']}")
    assert deleted.status_code == 202, deleted.text  # its run was running: the study waits for it
    assert deleted.json()["waiting_for_runs"] == 1
    assert client.get(f"/studies/{first['id']}").json()["status"] == "deleting"
    assert client.post(f"/studies/{first['id']}/extend", json={"lr_high": 1}).status_code == 409

    second = client.post("/studies", json=_spec("next", epochs=3)).json()
    assert second["id"] > first["id"]
    (new_run,) = client.get(f"/studies/{second['id']}/runs", params={"kind": "train"}).json()["items"]
    assert new_run["id"] > run["id"]

    _wait(lambda: client.get(f"/studies/{first['id']}").status_code == 404, 60, "the deleted study to go")
    assert not (server.data_dir / "artifacts" / f"study_{first['id']}").exists()
    done = _wait(
        lambda: (r := client.get(f"/runs/{new_run['id']}").json())["status"] in ("succeeded", "failed") and r,
        120,
        "the next study's run to end",
    )
    assert done["status"] == "succeeded", done["error"]
    # trained from its own first epoch, not resumed from anything the deleted run left
    assert [e["epoch"] for e in done["epochs"]] == [1, 2, 3]
    assert "discarded_checkpoint" not in (done["result"] or {})
    assert (server.data_dir / "artifacts" / f"study_{second['id']}").is_dir()


def test_a_big_csv_import_does_not_hold_up_other_requests(server: Served) -> None:
    # 20,000 runs (the default per-study cap), padded to ~15 MB with a column the import ignores
    header = "variant,lr,wd,seed,top1,notes\n"
    pad = "x" * 700
    rows = [
        f"base,{0.1 * 10 ** (0.2 * (k % 10 - 5)):.6g},{1e-4 * 10 ** (0.2 * (k // 10 % 10 - 5)):.6g},{k // 100},"
        f"{80 + (k % 97) / 10:.1f},{pad}\n"
        for k in range(20_000)
    ]
    content = (header + "".join(rows)).encode()
    result: dict = {}

    def upload() -> None:
        t0 = time.perf_counter()
        response = httpx.post(
            f"{server.api}/studies/import", files={"file": ("big.csv", content, "text/csv")}, timeout=300
        )
        result.update(code=response.status_code, seconds=time.perf_counter() - t0, body=response.text[:300])

    thread = threading.Thread(target=upload)
    thread.start()
    latencies = []
    while thread.is_alive():
        t0 = time.perf_counter()
        assert httpx.get(f"{server.api}/studies", params={"limit": 5}, timeout=30).status_code == 200
        latencies.append(time.perf_counter() - t0)
        time.sleep(0.05)
    thread.join()
    print(
        f"CSV import of {len(content) / 1e6:.1f} MB ({len(rows)} rows): {result['code']} in "
        f"{result['seconds']:.1f} s; meanwhile {len(latencies)} GET /studies, median "
        f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )
    assert result["code"] == 201, result["body"]
    assert len(latencies) >= 3  # the import took long enough to be probed while it ran
    assert max(latencies) < 1.0


def test_two_hundred_mixed_requests_fifty_in_flight_no_server_error(server: Served) -> None:
    client = httpx.Client(base_url=server.api, timeout=60)
    study = client.post("/studies", json=_spec("load", epochs=1)).json()
    sid = study["id"]
    plan = {"name": "plan", **DIGITS, "recipe": {"epochs": 1}}
    requests = [
        ("GET", "/health", None),
        ("GET", "/studies", None),
        ("GET", f"/studies/{sid}", None),
        ("GET", f"/studies/{sid}/runs", None),
        ("GET", f"/studies/{sid}/landscape", None),
        ("GET", f"/studies/{sid}/compare", None),
        ("GET", f"/studies/{sid}/analysis", None),  # 409 until a run has scored
        ("GET", f"/studies/{sid}/variants", None),
        ("POST", "/studies/plan", plan),
        ("GET", "/studies/999999", None),  # 404
        ("GET", "/studies", {"offset": "9223372036854775808"}),  # 422
        ("POST", "/studies/plan", {"name": "bad"}),  # 422
    ]
    codes: list[int] = []
    seconds: list[float] = []
    lock = threading.Lock()

    def send(k: int) -> None:
        method, path, payload = requests[k % len(requests)]
        t0 = time.perf_counter()
        with httpx.Client(base_url=server.api, timeout=60) as own:
            response = own.get(path, params=payload) if method == "GET" else own.post(path, json=payload)
        with lock:
            codes.append(response.status_code)
            seconds.append(time.perf_counter() - t0)

    started = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:
        list(pool.map(send, range(200)))
    wall = time.perf_counter() - started
    by_code = {code: codes.count(code) for code in sorted(set(codes))}
    print(
        f"200 mixed requests, 50 in flight: {wall:.1f} s, codes {by_code}, "
        f"median {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms"
    )
    assert len(codes) == 200
    assert not [c for c in codes if c >= 500], by_code
    t0 = time.perf_counter()
    assert client.get("/studies").status_code == 200
    assert client.get("/health").status_code == 200
    assert time.perf_counter() - t0 < 1.0
