"""Latency of the read endpoints on a 10,000-run study in Postgres, first call and cached calls
separately: analysis, landscape (per variant) and run-list pages.

    .venv/bin/python bench/api.py                  # fresh Postgres schema + a uvicorn process
    .venv/bin/python bench/api.py --url http://127.0.0.1:8000 [--token T]   # an API already running

Targets (2-core machine): analysis p95 < 300 ms, landscape p95 < 100 ms after the first call.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import API, Schema, Server, import_study, percentiles, study_csv  # noqa: E402


def timed(client: httpx.Client, path: str, **params) -> float:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="an API already running (loopback only)")
    parser.add_argument("--token", help="bearer token when that API has auth on")
    parser.add_argument("--repeats", type=int, default=50, help="cached calls per endpoint")
    args = parser.parse_args()
    if args.url and not args.url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        parser.error("--url must be a loopback address")

    schema = server = None
    try:
        if args.url:
            base = args.url.rstrip("/")
        else:
            schema = Schema()
            server = Server(schema.url, Path(tempfile.mkdtemp(prefix="prunescape-bench-")))
            base = server.url
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        csv_text = study_csv(10_000)
        started = time.perf_counter()
        study = import_study(base, csv_text, "bench 10k", headers)
        print(
            f"import of 10,000 runs ({len(csv_text) / 1e6:.2f} MB CSV): {time.perf_counter() - started:.2f} s"
        )
        with httpx.Client(base_url=base + API, timeout=120) as client:
            variants = client.get(f"/studies/{study}").json()["variants"]
            print(f"study {study}: {len(variants)} variants, 33 x 33 grid, 10,000 runs")
            first_analysis = timed(client, f"/studies/{study}/analysis")
            print(f"analysis       first call  {first_analysis * 1000:8.1f} ms")
            cached = [timed(client, f"/studies/{study}/analysis") for _ in range(args.repeats)]
            print(f"analysis       cached      {percentiles(cached)}")
            first_land = [timed(client, f"/studies/{study}/landscape", variant=v) for v in variants]
            print(f"landscape      first calls {percentiles(first_land)}")
            land = [
                timed(client, f"/studies/{study}/landscape", variant=variants[k % len(variants)])
                for k in range(args.repeats)
            ]
            print(f"landscape      repeated    {percentiles(land)}")
            pages = [
                timed(client, f"/studies/{study}/runs", limit=100, offset=100 * k)
                for k in range(args.repeats)
            ]
            print(f"runs (100/pg)  pages       {percentiles(pages)}")
            big = [
                timed(client, f"/studies/{study}/runs", limit=1000, offset=1000 * (k % 10)) for k in range(10)
            ]
            print(f"runs (1000/pg) pages       {percentiles(big)}")
            compare = [timed(client, f"/studies/{study}/compare") for _ in range(10)]
            print(f"compare                    {percentiles(compare)}")
    finally:
        if server:
            server.close()
        if schema:
            schema.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
