"""``prunescape analyse FILE.csv [--json] [--metric top1|top5]``: analyse results from elsewhere."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from backend.analysis.records import AnalysisReport, level_key


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "analyse",
        help="analyse a results CSV (variant,lr,wd,seed,top1[,top5][,status][,run_id])",
        description="Landscape analysis of a results CSV: best point, ROIs, ellipses, risk, shift test, "
        "grid extension. The base variant's rows are named 'base' (see --base).",
    )
    parser.add_argument("file", metavar="FILE.csv", help="results CSV, UTF-8")
    parser.add_argument("--json", action="store_true", help="print the full analysis as JSON")
    parser.add_argument("--metric", choices=("top1", "top5"), default="top1")
    parser.add_argument("--base", default="base", help="name of the base (unpruned) variant")
    parser.add_argument("--roi-levels", default="0.5,1.0", help="x of the x-ROIs, percentage points")
    parser.add_argument("--k", type=float, default=2.0, help="ellipse size in standard deviations")
    parser.add_argument("--colour-floor", type=float, default=85.0, help="colour scale floor percentile")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shift test's resampling")
    parser.set_defaults(func=run)


def _levels(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--roi-levels: expected numbers separated by commas, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from backend.analysis.report import analyse
    from backend.analysis.table import parse_results_csv

    with open(args.file, "rb") as fh:
        data = fh.read()
    table = parse_results_csv(data, base=args.base)
    report = analyse(
        table,
        metric=args.metric,
        roi_levels=_levels(args.roi_levels),
        k=args.k,
        base=args.base,
        colour_floor_percentile=args.colour_floor,
        seed=args.seed,
    )
    if args.json:
        json.dump(report.to_dict(), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_report(report))
    return 0


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned; numbers right-aligned, text left-aligned."""
    cells = [[_fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    numeric = [all(not isinstance(row[i], str) or row[i] == "-" for row in rows) for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(items: Sequence[str]) -> str:
        out = [s.rjust(w) if num else s.ljust(w) for s, w, num in zip(items, widths, numeric, strict=True)]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]) + "\n"


def format_report(report: AnalysisReport) -> str:
    grid = report.grid
    out = [
        f"{report.n_runs} runs, {len(report.variants)} variants, metric {report.metric}, "
        f"grid {len(grid.lr_values)} lr x {len(grid.wd_values)} wd ({grid.source}, "
        f"step lr {_fmt(grid.step_lr)} wd {_fmt(grid.step_wd)} log10)",
    ]
    if report.colour_scale:
        cs = report.colour_scale
        out.append(f"colour scale: {cs.min:.2f} .. {cs.max:.2f} ({cs.percentile:g}th percentile .. max)")
    out += [f"warning: {w}" for w in report.warnings]
    results = [report.results[v] for v in report.variants]

    out.append("\nBest point")
    out.append(
        format_table(
            ["variant", "runs", "diverged", report.metric, "95% CI (seeds)", "lr", "wd", "ties"],
            [
                [r.variant, r.n_runs, r.n_diverged]
                + (
                    [r.best.value, _interval(r.best.ci_low, r.best.ci_high)]
                    + [f"{r.best.lr:.4g}", f"{r.best.wd:.4g}", r.best.n_ties]
                    if r.best
                    else ["-"] * 5
                )
                for r in results
            ],
        )
    )
    out.append("Seed noise (percentage points; an x-ROI is within noise when x < 2 x noise)")
    keys = [level_key(x) for x in sorted(report.roi_levels, reverse=True)]
    rows = []
    for r in results:
        n = r.noise
        source = "seeds" if n.source == "seeds" else "fit (estimate)"
        within = [n.roi_within_noise.get(key) for key in keys]
        rows.append([r.variant, n.std, source, n.n_points_used, *within, n.reason or ""])
    out.append(
        format_table(["variant", "noise", "source", "points", *[f"{k} within" for k in keys], "note"], rows)
    )
    out.append(f"ROI ellipses (k = {report.k:g}, coverage {_coverage(report):.2f} %; log10 units)")
    rows = []
    for r in results:
        for key in sorted(r.roi, key=float, reverse=True):
            ell = r.ellipse[key]
            if ell is None:
                rows.append(
                    [
                        r.variant,
                        key,
                        r.roi[key].n_points,
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        r.ellipse_reason[key] or "",
                    ]
                )
            else:
                rows.append(
                    [
                        r.variant,
                        key,
                        ell.n_points,
                        ell.length,
                        ell.width,
                        ell.angle_deg,
                        ell.centre[0],
                        ell.centre[1],
                        "",
                    ]
                )
    out.append(
        format_table(
            ["variant", "ROI", "points", "length", "width", "angle", "log10 wd", "log10 lr", "note"], rows
        )
    )

    base_r = report.results.get(report.base)
    theta = base_r.risk.theta_r_size if base_r else 0
    out.append(f"Performance risk over the base's 0.5-ROI ({theta} points; d in points, dR in %)")
    rows = []
    for r in results:
        k = r.risk
        q = k.quartiles or [None] * 3
        rows.append(
            [
                r.variant,
                k.n,
                k.missing,
                k.mean,
                k.std,
                _pct(k.rel_mean),
                _pct(k.rel_std),
                q[0],
                q[1],
                q[2],
                k.max,
            ]
        )
    out.append(
        format_table(
            ["variant", "n", "missing", "d mean", "d std", "dR mean", "dR std", "q1", "median", "q3", "max"],
            rows,
        )
    )

    out.append("Shift vs base (variant - base centre, log10 units, bootstrap 95 % CI, permutation p)")
    rows = []
    for r in results:
        if r.variant == report.base:
            continue
        for key in sorted(r.shift, key=float, reverse=True):
            s = r.shift[key]
            if not s.tested:
                rows.append([r.variant, key, "-", "-", "-", "-", "-", "-", f"not tested: {s.reason}"])
                continue
            ci_wd = f"[{s.ci_low[0]:+.3f}, {s.ci_high[0]:+.3f}]"
            ci_lr = f"[{s.ci_low[1]:+.3f}, {s.ci_high[1]:+.3f}]"
            rows.append(
                [
                    r.variant,
                    key,
                    f"{s.delta[0]:+.3f}",
                    ci_wd,
                    f"{s.delta[1]:+.3f}",
                    ci_lr,
                    f"{s.p_value:.4f}",
                    s.resampling,
                    s.verdict,
                ]
            )
    out.append(
        format_table(
            ["variant", "ROI", "d wd", "95% CI", "d lr", "95% CI", "p", "resampled", "verdict"], rows
        )
    )

    out.append("Grid extension (1.0-ROI on the grid's edge)")
    rows = []
    for r in results:
        e = r.extension
        sides = ", ".join(
            f"{s.axis} {s.side} -> {s.value:.4g}" + (f" (i={s.index})" if s.index is not None else "")
            for s in e.sides
        )
        rows.append([r.variant, e.needed, e.n_points, sides or (e.reason or "")])
    out.append(format_table(["variant", "needed", "new points", "sides"], rows))
    return "\n".join(out)


def _interval(low: float | None, high: float | None) -> str:
    return "-" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


def _coverage(report: AnalysisReport) -> float:
    return 100.0 * (1.0 - math.exp(-(report.k**2) / 2.0))
