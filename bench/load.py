"""Load: N concurrent clients for a bounded time against the API backed by Postgres, mixing study
submissions, analysis / landscape reads and run-list pages of a 10,000-run study (imported through
POST /studies/import). Prints throughput, p50/p95/p99 per endpoint and the error count.

    .venv/bin/python bench/load.py                       # fresh Postgres schema + uvicorn (2 workers)
    .venv/bin/python bench/load.py --clients 50 --seconds 30 --url http://127.0.0.1:8000 [--token T]
    .venv/bin/python bench/load.py --think 1.5           # dashboard users: ~1.5 s between requests

Modes: by default every client sends its next request as soon as the last one answered (closed
loop, no think time): a throughput stress, where latency is roughly clients x CPU per request /
cores. `--think S` makes each client wait uniformly 0.5 S..1.5 S between requests, like a person
(or the dashboard's poll) would; the header line says which mode ran.

Each client has its own HTTP connection, as separate users do. `--shared-pool` puts all clients
in one httpx pool instead (the harness before 2026-11-22): httpx's pool bookkeeping then costs about
7 ms of the load generator's CPU per request at 50 connections, on the same 2 cores as the server,
so it measures the client as much as the API.

Target on the 2-core machine: zero errors, p95 < 500 ms for reads. Loopback addresses only; each
client's loop ends at the deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import AsyncExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API, Schema, Server, import_study, percentiles, study_csv  # noqa: E402

SUBMIT_SPEC = {
    "name": "load submission",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 1, "batch_size": 64},
    "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
    "repeats": 1,
    "variants": [{"name": "base", "kind": "base"}, {"name": "q8", "kind": "int8", "source": "base"}],
}
# (endpoint label, weight)
MIX = [("submit", 5), ("analysis", 20), ("landscape", 30), ("runs page", 30), ("study", 10), ("list", 5)]


async def client_loop(
    client: httpx.AsyncClient, study: int, variants: list[str], deadline: float, rng: random.Random,
    latencies: dict[str, list[float]], errors: dict[str, list[str]], submitted: list[int], think: float,
) -> None:  # fmt: skip
    labels, weights = zip(*MIX, strict=True)
    first = True
    while time.monotonic() < deadline:
        if think:
            # Users do not start in lockstep: the first wait is anywhere in 0..1.5 think.
            pause = rng.uniform(0, 1.5 * think) if first else rng.uniform(0.5 * think, 1.5 * think)
            first = False
            if time.monotonic() + pause >= deadline:
                break
            await asyncio.sleep(pause)
        label = rng.choices(labels, weights)[0]
        if label == "submit":
            request = client.build_request("POST", "/studies", json=SUBMIT_SPEC)
        elif label == "analysis":
            request = client.build_request("GET", f"/studies/{study}/analysis", params={"metric": "top1"})
        elif label == "landscape":
            params = {"variant": rng.choice(variants)}
            request = client.build_request("GET", f"/studies/{study}/landscape", params=params)
        elif label == "runs page":
            params = {"limit": 100, "offset": 100 * rng.randrange(100)}
            request = client.build_request("GET", f"/studies/{study}/runs", params=params)
        elif label == "study":
            request = client.build_request("GET", f"/studies/{study}")
        else:
            request = client.build_request("GET", "/studies", params={"limit": 20})
        started = time.perf_counter()
        try:
            response = await client.send(request)
        except httpx.HTTPError as exc:
            errors[label].append(f"{type(exc).__name__}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        if response.status_code >= 400:
            errors[label].append(f"{response.status_code}: {response.text[:200]}")
            continue
        latencies[label].append(elapsed)
        if label == "submit":
            submitted.append(response.json()["id"])


async def run_load(
    base: str, headers: dict[str, str], study: int, clients: int, seconds: float, think: float,
    shared_pool: bool,
) -> int:  # fmt: skip
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    submitted: list[int] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with AsyncExitStack() as stack:
        pools = 1 if shared_pool else clients
        http = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base + API, headers=headers, timeout=60, limits=limits)
            )
            for _ in range(pools)
        ]
        per_client = [http[k % pools] for k in range(clients)]
        first = http[0]
        variants = (await first.get(f"/studies/{study}")).json()["variants"]
        await first.get(f"/studies/{study}/analysis")  # the first (uncached) call is bench/api.py's figure
        deadline = time.monotonic() + seconds
        started = time.perf_counter()
        await asyncio.gather(*(
            client_loop(per_client[k], study, variants, deadline, random.Random(k), latencies, errors,
                        submitted, think)
            for k in range(clients)
        ))  # fmt: skip
        wall = time.perf_counter() - started
        for study_id in submitted:  # leave no submitted work behind on a real deployment
            await first.post(f"/studies/{study_id}/cancel")
    done = sum(len(v) for v in latencies.values())
    failed = sum(len(v) for v in errors.values())
    mode = f"think time 0.5-1.5 x {think:g} s" if think else "closed loop, no think time"
    pool = "one shared httpx pool" if shared_pool else "a connection per client"
    print(f"{clients} clients ({mode}; {pool}) for {wall:.1f} s: {done} requests ok, {failed} errors, "
          f"{done / wall:.1f} req/s")  # fmt: skip
    for label, _ in MIX:
        print(f"  {label:10s} {percentiles(latencies[label])}  errors={len(errors[label])}")
    for label, messages in errors.items():
        for message in sorted(set(messages))[:3]:
            print(f"  error sample [{label}] {message}")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="an API already running (loopback only)")
    parser.add_argument("--token", help="bearer token when that API has auth on")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--server-workers", type=int, default=2, help="uvicorn workers when we start it")
    parser.add_argument(
        "--think", type=float, default=0.0, help="mean seconds between a client's requests (0: none)"
    )
    parser.add_argument(
        "--shared-pool", action="store_true", help="all clients in one httpx pool (the old harness)"
    )
    args = parser.parse_args()
    if args.url and not args.url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        parser.error("--url must be a loopback address")
    if not 1 <= args.clients <= 500 or not 0 < args.seconds <= 600:
        parser.error("--clients 1..500 and --seconds up to 600")
    if not 0 <= args.think <= 60:
        parser.error("--think 0..60 seconds")
    schema = server = None
    try:
        if args.url:
            base = args.url.rstrip("/")
        else:
            schema = Schema()
            server = Server(
                schema.url, Path(tempfile.mkdtemp(prefix="prunescape-load-")), args.server_workers
            )
            base = server.url
            print(f"uvicorn x{args.server_workers} on {base}, Postgres schema {schema.name}")
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        study = import_study(base, study_csv(10_000), "load 10k", headers)
        failed = asyncio.run(
            run_load(base, headers, study, args.clients, args.seconds, args.think, args.shared_pool)
        )
    finally:
        if server:
            server.close()
        if schema:
            schema.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
