"""Best point and x-ROI (docs/spec.md section 5).

- Best: theta*_v = argmax f_v over the grid points where v has a result. Values within
  ``TIE_TOL`` (1e-9 percentage points) of the maximum are ties; all of them are reported and the
  chosen one is the tied point with the smallest lr, then the smallest wd (the cheapest, most
  conservative setting; deterministic and independent of the order of the rows).
- x-ROI: { theta : f_v(theta) >= f_v(theta*_v) - x }, x in percentage points, inclusive; the
  comparison allows ``TIE_TOL`` so that 92.7 is in the 0.5-ROI of 93.2 despite binary rounding.
"""

from __future__ import annotations

import numpy as np

from backend.analysis.records import RoiRecord, clean_points

TIE_TOL = 1e-9


def best_index(values: np.ndarray, coords: np.ndarray) -> tuple[int, np.ndarray]:
    """Index of theta* among ``values`` (n,) at ``coords`` (n, 2) = [x, y], and all tied indices.

    Tied indices are ordered by (lr, wd) ascending; the first is the chosen point.
    """
    values = np.asarray(values, dtype=float)
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if values.size == 0:
        raise ValueError("no results: the best point is undefined")
    top = values.max()
    tied = np.flatnonzero(values >= top - TIE_TOL)
    order = np.lexsort((coords[tied, 0], coords[tied, 1]))  # primary key: y = log10 lr
    tied = tied[order]
    return int(tied[0]), tied


def roi_mask(values: np.ndarray, level: float, best_value: float | None = None) -> np.ndarray:
    """Boolean mask of the x-ROI (x = ``level``) over ``values``."""
    values = np.asarray(values, dtype=float)
    if level < 0:
        raise ValueError(f"ROI level must be >= 0 percentage points, got {level}")
    if values.size == 0:
        return np.zeros(0, dtype=bool)
    top = float(values.max()) if best_value is None else float(best_value)
    return values >= top - level - TIE_TOL


def roi_record(values: np.ndarray, coords: np.ndarray, level: float) -> RoiRecord:
    """The x-ROI as a record: threshold and its points ``[[x, y], ...]``."""
    values = np.asarray(values, dtype=float)
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if values.size == 0:
        return RoiRecord(level=float(level), threshold=float("nan"), n_points=0, points=[])
    mask = roi_mask(values, level)
    return RoiRecord(
        level=float(level),
        threshold=float(values.max() - level),
        n_points=int(mask.sum()),
        points=clean_points(coords[mask]),
    )
