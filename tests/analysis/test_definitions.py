"""Every definition of docs/spec.md section 5 pinned with numbers worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.analysis import analyse, landscape_for
from backend.analysis.colour import colour_scale
from backend.analysis.ellipse import confidence_ellipse, ellipse_reason
from backend.analysis.extension import propose_extension
from backend.analysis.grid import GridSpec, build_axes
from backend.analysis.risk import performance_risk
from backend.analysis.roi import best_index, roi_mask, roi_record
from backend.analysis.table import table_from_rows


def row(variant, lr, wd, top1, seed=0, **extra):
    return {"variant": variant, "lr": lr, "wd": wd, "seed": seed, "top1": top1, **extra}


# --- landscape ---------------------------------------------------------------------------------


def test_landscape_mean_sample_std_counts_and_z_orientation():
    rows = [
        row("base", 0.1, 1e-4, 90.0, 0, run_id="a"),
        row("base", 0.1, 1e-4, 91.0, 1, run_id="b"),
        row("base", 0.1, 1e-4, 95.0, 2, status="diverged", run_id="c"),
        row("base", 0.1, 1e-3, 80.0, 0, run_id="d"),
        row("base", 1.0, 1e-4, 70.0, 0, run_id="e"),
    ]
    land = landscape_for(rows, "base").to_dict()
    # axes ascending, log10
    assert land["x"] == pytest.approx([-4.0, -3.0]) and land["y"] == pytest.approx([-1.0, 0.0])
    # rows = lr ascending, columns = wd ascending; (lr 1, wd 1e-3) was never run
    assert land["z"] == [[pytest.approx(92.0), pytest.approx(80.0)], [pytest.approx(70.0), None]]
    pts = land["points"]
    first = pts["x"].index(-4.0)
    assert pts["mean"][first] == pytest.approx(92.0)  # (90 + 91 + 95) / 3
    assert pts["std"][first] == pytest.approx(math.sqrt(7.0))  # (4 + 1 + 9) / (3 - 1)
    assert pts["n"][first] == 3 and pts["n_diverged"][first] == 1
    assert pts["run_ids"][first] == ["a", "b", "c"]
    assert pts["std"][pts["mean"].index(80.0)] is None  # one seed: no spread
    assert land["n_points"] == 3 and land["n_runs"] == 5


def test_landscape_top5_uses_only_runs_with_top5():
    rows = [row("base", 0.1, 1e-4, 90.0, 0, top5=99.0), row("base", 0.1, 1e-4, 92.0, 1)]
    land = landscape_for(rows, "base", "top5")
    assert land.points.mean == [99.0] and land.points.n == [1]
    assert landscape_for(rows, "base", "top1").points.mean == [91.0]


def test_landscape_for_unknown_variant_is_a_value_error():
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        landscape_for([row("base", 0.1, 1e-4, 90.0)], "nope")


# --- best point and ROI --------------------------------------------------------------------------


def test_best_ties_are_all_reported_and_the_smallest_lr_then_wd_is_chosen():
    coords = np.array([[-3.0, -1.0], [-2.0, -2.0], [-4.0, -2.0], [-4.0, -1.0]])  # [log10 wd, log10 lr]
    values = np.array([90.0, 90.0, 90.0, 89.0])
    chosen, tied = best_index(values, coords)
    assert chosen == 2  # lr 1e-2 (smallest), then wd 1e-4 (smaller than 1e-2)
    assert tied.tolist() == [2, 1, 0]
    # the order of the rows does not change the choice
    perm = [3, 1, 0, 2]
    chosen_p, _ = best_index(values[perm], coords[perm])
    assert coords[perm][chosen_p].tolist() == [-4.0, -2.0]


def test_best_record_in_analyse_reports_ties():
    rows = [row("base", 0.1, 1e-3, 90.0), row("base", 0.01, 1e-2, 90.0), row("base", 0.01, 1e-4, 90.0)]
    best = analyse(rows).results["base"].best
    assert (best.lr, best.wd, best.value, best.n_ties) == (0.01, 1e-4, 90.0, 3)
    assert sorted(map(tuple, best.ties)) == sorted([(-3.0, -1.0), (-2.0, -2.0), (-4.0, -2.0)])


def test_roi_is_inclusive_with_percentage_points():
    values = np.array([93.2, 92.7, 92.69, 92.2, 92.19])
    assert roi_mask(values, 0.5).tolist() == [True, True, False, False, False]
    assert roi_mask(values, 1.0).tolist() == [True, True, True, True, False]
    assert roi_mask(values, 0.0).tolist() == [True, False, False, False, False]
    rec = roi_record(values, np.arange(10.0).reshape(5, 2), 1.0)
    assert rec.threshold == pytest.approx(92.2) and rec.n_points == 4
    assert rec.points == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]]


# --- ellipse -------------------------------------------------------------------------------------


def test_ellipse_axis_aligned_by_hand():
    # centre (2, 1); deviations (+-2, +-1) and (0, 0): sxx = 16/4 = 4, syy = 4/4 = 1, sxy = 0
    pts = [[0, 0], [4, 0], [0, 2], [4, 2], [2, 1]]
    e = confidence_ellipse(pts, k=2.0)
    assert e.centre == [2.0, 1.0]
    assert e.covariance == [[4.0, 0.0], [0.0, 1.0]]  # n - 1 = 4, not n = 5 (which gives 3.2, 0.8)
    assert e.eigenvalues == [4.0, 1.0]
    assert e.semi_axes == [4.0, 2.0]  # k sqrt(l)
    assert (e.length, e.width, e.angle_deg) == (8.0, 4.0, 0.0)
    assert e.alpha == pytest.approx(0.1353352832) and e.coverage == pytest.approx(0.8646647168)
    assert e.n_points == 5 and e.centre_wd == pytest.approx(100.0) and e.centre_lr == pytest.approx(10.0)
    e1 = confidence_ellipse(pts, k=1.0)
    assert (e1.length, e1.width) == (4.0, 2.0) and e1.alpha == pytest.approx(math.exp(-0.5))


def test_ellipse_on_a_line_has_width_zero_and_the_line_angle():
    # y = x: sxx = syy = sxy = (4 + 1 + 0 + 1 + 4) / 4 = 2.5, l1 = 5, l2 = 0
    e = confidence_ellipse([[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]])
    assert e.width == 0.0 and e.length == pytest.approx(4 * math.sqrt(5))
    assert e.angle_deg == pytest.approx(45.0)
    # the same on a grid in log10 units, slope -1, not through the origin
    e = confidence_ellipse([[-4.0 + 0.2 * i, -1.0 - 0.2 * i] for i in range(6)])
    assert e.width == 0.0 and e.angle_deg == pytest.approx(-45.0)
    # vertical (constant wd): the major axis is the lr axis
    e = confidence_ellipse([[-4.0, -1.0 + 0.2 * i] for i in range(5)])
    assert e.width == 0.0 and e.angle_deg == pytest.approx(90.0)


def test_fewer_than_five_points_give_no_ellipse_and_a_reason():
    assert confidence_ellipse([[0, 0], [1, 0], [0, 1], [1, 1]]) is None
    assert ellipse_reason(4, 0.5) == "only 4 points in the 0.5-ROI; an ellipse needs at least 5"
    assert ellipse_reason(1, 1.0).startswith("only 1 point in")
    assert ellipse_reason(5, 0.5) is None
    # in analyse(): a single-point ROI gives null with the reason
    rows = [row("base", 10 ** (-1 + 0.2 * i), 1e-4, 90.0 - 2 * i) for i in range(6)]
    res = analyse(rows).to_dict()["results"]["base"]
    assert res["ellipse"]["0.5"] is None and "only 1 point" in res["ellipse_reason"]["0.5"]


# --- performance risk ----------------------------------------------------------------------------


def test_risk_by_hand_population_std_over_theta_r():
    r = performance_risk(90.0, np.array([90.0, 89.0, 88.0, 85.0]))
    assert r.values == [0.0, 1.0, 2.0, 5.0]
    assert r.mean == 2.0
    assert r.std == pytest.approx(math.sqrt((4 + 1 + 0 + 9) / 4))  # |Theta_R| = 4, not 3
    assert r.quartiles == pytest.approx([0.75, 1.5, 2.75])  # linear interpolation
    assert r.rel_values == pytest.approx([0.0, 1 / 90, 2 / 90, 5 / 90])
    assert r.rel_mean == pytest.approx(2 / 90) and r.rel_std == pytest.approx(math.sqrt(3.5) / 90)
    assert (r.n, r.missing, r.theta_r_size, r.min, r.max) == (4, 0, 4, 0.0, 5.0)


def test_risk_counts_missing_points():
    r = performance_risk(90.0, np.array([90.0, np.nan, 89.0, 88.0, np.nan]))
    assert (r.n, r.missing, r.theta_r_size) == (3, 2, 5)
    assert r.mean == 1.0 and r.std == pytest.approx(math.sqrt(2 / 3))
    assert r.quartiles == pytest.approx([0.5, 1.0, 1.5])
    nothing = performance_risk(90.0, np.array([np.nan, np.nan]))
    assert nothing.mean is None and nothing.missing == 2 and nothing.reason


def test_risk_in_analyse_uses_the_base_half_roi():
    # base: best 92.0 at lr 0.1; its 0.5-ROI = {lr 0.1 (92.0), lr 0.158 (91.6)}; lr 0.251 (91.0) is out
    lrs = [0.1, 0.1 * 10**0.2, 0.1 * 10**0.4]
    rows = [row("base", lr, 1e-4, v) for lr, v in zip(lrs, [92.0, 91.6, 91.0], strict=True)]
    rows += [row("u", lrs[0], 1e-4, 88.0), row("u", lrs[2], 1e-4, 90.0)]  # u has no result at lrs[1]
    res = analyse(rows).results
    base_risk, u_risk = res["base"].risk, res["u"].risk
    assert base_risk.values == pytest.approx([0.0, 0.4]) and base_risk.max <= 0.5
    assert (u_risk.theta_r_size, u_risk.n, u_risk.missing) == (2, 1, 1)
    assert u_risk.values == pytest.approx([2.0]) and u_risk.rel_values == pytest.approx([2.0 / 90.0])


# --- extension -----------------------------------------------------------------------------------


def _grid_rows(values_by_index, size=3, step=0.2):
    rows = []
    for (i, j), v in values_by_index.items():
        rows.append(row("base", 0.1 * 10 ** (step * i), 1e-4 * 10 ** (step * j), v))
    return rows


def test_no_extension_when_the_roi_is_enclosed():
    vals = {(i, j): 80.0 for i in (-1, 0, 1) for j in (-1, 0, 1)}
    vals[(0, 0)] = 90.0
    ext = analyse(_grid_rows(vals)).results["base"].extension
    assert not ext.needed and ext.sides == [] and ext.points == []


def test_extension_on_the_high_lr_and_high_wd_corner_by_hand():
    vals = {(i, j): 80.0 for i in (-1, 0, 1) for j in (-1, 0, 1)}
    vals[(1, 1)] = 90.0
    grid = {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.2, "size": 3}
    ext = analyse(_grid_rows(vals), grid=grid).results["base"].extension
    assert ext.needed
    assert [(s.axis, s.side, s.index) for s in ext.sides] == [("lr", "high", 2), ("wd", "high", 2)]
    assert ext.new_lr_values == pytest.approx([0.1 * 10**0.4])
    assert ext.new_wd_values == pytest.approx([1e-4 * 10**0.4])
    # new lr row over 3 old + 1 new wd values, new wd column over 3 old lr values: 4 + 3 = 7
    assert ext.n_points == 7
    assert [-3.6, -0.6] in [[round(x, 6), round(y, 6)] for x, y in ext.points]
    assert [[round(x, 6), round(y, 6)] for x, y in ext.edge_points] == [[-3.8, -0.8]]


def test_extension_uses_the_given_grid_edge_not_the_observed_one():
    # 5x5 grid planned, only the centre 3x3 ran: an ROI point at i = 1 is not on the grid's edge
    vals = {(i, j): 80.0 for i in (-1, 0, 1) for j in (-1, 0, 1)}
    vals[(1, 1)] = 90.0
    ext = analyse(_grid_rows(vals), grid={"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.2, "size": 5})
    assert not ext.results["base"].extension.needed
    assert len(ext.grid.lr_values) == 5
    land = ext.results["base"].landscape
    assert land.z[0] == [None] * 5 and land.z[2][2] == pytest.approx(80.0)


def test_propose_extension_low_side_and_grid_inference():
    table = table_from_rows(_grid_rows({(i, j): 80.0 for i in (-1, 0, 1) for j in (-1, 0, 1)}))
    axes = build_axes(table)
    assert axes.lr.step == pytest.approx(0.2) and axes.lr.indices.tolist() == [-1, 0, 1]
    ext = propose_extension(np.array([0]), np.array([1]), axes.lr, axes.wd)
    assert [(s.axis, s.side, s.index) for s in ext.sides] == [("lr", "low", -2)]
    assert ext.sides[0].log10 == pytest.approx(-1.4) and ext.n_points == 3


def test_grid_spec_with_extension_indices():
    spec = GridSpec.from_dict(
        {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.2, "size": 3, "extra_lr_indices": [2]}
    )
    assert spec.indices("lr") == (-1, 0, 1, 2) and spec.indices("wd") == (-1, 0, 1)
    with pytest.raises(ValueError, match="unknown keys"):
        GridSpec.from_dict({"lr_centre": 0.1, "wd_centre": 1e-4, "stride": 1})


# --- colour scale --------------------------------------------------------------------------------


def test_colour_scale_85th_percentile_to_max_by_hand():
    cs = colour_scale(np.arange(1.0, 21.0))  # 20 values: position 0.85 * 19 = 16.15 -> 17.15
    assert (cs.min, cs.max, cs.percentile, cs.n_observations) == (pytest.approx(17.15), 20.0, 85.0, 20)
    assert colour_scale(np.arange(1.0, 21.0), 50.0).min == pytest.approx(10.5)
    assert colour_scale(np.array([np.nan])) is None


def test_colour_scale_is_study_wide_over_all_runs():
    rows = [row("base", 0.1, 1e-4, v, seed=s) for s, v in enumerate([10.0, 20.0, 30.0])]
    rows += [row("u", 0.1, 1e-4, 40.0)]
    cs = analyse(rows, colour_floor_percentile=50.0).colour_scale
    assert (cs.min, cs.max, cs.n_observations) == (25.0, 40.0, 4)  # median of 10, 20, 30, 40
