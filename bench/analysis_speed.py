"""Time analyse() on a 10,000-run synthetic study: 9 variants x 33 x 33 grid x 1 seed (~9,800 runs)
plus a second seed on enough base points to reach 10,000 (so the base's noise, best-point CI and
ROI membership come from the seed bootstrap, the others' noise from the quadratic fit). With
``--seeds S`` (S >= 2) every variant has S seeds at every point of a ``--size`` grid instead: the
seed bootstrap everywhere and the seed-resampled shift test. Prints p50/p95 in milliseconds, wall
clock and CPU time (the CPU time is the steadier figure on a shared machine).

    .venv/bin/python bench/analysis_speed.py [--repeats 30]
    .venv/bin/python bench/analysis_speed.py --seeds 3 --size 19     # 9 x 19 x 19 x 3 = 9,747 runs
    .venv/bin/python bench/analysis_speed.py --repeats 3            # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.analysis import analyse  # noqa: E402
from backend.analysis.synthetic import SyntheticVariant, synthetic_rows  # noqa: E402
from backend.analysis.table import table_from_rows  # noqa: E402


def study_rows(seeds: int = 1, size: int = 33) -> list[dict]:
    variants = [SyntheticVariant("base")] + [
        SyntheticVariant(f"v{i}", shift_lr=0.1 * (i - 4), shift_wd=-0.05 * i, peak=92.5) for i in range(8)
    ]
    if seeds > 1:
        return synthetic_rows(variants, size=size, step=0.1, seeds=seeds, seed=1, run_ids=True)
    rows = synthetic_rows(variants, size=size, step=0.1, seeds=1, seed=1, run_ids=True)
    extra = synthetic_rows([SyntheticVariant("base")], size=size, step=0.1, seeds=2, seed=2, run_ids=True)
    extra = [r for r in extra if r["seed"] == 1][: max(0, 10_000 - len(rows))]
    return rows + extra


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per point of every variant (>= 2)")
    parser.add_argument("--size", type=int, default=33, help="grid size (odd)")
    args = parser.parse_args()
    if not (1 <= args.seeds <= 20 and 3 <= args.size <= 61 and args.repeats >= 1):
        parser.error("--seeds in [1, 20], --size in [3, 61], --repeats >= 1")
    rows = study_rows(args.seeds, args.size)
    table = table_from_rows(rows)
    size = len(np.unique(table.lr))
    print(f"runs: {len(table)}, variants: {len(table.variants)}, grid {size} x {size}, seeds {args.seeds}")
    timings: dict[str, list[float]] = {
        "analyse(table)": [],
        "analyse(table) CPU time": [],
        "analyse(table).to_dict()": [],
        "analyse(dict rows)": [],
    }
    analyse(table)  # warm-up
    for _ in range(args.repeats):
        c0 = time.process_time()
        t0 = time.perf_counter()
        report = analyse(table)
        t1 = time.perf_counter()
        timings["analyse(table) CPU time"].append(1e3 * (time.process_time() - c0))
        report.to_dict()
        t2 = time.perf_counter()
        timings["analyse(table)"].append(1e3 * (t1 - t0))
        timings["analyse(table).to_dict()"].append(1e3 * (t2 - t0))
    for _ in range(max(3, args.repeats // 3)):
        t0 = time.perf_counter()
        analyse(rows)
        timings["analyse(dict rows)"].append(1e3 * (time.perf_counter() - t0))
    for name, ms in timings.items():
        p50, p95 = np.percentile(ms, [50, 95])
        print(f"{name:28s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
