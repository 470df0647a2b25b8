"""Invariants, checked on generated inputs (bounded example counts: the machine is small)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from backend.analysis import analyse
from backend.analysis.ellipse import confidence_ellipse
from backend.analysis.roi import roi_mask

accuracies = arrays(np.float64, st.integers(1, 40), elements=st.floats(0, 100, allow_nan=False))
coords = st.floats(-6, 1, allow_nan=False).map(lambda v: round(v, 1))  # grid-like log10 values
point_sets = st.lists(st.tuples(coords, coords), min_size=5, max_size=30, unique=True).map(
    lambda pts: np.array(pts, dtype=float)
)


@settings(max_examples=60, deadline=None)
@given(accuracies, st.floats(0, 10), st.floats(0, 10))
def test_roi_x_is_a_subset_of_roi_y_for_x_le_y(values, a, b):
    x, y = min(a, b), max(a, b)
    small, large = roi_mask(values, x), roi_mask(values, y)
    assert not np.any(small & ~large)
    assert small[np.argmax(values)]  # the best point is in every ROI


@settings(max_examples=40, deadline=None)
@given(point_sets, st.randoms(use_true_random=False))
def test_ellipse_is_invariant_to_the_order_of_points(points, rnd):
    order = list(range(len(points)))
    rnd.shuffle(order)
    a, b = confidence_ellipse(points), confidence_ellipse(points[order])
    assert a.centre == pytest.approx(b.centre, abs=1e-12)
    assert (a.length, a.width) == pytest.approx((b.length, b.width), abs=1e-9)
    assert a.covariance == [pytest.approx(r, abs=1e-12) for r in b.covariance]
    if a.length - a.width > 1e-6:  # the angle of a circle is arbitrary
        assert a.angle_deg == pytest.approx(b.angle_deg, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(point_sets, st.floats(-3, 3), st.floats(-3, 3))
def test_shifting_every_point_shifts_the_centre_by_the_same_amount(points, dx, dy):
    a, b = confidence_ellipse(points), confidence_ellipse(points + [dx, dy])
    assert b.centre == pytest.approx([a.centre[0] + dx, a.centre[1] + dy], abs=1e-9)
    assert (b.length, b.width) == pytest.approx((a.length, a.width), abs=1e-7)
    assert b.covariance == [pytest.approx(r, abs=1e-9) for r in a.covariance]


@settings(max_examples=15, deadline=None)
@given(arrays(np.float64, (4, 4), elements=st.floats(50, 95, allow_nan=False)))
def test_risk_of_the_base_on_itself_is_at_most_half_a_point(landscape):
    rows = [
        {"variant": "base", "lr": 10.0 ** (-2 + 0.2 * i), "wd": 10.0 ** (-5 + 0.2 * j), "seed": 0, "top1": v}
        for (i, j), v in np.ndenumerate(landscape)
    ]
    report = analyse(rows)
    risk = report.results["base"].risk
    assert risk.n == report.results["base"].roi["0.5"].n_points and risk.missing == 0
    assert risk.min >= 0.0 and risk.max <= 0.5 + 1e-9


@settings(max_examples=15, deadline=None)
@given(arrays(np.float64, (3, 3, 3), elements=st.floats(80, 95, allow_nan=False)))
def test_seed_bootstrap_stays_within_the_seeds_and_nests_the_rois(seeds):
    rows = [
        {"variant": "base", "lr": 10.0 ** (-2 + 0.2 * i), "wd": 10.0 ** (-5 + 0.2 * j), "seed": s, "top1": v}
        for (i, j, s), v in np.ndenumerate(seeds)
    ]
    res = analyse(rows).results["base"]
    # every resample's best lies between the highest lowest-seed and the highest seed
    floor, top = seeds.min(axis=2).max(), seeds.max()
    assert floor - 1e-9 <= res.best.ci_low <= res.best.ci_high <= top + 1e-9
    small, large = np.array(res.roi_membership["0.5"]), np.array(res.roi_membership["1.0"])
    assert np.all((small >= 0) & (small <= large) & (large <= 1))  # the same resamples for both levels
    assert res.noise.source == "seeds" and res.noise.n_points_used == 9
