"""Typed records of the landscape analysis and the JSON they serve (``to_dict()``).

Every record is a frozen dataclass whose fields are already JSON-ready (floats, ints, strings,
lists, ``None``; never NaN or infinity). Coordinates are always ``[log10 wd, log10 lr]`` (x, y).
ROI levels are keyed by ``level_key(x)``: ``"0.5"``, ``"1.0"``, ... (``repr(float(x))``).

``analyse(rows, ...)`` returns an :class:`AnalysisReport`; its ``to_dict()`` is the JSON the API
serves and the dashboard draws. ``landscape_for(rows, variant, metric)`` returns one
:class:`LandscapeRecord` (the ``landscape`` object below). Definitions and rules (ties, ROI
tolerance, shift-test design, seed noise): the docstrings of ``roi``, ``ellipse``, ``risk``,
``shift``, ``noise``, ``extension``, ``colour``. Shape::

    {
      "metric": "top1",                      # or "top5"
      "metrics_available": ["top1", "top5"],
      "base": "base",
      "variants": ["base", "u60", ...],      # base first, then order of first appearance
      "roi_levels": [0.5, 1.0], "k": 2.0, "seed": 0,
      "n_runs": 243, "n_skipped": 0,         # n_skipped: unfinished rows from the database
      "warnings": ["..."],
      "grid": {"source": "given" | "inferred", "regular": true,
               "lr_values": [...], "wd_values": [...],      # axes, ascending (natural units)
               "lr_log": [...], "wd_log": [...],            # the same in log10
               "lr_indices": [...] | null, "wd_indices": [...] | null,  # lattice index i per value
               "step_lr": 0.2 | null, "step_wd": 0.2 | null,
               "centre": [log10 wd0, log10 lr0] | null},
      "colour_scale": {"min": 91.2, "max": 93.4, "percentile": 85.0, "n_observations": 243} | null,
      "summary": {"columns": [...], "rows": [{column: value}, ...], "csv": "variant,...\\n..."},
      "results": {
        "<variant>": {
          "variant": "u60", "n_runs": 81, "n_diverged": 0,
          "landscape": {
            "variant": "u60", "metric": "top1",
            "x": [log10 wd ascending], "y": [log10 lr ascending],
            "wd_values": [...], "lr_values": [...],
            "z": [[mean | null for each wd] for each lr],     # rows = lr ascending, cols = wd ascending
            "n_points": 81, "n_runs": 81,
            "points": {                                       # column-wise, one entry per grid point
              "x": [...], "y": [...], "wd": [...], "lr": [...],
              "mean": [...], "std": [... | null],             # std over seeds (n-1); null when n = 1
              "n": [...], "n_diverged": [...],
              "run_ids": [[...], ...] | null}},               # null when no row had a run id
          "best": {"value": 93.1,                            # ties: smallest lr, then smallest wd
                   "x": -4.0, "y": -1.0, "wd": 1e-4, "lr": 0.1, "std": null, "n": 1,
                   "run_ids": [...] | null,
                   "ties": [[x, y], ...], "n_ties": 1,
                   "ci_low": 92.8 | null, "ci_high": 93.4 | null,  # seed bootstrap; null with one seed
                   "ci_level": 0.95} | null,
          "roi": {"0.5": {"level": 0.5, "threshold": 92.6, "n_points": 7, "points": [[x, y], ...]}, ...},
          "ellipse": {"0.5": {"level": 0.5, "centre": [x, y], "centre_wd": ..., "centre_lr": ...,
                              "length": ..., "width": ..., "angle_deg": ...,   # major axis vs +x, (-90, 90]
                              "semi_axes": [a, b], "eigenvalues": [l1, l2],
                              "covariance": [[sxx, sxy], [sxy, syy]],
                              "k": 2.0, "alpha": 0.1353, "coverage": 0.8647, "n_points": 7} | null, ...},
          "ellipse_reason": {"0.5": null | "only 3 points in the 0.5-ROI; an ellipse needs at least 5"},
          "risk": {"level": 0.5, "best_value": ..., "theta_r_size": 7, "n": 7, "missing": 0,
                   "mean": ..., "std": ..., "rel_mean": ..., "rel_std": ...,   # rel = fraction of best
                   "quartiles": [q1, median, q3], "rel_quartiles": [...], "min": ..., "max": ...,
                   "values": [...], "rel_values": [...], "points": [[x, y], ...],
                   "reason": null | "..."},
          "shift": {"1.0": {"level": 1.0, "tested": true, "reason": null,
                            "delta": [dx, dy], "distance": ...,       # variant - base, log10 units
                            "ci_low": [dx, dy], "ci_high": [dx, dy], "ci_level": 0.95,
                            "p_value": 0.001, "alpha": 0.05, "significant": true,
                            "verdict": "shift towards larger lr",
                            "n_variant": 12, "n_base": 14, "n_boot": 1000, "n_perm": 1000, "seed": ...,
                            "resampling": "roi points" | "seeds" | null},   # what the CI resampled
                    ...},
          "extension": {"level": 1.0, "needed": true,
                        "sides": [{"axis": "lr", "side": "high", "log10": -0.2, "value": 0.63,
                                   "index": 5 | null}, ...],
                        "new_lr_values": [...], "new_wd_values": [...],
                        "points": [[x, y], ...], "n_points": 9,
                        "edge_points": [[x, y], ...], "reason": null | "..."},
          "noise": {"std": 0.21 | null,              # percentage points (noise.py)
                    "source": "seeds" | "fit",       # "fit": one seed, quadratic residuals: an estimate
                    "estimate": false, "n_points_used": 81,
                    "within_noise_below": 0.42 | null,              # 2 x std
                    "roi_within_noise": {"0.5": false | true | null, "1.0": ...},   # x < 2 x std
                    "reason": null | "only 4 points in the 2.0-ROI; ...",
                    "n_boot": 1000 | 0, "ci_level": 0.95},
          "roi_membership": {"0.5": [freq, ...], "1.0": [...]} | null   # per landscape point, in
        }, ...                                                          # [0, 1]; null with one seed
      }
    }
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def level_key(level: float) -> str:
    """JSON key of an ROI level: ``0.5 -> "0.5"``, ``1 -> "1.0"``."""
    return repr(float(level))


def clean_list(values: Any) -> list[float | None]:
    """A 1-d array or sequence as a JSON list of floats (NaN -> None)."""
    arr = np.asarray(values, dtype=float)
    out = arr.tolist()
    if not np.isfinite(arr).all():
        out = [v if math.isfinite(v) else None for v in out]
    return out


def clean_matrix(values: Any) -> list[list[float | None]]:
    """A 2-d array as nested JSON lists (NaN -> None)."""
    arr = np.asarray(values, dtype=float)
    bad = ~np.isfinite(arr)
    if not bad.any():
        return arr.tolist()
    obj = arr.astype(object)
    obj[bad] = None
    return obj.tolist()


def clean_points(coords: np.ndarray) -> list[list[float]]:
    """An (n, 2) array of coordinates as ``[[x, y], ...]``."""
    return np.asarray(coords, dtype=float).reshape(-1, 2).tolist()


def _to_json(value: Any) -> Any:
    # Fields are JSON-ready by construction; this only walks dataclasses and containers of them.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if not value:
            return []
        first = value[0]
        if isinstance(first, list | tuple):
            # Nested lists of scalars (z, points, run ids, covariance), clean by construction:
            # copied without a per-element walk, which would dominate the time on a big study.
            return [list(v) for v in value]
        if isinstance(first, dict) or dataclasses.is_dataclass(first):
            return [_to_json(v) for v in value]
        return list(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return _to_json(self)


@dataclass(frozen=True)
class GridRecord(_Record):
    source: str  # "given" | "inferred"
    regular: bool
    lr_values: list[float]
    wd_values: list[float]
    lr_log: list[float]
    wd_log: list[float]
    lr_indices: list[int] | None
    wd_indices: list[int] | None
    step_lr: float | None
    step_wd: float | None
    centre: list[float] | None


@dataclass(frozen=True)
class LandscapePoints(_Record):
    x: list[float]
    y: list[float]
    wd: list[float]
    lr: list[float]
    mean: list[float]
    std: list[float | None]
    n: list[int]
    n_diverged: list[int]
    run_ids: list[list[Any]] | None


@dataclass(frozen=True)
class LandscapeRecord(_Record):
    variant: str
    metric: str
    x: list[float]
    y: list[float]
    wd_values: list[float]
    lr_values: list[float]
    z: list[list[float | None]]
    n_points: int
    n_runs: int
    points: LandscapePoints


@dataclass(frozen=True)
class BestRecord(_Record):
    value: float
    x: float
    y: float
    wd: float
    lr: float
    std: float | None
    n: int
    run_ids: list[Any] | None
    ties: list[list[float]]
    n_ties: int
    ci_low: float | None  # seed bootstrap of the best value (noise.py); None with one seed
    ci_high: float | None
    ci_level: float


@dataclass(frozen=True)
class RoiRecord(_Record):
    level: float
    threshold: float
    n_points: int
    points: list[list[float]]


@dataclass(frozen=True)
class EllipseRecord(_Record):
    level: float | None
    centre: list[float]
    centre_wd: float
    centre_lr: float
    length: float
    width: float
    angle_deg: float
    semi_axes: list[float]
    eigenvalues: list[float]
    covariance: list[list[float]]
    k: float
    alpha: float
    coverage: float
    n_points: int


@dataclass(frozen=True)
class RiskRecord(_Record):
    level: float
    best_value: float | None
    theta_r_size: int
    n: int
    missing: int
    mean: float | None
    std: float | None
    rel_mean: float | None
    rel_std: float | None
    quartiles: list[float] | None
    rel_quartiles: list[float] | None
    min: float | None
    max: float | None
    values: list[float]
    rel_values: list[float]
    points: list[list[float]]
    reason: str | None


@dataclass(frozen=True)
class ShiftRecord(_Record):
    level: float
    tested: bool
    reason: str | None
    delta: list[float] | None
    distance: float | None
    ci_low: list[float] | None
    ci_high: list[float] | None
    ci_level: float
    p_value: float | None
    alpha: float
    significant: bool
    verdict: str
    n_variant: int
    n_base: int
    n_boot: int
    n_perm: int
    seed: int | None
    resampling: str | None  # "roi points" | "seeds" (what the CI resampled); None when not tested


@dataclass(frozen=True)
class ExtensionSide(_Record):
    axis: str  # "lr" | "wd"
    side: str  # "low" | "high"
    log10: float
    value: float
    index: int | None


@dataclass(frozen=True)
class ExtensionRecord(_Record):
    level: float
    needed: bool
    sides: list[ExtensionSide]
    new_lr_values: list[float]
    new_wd_values: list[float]
    points: list[list[float]]
    n_points: int
    edge_points: list[list[float]]
    reason: str | None


@dataclass(frozen=True)
class ColourScale(_Record):
    min: float
    max: float
    percentile: float
    n_observations: int


@dataclass(frozen=True)
class NoiseRecord(_Record):
    std: float | None  # percentage points
    source: str  # "seeds" | "fit"
    estimate: bool  # True for "fit": a residual std, not a measurement over seeds
    n_points_used: int  # points with >= 2 seeds ("seeds"), or points of the 2.0-ROI fitted ("fit")
    within_noise_below: float | None  # 2 x std: ROI levels below it are within noise
    roi_within_noise: dict[str, bool | None]
    reason: str | None  # why std is None
    n_boot: int  # seed resamples behind best.ci_* and roi_membership; 0 with one seed
    ci_level: float


@dataclass(frozen=True)
class SummaryTable(_Record):
    columns: list[str]
    rows: list[dict[str, Any]]
    csv: str


@dataclass(frozen=True)
class VariantResult(_Record):
    variant: str
    n_runs: int
    n_diverged: int
    landscape: LandscapeRecord
    best: BestRecord | None
    roi: dict[str, RoiRecord]
    ellipse: dict[str, EllipseRecord | None]
    ellipse_reason: dict[str, str | None]
    risk: RiskRecord
    shift: dict[str, ShiftRecord]
    extension: ExtensionRecord
    noise: NoiseRecord
    roi_membership: dict[str, list[float]] | None  # aligned with landscape.points; None with one seed


@dataclass(frozen=True)
class AnalysisReport(_Record):
    metric: str
    metrics_available: list[str]
    base: str
    variants: list[str]
    roi_levels: list[float]
    k: float
    seed: int
    n_runs: int
    n_skipped: int
    warnings: list[str]
    grid: GridRecord
    colour_scale: ColourScale | None
    summary: SummaryTable
    results: dict[str, VariantResult]
