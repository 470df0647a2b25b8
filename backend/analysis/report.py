"""``analyse()``: the whole landscape analysis of a study as one typed record.

The same function serves a live study (rows from the database, possibly still filling) and an
imported file. Steps, all over numpy arrays (no loop over runs): the study's axes
(:mod:`~backend.analysis.grid`), per-point aggregates of every variant
(:mod:`~backend.analysis.landscape`), then per variant the best point and x-ROIs
(:mod:`~backend.analysis.roi`), their confidence ellipses (:mod:`~backend.analysis.ellipse`), the
seed noise, the seed bootstrap of the best point and of the ROIs (:mod:`~backend.analysis.noise`),
the performance risk over the base's 0.5-ROI (:mod:`~backend.analysis.risk`), the shift test
against the base (:mod:`~backend.analysis.shift`; with seeds on both sides its CI comes from the
seed bootstrap) and the grid extension proposal (:mod:`~backend.analysis.extension`); finally the
study-wide colour scale and the summary table.
The JSON shape is documented in :mod:`backend.analysis.records`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from backend.analysis.colour import DEFAULT_FLOOR_PERCENTILE, colour_scale
from backend.analysis.ellipse import confidence_ellipse, ellipse_reason
from backend.analysis.extension import EXTENSION_LEVEL, propose_extension
from backend.analysis.grid import GridSpec, build_axes
from backend.analysis.landscape import Cells, compute_cells, landscape_record
from backend.analysis.noise import SeedBootstrap, bootstrap_stream, noise_record, seed_bootstrap
from backend.analysis.records import (
    AnalysisReport,
    BestRecord,
    EllipseRecord,
    RoiRecord,
    ShiftRecord,
    VariantResult,
    level_key,
)
from backend.analysis.risk import RISK_LEVEL, performance_risk
from backend.analysis.roi import best_index, roi_mask, roi_record
from backend.analysis.shift import CI_LEVEL, N_BOOT, N_PERM, not_tested, seed_resampled_deltas, shift_test
from backend.analysis.summary import summary_table
from backend.analysis.table import ResultsTable, as_table


def _levels(roi_levels: Sequence[float]) -> list[float]:
    levels = sorted({float(x) for x in roi_levels})
    if not levels:
        raise ValueError("roi_levels: give at least one level (percentage points)")
    if any(not np.isfinite(x) or x < 0 for x in levels):
        raise ValueError(f"roi_levels must be finite and >= 0, got {list(roi_levels)}")
    return levels


def _variant_order(table: ResultsTable, base: str) -> list[str]:
    names = table.variants
    return ([base] if base in names else []) + [v for v in names if v != base]


def _stream(variant: str, level: float) -> tuple[int, int]:
    return zlib.crc32(variant.encode("utf-8")), round(level * 1000)


def _seed_bootstrap(cells: Cells, vi: int, levels: list[float], seed: int) -> SeedBootstrap | None:
    iy, ix, xy = cells.coords(vi)
    rng = np.random.default_rng((int(seed), *bootstrap_stream(cells.variants[vi])))
    return seed_bootstrap(
        cells.point_runs(vi), cells.n[vi][iy, ix], cells.mean[vi][iy, ix], xy, levels, rng, N_BOOT
    )


def _variant_result(
    cells: Cells,
    vi: int,
    levels: list[float],
    k: float,
    base: str,
    base_xy: np.ndarray | None,
    base_vals: np.ndarray | None,
    theta_r: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    seed: int,
    boot: SeedBootstrap | None,
    base_boot: SeedBootstrap | None,
    extension_level: float = EXTENSION_LEVEL,
) -> VariantResult:
    variant = cells.variants[vi]
    iy, ix, xy = cells.coords(vi)
    vals = cells.mean[vi][iy, ix]
    has = len(vals) > 0
    best = None
    if has:
        bi, tied = best_index(vals, xy)
        run_ids = None if cells.run_ids is None else list(cells.run_ids[vi, iy[bi], ix[bi]])
        std = cells.std[vi][iy[bi], ix[bi]]
        best = BestRecord(
            value=float(vals[bi]),
            x=float(xy[bi, 0]),
            y=float(xy[bi, 1]),
            wd=float(cells.axes.wd.values[ix[bi]]),
            lr=float(cells.axes.lr.values[iy[bi]]),
            std=float(std) if np.isfinite(std) else None,
            n=int(cells.n[vi][iy[bi], ix[bi]]),
            run_ids=run_ids,
            ties=xy[tied].tolist(),
            n_ties=len(tied),
            ci_low=None if boot is None else boot.best_ci[0],
            ci_high=None if boot is None else boot.best_ci[1],
            ci_level=CI_LEVEL,
        )
    rois: dict[str, RoiRecord] = {}
    ellipses: dict[str, EllipseRecord | None] = {}
    reasons: dict[str, str | None] = {}
    shifts: dict[str, ShiftRecord] = {}
    for level in levels:
        key = level_key(level)
        rois[key] = roi_record(vals, xy, level)
        mask = roi_mask(vals, level)
        ellipses[key] = confidence_ellipse(xy[mask], k=k, level=level)
        reasons[key] = ellipse_reason(int(mask.sum()), level)
        n_b = 0 if base_vals is None else int(roi_mask(base_vals, level).sum())
        if variant == base:
            shifts[key] = not_tested(
                level, "the base variant is the reference", int(mask.sum()), n_b, N_BOOT, N_PERM
            )
        elif base_vals is None or base_xy is None or len(base_vals) == 0:
            shifts[key] = not_tested(
                level, f"no results for the base variant {base!r}", int(mask.sum()), 0, N_BOOT, N_PERM
            )
        else:
            base_mask = roi_mask(base_vals, level)
            seed_deltas = None
            if boot is not None and base_boot is not None:
                seed_deltas = seed_resampled_deltas(boot.rois[key].centres, base_boot.rois[key].centres)
            shifts[key] = shift_test(
                xy[mask],
                base_xy[base_mask],
                level=level,
                seed=seed,
                stream=_stream(variant, level),
                seed_deltas=seed_deltas,
            )
    if theta_r is None:
        risk = performance_risk(best.value if best else None, np.empty(0))
    else:
        r_iy, r_ix, r_xy = theta_r
        risk = performance_risk(best.value if best else None, cells.mean[vi][r_iy, r_ix], r_xy)
    noise = noise_record(
        vals, xy, cells.std[vi][iy, ix], cells.n[vi][iy, ix], levels, 0 if boot is None else boot.n_boot
    )
    membership = None
    if boot is not None:
        membership = {key: roi.membership.tolist() for key, roi in boot.rois.items()}
    ext_mask = roi_mask(vals, extension_level)
    extension = propose_extension(
        iy[ext_mask], ix[ext_mask], cells.axes.lr, cells.axes.wd, level=extension_level
    )
    return VariantResult(
        variant=variant,
        n_runs=int(cells.runs_per_variant[vi]),
        n_diverged=int(cells.diverged_per_variant[vi]),
        landscape=landscape_record(cells, variant),
        best=best,
        roi=rois,
        ellipse=ellipses,
        ellipse_reason=reasons,
        risk=risk,
        shift=shifts,
        extension=extension,
        noise=noise,
        roi_membership=membership,
    )


def analyse(
    rows: ResultsTable | Iterable[Mapping[str, Any]],
    *,
    metric: str = "top1",
    roi_levels: Sequence[float] = (0.5, 1.0),
    k: float = 2.0,
    base: str = "base",
    grid: GridSpec | Mapping[str, Any] | None = None,
    colour_floor_percentile: float = DEFAULT_FLOOR_PERCENTILE,
    seed: int = 0,
    extension_level: float = EXTENSION_LEVEL,
) -> AnalysisReport:
    """Analyse a study's results (dict rows or a :class:`ResultsTable`); see ``records`` for the JSON.
    ``extension_level``: the x-ROI the extension proposal looks at (a study's auto_extend level)."""
    table = as_table(rows)
    levels = _levels(roi_levels)
    if not (np.isfinite(extension_level) and extension_level > 0):
        raise ValueError(f"extension_level must be finite and > 0, got {extension_level}")
    if metric not in ("top1", "top5"):
        raise ValueError(f"unknown metric {metric!r}; choose top1 or top5")
    if len(table) and metric not in table.metrics:
        raise ValueError(f"no {metric} values in these results; analyse top1 instead")
    warnings: list[str] = []
    variants = _variant_order(table, base)
    if len(table) and base not in variants:
        warnings.append(f"no results for the base variant {base!r}: no risk and no shift test")
    axes = build_axes(table, grid)
    warnings += list(axes.warnings)
    cells = compute_cells(table, metric, axes=axes, variants=variants)

    base_xy = base_vals = theta_r = None
    boots = [_seed_bootstrap(cells, vi, levels, seed) for vi in range(len(variants))]
    base_boot = None
    if base in variants:
        bi = variants.index(base)
        b_iy, b_ix, base_xy = cells.coords(bi)
        base_vals = cells.mean[bi][b_iy, b_ix]
        r_mask = roi_mask(base_vals, RISK_LEVEL)
        theta_r = (b_iy[r_mask], b_ix[r_mask], base_xy[r_mask])
        base_boot = boots[bi]

    results = {
        v: _variant_result(
            cells,
            vi,
            levels,
            k,
            base,
            base_xy,
            base_vals,
            theta_r,
            seed,
            boots[vi],
            base_boot,
            extension_level,
        )
        for vi, v in enumerate(variants)
    }
    return AnalysisReport(
        metric=metric,
        metrics_available=table.metrics,
        base=base,
        variants=variants,
        roi_levels=levels,
        k=float(k),
        seed=int(seed),
        n_runs=len(table),
        n_skipped=table.n_skipped,
        warnings=warnings,
        grid=axes.record(),
        colour_scale=colour_scale(table.values(metric), colour_floor_percentile),
        summary=summary_table(list(results.values()), levels),
        results=results,
    )
