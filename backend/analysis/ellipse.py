"""Confidence ellipse of an x-ROI (docs/spec.md section 5).

Only when the ROI has at least ``MIN_POINTS`` = 5 points. With the points p_i = (log10 wd,
log10 lr):

- centre = mean of the points;
- Sigma = sample covariance (denominator n - 1);
- eigenvalues l1 >= l2 of Sigma (closed form for a symmetric 2x2 matrix; l2 is clipped at 0 against
  rounding, so points on a line give width exactly 0);
- semi-axes k*sqrt(l1), k*sqrt(l2); length = 2*k*sqrt(l1), width = 2*k*sqrt(l2) in log10 units;
- angle of the major axis, counter-clockwise from the +x (log10 wd) axis, in (-90, 90] degrees:
  0.5 * atan2(2 * s_xy, s_xx - s_yy) (0 for a circle);
- confidence level alpha = exp(-k^2 / 2) (0.1353 for k = 2), coverage 1 - alpha (86.47 %): the
  mass of a 2-d normal inside k standard deviations.
"""

from __future__ import annotations

import math

import numpy as np

from backend.analysis.records import EllipseRecord

MIN_POINTS = 5


def ellipse_reason(n_points: int, level: float | None = None) -> str | None:
    """Why there is no ellipse (``None`` when there is one)."""
    if n_points >= MIN_POINTS:
        return None
    roi = "the ROI" if level is None else f"the {float(level)!r}-ROI"
    return f"only {n_points} point{'s' if n_points != 1 else ''} in {roi}; an ellipse needs at least {MIN_POINTS}"


def confidence_ellipse(
    points: np.ndarray, *, k: float = 2.0, level: float | None = None
) -> EllipseRecord | None:
    """The k-sigma ellipse of ``points`` (n, 2) = [[log10 wd, log10 lr], ...]; ``None`` when n < 5."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    n = len(pts)
    if n < MIN_POINTS:
        return None
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"k must be a positive number of standard deviations, got {k}")
    centre = pts.mean(axis=0)
    dev = pts - centre
    sxx = float(dev[:, 0] @ dev[:, 0]) / (n - 1)
    syy = float(dev[:, 1] @ dev[:, 1]) / (n - 1)
    sxy = float(dev[:, 0] @ dev[:, 1]) / (n - 1)
    half_trace = 0.5 * (sxx + syy)
    radius = math.hypot(0.5 * (sxx - syy), sxy)
    l1 = half_trace + radius
    l2 = max(half_trace - radius, 0.0)
    if l2 <= 1e-12 * l1:
        l2 = 0.0  # collinear points: exactly zero width, not rounding noise
    angle = 0.5 * math.degrees(math.atan2(2.0 * sxy, sxx - syy))
    if angle <= -90.0:
        angle += 180.0
    a, b = k * math.sqrt(l1), k * math.sqrt(l2)
    alpha = math.exp(-(k**2) / 2.0)
    return EllipseRecord(
        level=None if level is None else float(level),
        centre=[float(centre[0]), float(centre[1])],
        centre_wd=float(10.0 ** centre[0]),
        centre_lr=float(10.0 ** centre[1]),
        length=2.0 * a,
        width=2.0 * b,
        angle_deg=float(angle),
        semi_axes=[a, b],
        eigenvalues=[l1, l2],
        covariance=[[sxx, sxy], [sxy, syy]],
        k=float(k),
        alpha=alpha,
        coverage=1.0 - alpha,
        n_points=n,
    )
