"""Performance risk of not retuning after compression (docs/spec.md section 5).

Theta_R = the base model's 0.5-ROI. For each theta in Theta_R where variant v has a result:

- d_theta = f_v(theta*_v) - f_v(theta) (percentage points, >= 0; a tie of the best within the
  tie tolerance of roi.py counts as 0);
- d^R_theta = d_theta / f_v(theta*_v) (a fraction: 0.01 means 1 % of v's best accuracy).

Reported: mean, population standard deviation, quartiles (numpy's linear interpolation:
q1, median, q3), min, max, the full lists (for box plots, in (lr, wd) order) and ``missing`` =
how many points of Theta_R have no result for v. The population standard deviation divides by
|Theta_R| when every point of Theta_R has a result (the study's case); while the grid is still
filling it divides by the number of points that do (``n = |Theta_R| - missing``), i.e. it is the
population standard deviation of the values that exist. For v = base, every d <= 0.5 by
construction (the base row of the study's table).
"""

from __future__ import annotations

import numpy as np

from backend.analysis.records import RiskRecord, clean_points
from backend.analysis.roi import TIE_TOL

RISK_LEVEL = 0.5


def _unavailable(
    reason: str, theta_r_size: int = 0, missing: int = 0, best: float | None = None
) -> RiskRecord:
    return RiskRecord(
        level=RISK_LEVEL,
        best_value=best,
        theta_r_size=theta_r_size,
        n=0,
        missing=missing,
        mean=None,
        std=None,
        rel_mean=None,
        rel_std=None,
        quartiles=None,
        rel_quartiles=None,
        min=None,
        max=None,
        values=[],
        rel_values=[],
        points=[],
        reason=reason,
    )


def performance_risk(
    best_value: float | None,
    values_on_theta_r: np.ndarray,
    theta_r_coords: np.ndarray | None = None,
) -> RiskRecord:
    """Risk from v's best value and v's values at the points of Theta_R (NaN = no result there)."""
    vals = np.asarray(values_on_theta_r, dtype=float).reshape(-1)
    coords = (
        np.zeros((len(vals), 2))
        if theta_r_coords is None
        else np.asarray(theta_r_coords, float).reshape(-1, 2)
    )
    size = len(vals)
    present = np.isfinite(vals)
    missing = int(size - present.sum())
    if size == 0:
        return _unavailable("the base model's 0.5-ROI is empty (no base results)")
    if best_value is None or not np.isfinite(best_value):
        return _unavailable("this variant has no results", size, missing)
    if not present.any():
        return _unavailable(
            "no result at any point of the base model's 0.5-ROI", size, missing, float(best_value)
        )
    if best_value <= 0:
        raise ValueError("the best accuracy must be > 0 for the relative risk")
    d = best_value - vals[present]
    # A tie of the best (within roi.TIE_TOL, the tie rule of the best point) is the best: d = 0,
    # not -1e-14 from the binary rounding of two accuracies that are equal to the tolerance.
    d[np.abs(d) <= TIE_TOL] = 0.0
    d_rel = d / best_value
    q = np.percentile(d, [25, 50, 75])
    q_rel = np.percentile(d_rel, [25, 50, 75])
    return RiskRecord(
        level=RISK_LEVEL,
        best_value=float(best_value),
        theta_r_size=size,
        n=int(present.sum()),
        missing=missing,
        mean=float(d.mean()),
        std=float(d.std()),  # ddof=0: population standard deviation
        rel_mean=float(d_rel.mean()),
        rel_std=float(d_rel.std()),
        quartiles=q.tolist(),
        rel_quartiles=q_rel.tolist(),
        min=float(d.min()),
        max=float(d.max()),
        values=d.tolist(),
        rel_values=d_rel.tolist(),
        points=clean_points(coords[present]),
        reason=None,
    )
