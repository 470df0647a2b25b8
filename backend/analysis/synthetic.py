"""Synthetic landscapes with a known optimum, for tests, benchmarks and demos.

f(theta) = peak - a_wd * dx^2 - a_lr * dy^2 - a_cross * dx * dy + noise, with
dx = log10 wd - (log10 wd0 + shift_wd), dy = log10 lr - (log10 lr0 + shift_lr), clipped to
[0, 100]. The optimum of a variant is therefore at (wd0 * 10**shift_wd, lr0 * 10**shift_lr), and
the noise-free 1.0-ROI is the ellipse f >= peak - 1. The grid is the study grid of the contracts:
``centre * 10 ** (step * i)``, ``i = -(size//2) .. size//2``.

    python -m backend.analysis.synthetic --out shifted.csv --shift 0.6,0        # lr x 10**0.6
    python -m backend.analysis.synthetic --out same.csv --variants u60,n60      # no shift
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticVariant:
    name: str
    shift_lr: float = 0.0  # log10 units
    shift_wd: float = 0.0
    peak: float = 93.0


def synthetic_rows(
    variants: Sequence[SyntheticVariant],
    *,
    size: int = 9,
    step: float = 0.2,
    lr_centre: float = 0.1,
    wd_centre: float = 1e-4,
    seeds: int = 1,
    curvature_lr: float = 4.0,
    curvature_wd: float = 2.0,
    curvature_cross: float = 1.0,
    noise: float = 0.05,
    seed: int = 0,
    run_ids: bool = False,
) -> list[dict]:
    """Rows (dicts in the results-table format) of every variant at every grid point and seed."""
    rng = np.random.default_rng(seed)
    idx = np.arange(-(size // 2), size // 2 + 1)
    lr_log = np.log10(lr_centre) + step * idx
    wd_log = np.log10(wd_centre) + step * idx
    rows: list[dict] = []
    for v in variants:
        dy = lr_log[:, None] - (np.log10(lr_centre) + v.shift_lr)
        dx = wd_log[None, :] - (np.log10(wd_centre) + v.shift_wd)
        clean = v.peak - curvature_wd * dx**2 - curvature_lr * dy**2 - curvature_cross * dx * dy
        for s in range(seeds):
            acc = np.clip(clean + noise * rng.standard_normal(clean.shape), 0.0, 100.0)
            for i, lr in enumerate(10.0**lr_log):
                for j, wd in enumerate(10.0**wd_log):
                    row = {"variant": v.name, "lr": float(lr), "wd": float(wd), "seed": s,
                           "top1": round(float(acc[i, j]), 4), "status": "succeeded"}  # fmt: skip
                    if run_ids:
                        row["run_id"] = f"{v.name}-{i}-{j}-{s}"
                    rows.append(row)
    return rows


def rows_to_csv(rows: Sequence[dict]) -> str:
    columns = ["variant", "lr", "wd", "seed", "top1", "status"]
    if rows and "run_id" in rows[0]:
        columns.append("run_id")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _pair(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("expected DLR,DWD (log10 units), e.g. 0.6,0")
    return float(parts[0]), float(parts[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic results CSV with a known optimum.")
    parser.add_argument("--out", "-o", help="CSV path (stdout when omitted)")
    parser.add_argument("--variants", default="v1,v2", help="names of the compressed variants")
    parser.add_argument(
        "--shift", type=_pair, default=(0.0, 0.0), help="DLR,DWD optimum shift of every variant"
    )
    parser.add_argument("--peak-drop", type=float, default=0.8, help="variants' peak below the base's")
    parser.add_argument("--size", type=int, default=9)
    parser.add_argument("--step", type=float, default=0.2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    variants = [SyntheticVariant("base")]
    for name in [n.strip() for n in args.variants.split(",") if n.strip()]:
        variants.append(SyntheticVariant(name, args.shift[0], args.shift[1], 93.0 - args.peak_drop))
    text = rows_to_csv(
        synthetic_rows(
            variants, size=args.size, step=args.step, seeds=args.seeds, noise=args.noise, seed=args.seed
        )
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
