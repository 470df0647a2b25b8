"""Seed noise (docs/spec.md section 7), pinned with numbers worked by hand: the noise from seeds and from
the quadratic fit, within-noise ROIs, the best-point bootstrap CI, ROI membership frequencies and
the seed-resampled shift test."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from backend.analysis import analyse
from backend.analysis.noise import fit_noise, resample_seed_means, seeds_noise
from backend.analysis.report import _stream
from backend.analysis.shift import shift_test


def rows_of(variant, seeds_by_point, wd0=1e-4, lr0=0.1, step=0.2):
    """Rows from {(i, j): [value per seed]}: lr = lr0 * 10**(step i), wd = wd0 * 10**(step j)."""
    rows = []
    for (i, j), values in seeds_by_point.items():
        for seed, value in enumerate(values):
            rows.append(
                {"variant": variant, "lr": lr0 * 10 ** (step * i), "wd": wd0 * 10 ** (step * j),
                 "seed": seed, "top1": value}
            )  # fmt: skip
    return rows


def at(points, i, j, y0=-1.0, x0=-4.0, step=0.2):
    """Index of grid point (i, j) in landscape.points."""
    for p, (x, y) in enumerate(zip(points.x, points.y, strict=True)):
        if abs(x - (x0 + step * j)) < 1e-9 and abs(y - (y0 + step * i)) < 1e-9:
            return p
    raise KeyError((i, j))


# --- three seeds, by hand ------------------------------------------------------------------------
#
# Four points along lr (one wd). A has one seed (its other runs have not finished): it keeps its
# value in every resample and is left out of the median. B's three seeds are 93.45, 96, 96, so a
# resample draws k of its three values as 96, k ~ Binomial(3, 2/3):
#   k = 0: 93.45 (1/27), k = 1: 94.30 (6/27), k = 2: 95.15 (12/27), k = 3: 96.00 (8/27).
# The best of a resample is 95.2 (A) unless k = 3 (B, 96.0): P = 19/27 and 8/27.
THREE_SEEDS = {
    (0, 0): [95.2],  # A
    (1, 0): [93.45, 96.0, 96.0],  # B: mean 95.15, std sqrt((1.7^2 + 2 * 0.85^2) / 2) = 1.4722
    (2, 0): [90.7, 91.0, 91.3],  # C: std 0.3
    (-1, 0): [80.0, 80.4, 80.8],  # D: std 0.4
}


@pytest.fixture(scope="module")
def three_seeds():
    return analyse(rows_of("base", THREE_SEEDS)).results["base"]


def test_noise_is_the_median_of_the_per_point_seed_std(three_seeds):
    pts = three_seeds.landscape.points
    b = at(pts, 1, 0)
    assert pts.mean[b] == pytest.approx(95.15) and pts.n[b] == 3
    assert pts.std[b] == pytest.approx(math.sqrt((1.7**2 + 2 * 0.85**2) / 2))  # 1.4722
    assert pts.std[at(pts, 0, 0)] is None  # one seed: no spread
    noise = three_seeds.noise
    # median of {1.4722, 0.3, 0.4} over the 3 points with >= 2 seeds; A is not one of them
    assert noise.std == pytest.approx(0.4) and noise.n_points_used == 3
    assert (noise.source, noise.estimate, noise.reason) == ("seeds", False, None)
    assert noise.within_noise_below == pytest.approx(0.8)
    # within noise when x < 2 x 0.4 = 0.8
    assert noise.roi_within_noise == {"0.5": True, "1.0": False}
    assert noise.n_boot == 1000 and noise.ci_level == 0.95


def test_best_point_ci_is_forced_by_the_seeds(three_seeds):
    best = three_seeds.best
    assert (best.value, best.y, best.n) == (95.2, pytest.approx(-1.0), 1)  # A beats B's mean 95.15
    # the resampled best is 95.2 (P = 19/27) or 96.0 (P = 8/27): both tails are far beyond 2.5 %
    assert (best.ci_low, best.ci_high, best.ci_level) == (pytest.approx(95.2), pytest.approx(96.0), 0.95)


def test_roi_membership_frequencies(three_seeds):
    pts, member = three_seeds.landscape.points, three_seeds.roi_membership
    a, b, c, d = at(pts, 0, 0), at(pts, 1, 0), at(pts, 2, 0), at(pts, -1, 0)
    assert set(member) == {"0.5", "1.0"} and all(len(m) == len(pts.x) for m in member.values())
    # 1.0-ROI. A: 95.2 >= 96.0 - 1 even when B is best: always in. C (<= 91.3) and D never.
    assert member["1.0"][a] == 1.0 and member["1.0"][c] == 0.0 and member["1.0"][d] == 0.0
    # B is out only when k = 0 (93.45 < 95.2 - 1 = 94.2; k = 1 gives 94.3, in): 26/27
    assert member["1.0"][b] == pytest.approx(26 / 27, abs=0.03)
    # 0.5-ROI. A is out only when B reaches 96.0 (95.2 < 95.5): 19/27. B needs k >= 2
    # (95.15 >= 94.7; 94.3 is not): 20/27.
    assert member["0.5"][a] == pytest.approx(19 / 27, abs=0.05)
    assert member["0.5"][b] == pytest.approx(20 / 27, abs=0.05)
    assert member["0.5"][c] == 0.0 and member["0.5"][d] == 0.0
    # the observed ROIs, for comparison: A and B in both
    assert three_seeds.roi["0.5"].n_points == 2 and three_seeds.roi["1.0"].n_points == 2


def test_a_far_point_changes_nothing_and_row_order_changes_nothing(three_seeds):
    # a diverged corner with many seeds can be in no ROI: it is not resampled and moves no number
    with_far = {**THREE_SEEDS, (-2, 0): [10.0, 12.0, 30.0, 11.0]}
    res = analyse(rows_of("base", with_far)).results["base"]
    assert (res.best.ci_low, res.best.ci_high) == (three_seeds.best.ci_low, three_seeds.best.ci_high)
    far = at(res.landscape.points, -2, 0)
    for key, freq in res.roi_membership.items():
        assert freq[far] == 0.0
        assert freq[:far] + freq[far + 1 :] == three_seeds.roi_membership[key]
    # seeds are taken in seed order within a point, whatever the order of the rows
    rows = rows_of("base", THREE_SEEDS)
    random.Random(3).shuffle(rows)
    shuffled = analyse(rows).results["base"]
    assert shuffled.roi_membership == three_seeds.roi_membership and shuffled.best == three_seeds.best


def test_resampled_means_keep_single_seed_points_and_stay_within_the_seeds():
    rng = np.random.default_rng(0)
    values = np.array([5.0, 1.0, 2.0, 5.0, 7.0, 7.0])  # points: [5], [1, 2, 5], [7, 7]
    counts = np.array([1, 3, 2])
    means = resample_seed_means(values, counts, np.array([5.0, 8 / 3, 7.0]), rng, n_boot=500)
    assert means.shape == (500, 3)
    assert np.all(means[:, 0] == 5.0) and np.all(means[:, 2] == 7.0)
    # a mean of 3 draws from {1, 2, 5}: the 10 multisets have 10 different sums (3, 4, 5, 6, 7,
    # 8, 9, 11, 12, 15), the rarest has P = 1/27: all occur in 500 resamples
    assert means[:, 1].min() == pytest.approx(1.0) and means[:, 1].max() == pytest.approx(5.0)
    assert sorted(np.unique(np.round(3 * means[:, 1], 9))) == [3, 4, 5, 6, 7, 8, 9, 11, 12, 15]
    assert means[:, 1].mean() == pytest.approx(8 / 3, abs=0.15)
    assert resample_seed_means(values[:1], counts[:1], values[:1], rng) is None  # nothing to resample


def test_seeds_noise_ignores_single_seed_points():
    assert seeds_noise(np.array([np.nan, 0.2, 0.6, 0.3]), np.array([1, 2, 3, 2])) == (pytest.approx(0.3), 3)
    assert seeds_noise(np.array([np.nan, np.nan]), np.array([1, 1])) == (None, 0)


# --- one seed, by hand ---------------------------------------------------------------------------
#
# A 3x3 block around the best point on the quadratic f = 93 - 10 (x + 4)^2 - 20 (y + 1)^2 plus the
# residuals e = c P2(i) P2(j), P2 = (1, -2, 1) on i = -1, 0, 1: corners +c, edges -2c, centre +4c.
# P2(i) P2(j) is orthogonal to 1, i, j, i^2, ij, j^2 on this block, so least squares recovers the
# quadratic exactly and its residuals are e. With c = 0.1:
#   RSS = 4 (0.1)^2 + 4 (0.2)^2 + (0.4)^2 = 0.04 + 0.16 + 0.16 = 0.36,
#   residual std = sqrt(RSS / (9 - 6)) = sqrt(0.12) = 0.34641.
# The best point is the centre (93.4), the 2.0-ROI is f >= 91.4: the block (lowest corner 91.9)
# and none of the outer ring (<= 86), whose values are off the quadratic and would spoil the fit.
C = 0.1


def _one_seed_block():
    p2 = {-1: 1, 0: -2, 1: 1}
    values = {}
    for i in range(-2, 3):
        for j in range(-2, 3):
            if abs(i) <= 1 and abs(j) <= 1:
                x, y = 0.2 * j, 0.2 * i  # offsets from the best point in log10 units
                values[(i, j)] = [93 - 10 * x**2 - 20 * y**2 + C * p2[i] * p2[j]]
            else:
                values[(i, j)] = [86.0 - 0.37 * i - 0.11 * j**3 - abs(i * j)]
    return values


def test_one_seed_noise_is_the_residual_std_of_the_quadratic_fit():
    res = analyse(rows_of("base", _one_seed_block())).results["base"]
    noise = res.noise
    assert noise.std == pytest.approx(math.sqrt(0.12), rel=1e-9)  # 0.34641
    assert (noise.source, noise.estimate, noise.n_points_used, noise.reason) == ("fit", True, 9, None)
    assert noise.roi_within_noise == {"0.5": True, "1.0": False}  # 2 x 0.3464 = 0.693
    assert noise.n_boot == 0
    # with one seed there is nothing to resample: no CI, no membership
    assert res.best.ci_low is None and res.best.ci_high is None and res.roi_membership is None
    assert res.best.value == pytest.approx(93.4)
    d = analyse(rows_of("base", _one_seed_block())).to_dict()
    json.dumps(d, allow_nan=False)
    assert d["results"]["base"]["noise"]["source"] == "fit"
    assert d["results"]["base"]["best"]["ci_low"] is None and d["results"]["base"]["roi_membership"] is None


def test_fit_noise_exact_quadratic_too_few_points_and_a_line():
    xy = np.array([[0.2 * j, 0.2 * i] for i in (-1, 0, 1) for j in (-1, 0, 1)]) + [-4.0, -1.0]
    f = 93 - 3 * (xy[:, 0] + 4) ** 2 - 5 * (xy[:, 1] + 1) ** 2 + 2 * (xy[:, 0] + 4) * (xy[:, 1] + 1)
    std, n, reason = fit_noise(f, xy)
    assert std == pytest.approx(0.0, abs=1e-9) and n == 9 and reason is None
    std, n, reason = fit_noise(f[:6], xy[:6])
    assert std is None and n == 6
    assert reason == (
        "only 6 points in the 2.0-ROI; a quadratic fit in (log10 wd, log10 lr) needs at least 7 "
        "(6 terms + 1 for the residual)"
    )
    line = np.column_stack([np.full(9, -4.0), -1.0 + 0.1 * np.arange(9)])  # one wd: no x terms
    std, n, reason = fit_noise(np.full(9, 93.0), line)
    assert std is None and n == 9 and "do not determine a quadratic" in reason
    assert fit_noise(np.empty(0), np.empty((0, 2))) == (None, 0, "no results")


def test_no_noise_estimate_says_why_and_within_noise_is_unknown():
    rows = rows_of("base", {(i, 0): [93.0 - 0.1 * i] for i in range(4)})  # 4 points, one wd
    noise = analyse(rows).results["base"].noise
    assert noise.std is None and noise.source == "fit" and noise.within_noise_below is None
    assert noise.roi_within_noise == {"0.5": None, "1.0": None}
    assert noise.reason.startswith("only 4 points in the 2.0-ROI")


# --- the shift test with seeds -------------------------------------------------------------------
#
# Base: a 3x3 block (lr i = -1..1, wd j = -1..1) at 92.8..93.1 over three seeds, everything else at
# 80: its 1.0-ROI is the block in every resample. Variant: the block moved up two lr steps
# (i = 1..3) with constant seeds 92.0, and a borderline point E at (4, 0) with seeds 90.5, 91.5,
# 91.5: a resample has k ~ Binomial(3, 2/3) of E's seeds at 91.5 and E's mean 90.5 + k / 3 is in the
# 1.0-ROI (>= 91.0) when k >= 2: P = 20/27. The variant's 1.0-ROI centre is therefore
# y0 + 0.4 (block alone, P = 7/27) or (9 (y0 + 0.4) + (y0 + 0.8)) / 10 = y0 + 0.44 (with E), x = x0:
# delta = [0, 0.40] or [0, 0.44], both far beyond the 2.5 % tails, so the seed CI is exactly
# [0, 0.40] .. [0, 0.44]; the observed ROI holds E (mean 91.17), delta = [0, 0.44].


def _shift_study():
    base, variant = {}, {}
    for i in range(-2, 6):
        for j in range(-2, 3):
            in_block = abs(j) <= 1 and -1 <= i <= 1
            base[(i, j)] = (
                [92.8 + 0.1 * (i + 1), 93.0, 92.9 + 0.1 * abs(j)] if in_block else [80.0, 80.1, 79.9]
            )
            variant[(i, j)] = [92.0] * 3 if abs(j) <= 1 and 1 <= i <= 3 else [80.0, 80.2, 79.8]
    variant[(4, 0)] = [90.5, 91.5, 91.5]
    return rows_of("base", base) + rows_of("v", variant)


@pytest.fixture(scope="module")
def shift_study():
    return analyse(_shift_study())


def test_seed_resampled_shift_ci_by_hand(shift_study):
    res = shift_study.results["v"]
    shift = res.shift["1.0"]
    assert shift.tested and shift.resampling == "seeds" and shift.n_boot == 1000
    assert shift.delta == pytest.approx([0.0, 0.44]) and res.roi["1.0"].n_points == 10
    assert shift.ci_low == pytest.approx([0.0, 0.40]) and shift.ci_high == pytest.approx([0.0, 0.44])
    e = at(res.landscape.points, 4, 0)
    assert res.roi_membership["1.0"][e] == pytest.approx(20 / 27, abs=0.05)
    assert shift.significant and shift.verdict == "shift towards larger lr"


def test_seed_resampling_changes_the_ci_not_the_p_value(shift_study):
    v, base = shift_study.results["v"], shift_study.results["base"]
    seeds = v.shift["1.0"]
    points = shift_test(
        np.array(v.roi["1.0"].points), np.array(base.roi["1.0"].points), level=1.0, seed=0,
        stream=_stream("v", 1.0),
    )  # fmt: skip
    assert points.resampling == "roi points" and points.delta == seeds.delta
    # resampling ROI points moves the centres sideways too; resampling seeds cannot (x is fixed)
    assert points.ci_low[0] < -0.05 and points.ci_high[0] > 0.05
    assert points.ci_low != seeds.ci_low and points.ci_high != seeds.ci_high
    # the permutation test is the same test with the same draws
    assert points.p_value == seeds.p_value and points.n_perm == seeds.n_perm


def test_seed_resampled_shift_is_deterministic_and_per_variant(shift_study):
    rows = _shift_study()
    again = analyse(rows).results["v"]
    assert again.shift == shift_study.results["v"].shift
    assert again.roi_membership == shift_study.results["v"].roi_membership
    other_seed = analyse(rows, seed=5).results["v"]
    assert other_seed.roi_membership != again.roi_membership  # the seed drives the resampling ...
    assert other_seed.shift["1.0"].ci_low == pytest.approx(again.shift["1.0"].ci_low)  # ... forced CI
    extra = [dict(r, variant="w") for r in rows if r["variant"] == "v"]
    with_other = analyse(rows + extra).results["v"]
    assert with_other.shift == again.shift and with_other.best == again.best


def test_shift_resamples_roi_points_unless_both_sides_have_seeds():
    rows = _shift_study()
    one_seed_base = [r for r in rows if r["variant"] != "base" or r["seed"] == 0]
    res = analyse(one_seed_base).results
    assert res["base"].best.ci_low is None and res["v"].best.ci_low is not None
    assert res["v"].shift["1.0"].resampling == "roi points"
    assert res["base"].shift["1.0"].resampling is None  # the base is not tested against itself


def test_summary_table_has_the_noise_and_ci_columns(shift_study):
    summary = shift_study.summary
    for column in ("best_ci_low", "best_ci_high", "noise_std", "noise_source", "roi_0.5_within_noise"):
        assert column in summary.columns
    row = {r["variant"]: r for r in summary.rows}["v"]
    assert (row["best_ci_low"], row["best_ci_high"]) == (pytest.approx(92.0), pytest.approx(92.0))
    # v's 40 points, all with 3 seeds: 30 at 80 +- 0.2 (std 0.2), 9 at 92.0 (std 0), E (std 0.577)
    assert row["noise_std"] == pytest.approx(0.2) and row["noise_source"] == "seeds"
    assert row["roi_0.5_within_noise"] is False and row["roi_1.0_within_noise"] is False
    header = summary.csv.splitlines()[0].split(",")
    assert header == summary.columns
