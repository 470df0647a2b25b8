"""The per-variant summary table: the columns of the study's two result tables, for a paper.

Table 1 (ROI ellipses): for each ROI level (1.0 then 0.5 by default) the number of ROI points and
the ellipse's length, width and centre (log10 wd, log10 lr); empty when there is no ellipse.
Table 2 (performance risk): d_mean, d_std, dR_mean, dR_std (dR as a fraction of the variant's best),
with n and missing. Also the best point with its seed-bootstrap CI (empty with one seed), the seed
noise (std and source: "seeds", or "fit" for the one-seed estimate), whether each ROI level is
within noise (x < 2 x noise) and each level's shift-test p-value and verdict.
``csv`` is the same table as CSV text (6 significant digits; empty cell = no value).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from backend.analysis.records import SummaryTable, VariantResult, level_key


def summary_columns(levels: Sequence[float]) -> list[str]:
    columns = ["variant", "n_runs", "best", "best_ci_low", "best_ci_high", "best_lr", "best_wd"]
    columns += ["noise_std", "noise_source"]
    for level in levels:
        key = level_key(level)
        columns += [f"roi_{key}_n", f"roi_{key}_length", f"roi_{key}_width"]
        columns += [f"roi_{key}_centre_log10wd", f"roi_{key}_centre_log10lr", f"roi_{key}_within_noise"]
    columns += ["d_mean", "d_std", "dR_mean", "dR_std", "risk_n", "risk_missing"]
    for level in levels:
        key = level_key(level)
        columns += [f"shift_{key}_p", f"shift_{key}_verdict"]
    return columns


def _row(result: VariantResult, levels: Sequence[float]) -> dict[str, Any]:
    best = result.best
    row: dict[str, Any] = {
        "variant": result.variant,
        "n_runs": result.n_runs,
        "best": None if best is None else best.value,
        "best_ci_low": None if best is None else best.ci_low,
        "best_ci_high": None if best is None else best.ci_high,
        "best_lr": None if best is None else best.lr,
        "best_wd": None if best is None else best.wd,
        "noise_std": result.noise.std,
        "noise_source": result.noise.source,
    }
    for level in levels:
        key = level_key(level)
        roi = result.roi.get(key)
        ell = result.ellipse.get(key)
        row[f"roi_{key}_n"] = None if roi is None else roi.n_points
        row[f"roi_{key}_length"] = None if ell is None else ell.length
        row[f"roi_{key}_width"] = None if ell is None else ell.width
        row[f"roi_{key}_centre_log10wd"] = None if ell is None else ell.centre[0]
        row[f"roi_{key}_centre_log10lr"] = None if ell is None else ell.centre[1]
        row[f"roi_{key}_within_noise"] = result.noise.roi_within_noise.get(key)
    risk = result.risk
    row.update(
        d_mean=risk.mean, d_std=risk.std, dR_mean=risk.rel_mean, dR_std=risk.rel_std,
        risk_n=risk.n, risk_missing=risk.missing,
    )  # fmt: skip
    for level in levels:
        key = level_key(level)
        shift = result.shift.get(key)
        row[f"shift_{key}_p"] = None if shift is None else shift.p_value
        row[f"shift_{key}_verdict"] = None if shift is None else shift.verdict
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def summary_table(results: Sequence[VariantResult], levels: Sequence[float]) -> SummaryTable:
    """One row per variant (in the given order); levels largest first, as in the study's table."""
    ordered = sorted({float(x) for x in levels}, reverse=True)
    columns = summary_columns(ordered)
    rows = [_row(r, ordered) for r in results]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in columns])
    return SummaryTable(columns=columns, rows=rows, csv=out.getvalue())
