"""The shift test: statistic by hand, p-value against exact enumeration, reproducibility, words."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from backend.analysis import analyse
from backend.analysis.shift import shift_test, verdict_words
from backend.analysis.synthetic import SyntheticVariant, synthetic_rows

BLOCK = np.array([[x, y] for x in (-4.2, -4.0, -3.8) for y in (-1.2, -1.0, -0.8)])  # 3 x 3 grid points


def test_delta_is_variant_minus_base_centre_by_hand():
    moved = BLOCK + [0.0, 0.4]
    res = shift_test(moved, BLOCK, level=1.0, seed=3)
    assert res.tested and res.delta == pytest.approx([0.0, 0.4]) and res.distance == pytest.approx(0.4)
    # the two blocks overlap in one row only: every other split is closer, p is tiny
    assert res.p_value < 0.01 and res.significant
    assert res.ci_low[1] > 0 and res.ci_low[0] < 0 < res.ci_high[0]
    assert res.verdict == "shift towards larger lr"
    assert (res.n_variant, res.n_base, res.n_perm, res.n_boot) == (9, 9, 1000, 1000)


def test_identical_rois_give_p_one_and_no_shift():
    res = shift_test(BLOCK, BLOCK[::-1])
    assert res.delta == pytest.approx([0.0, 0.0]) and res.p_value == 1.0
    assert not res.significant and res.verdict == "no significant shift"


def test_permutation_p_value_matches_exact_enumeration():
    rng = np.random.default_rng(11)
    pv = rng.normal(size=(5, 2)) + [0.6, 0.0]
    pb = rng.normal(size=(5, 2))
    pooled = np.vstack([pv, pb])
    t_obs = np.hypot(*(pv.mean(0) - pb.mean(0)))
    splits = list(itertools.combinations(range(10), 5))
    t_all = []
    for chosen in splits:
        mask = np.zeros(10, bool)
        mask[list(chosen)] = True
        t_all.append(np.hypot(*(pooled[mask].mean(0) - pooled[~mask].mean(0))))
    exact = np.mean(np.array(t_all) >= t_obs - 1e-12)
    assert 0.05 < exact < 0.9  # a case where the p-value is neither 0 nor 1
    res = shift_test(pv, pb, n_perm=20000, n_boot=10, seed=1)
    assert res.p_value == pytest.approx(exact, abs=0.015)


def test_bootstrap_interval_covers_the_spread_of_the_centre():
    rng = np.random.default_rng(5)
    pv = rng.normal(size=(400, 2)) * [0.3, 0.1]
    pb = rng.normal(size=(400, 2)) * [0.3, 0.1]
    res = shift_test(pv, pb, seed=2)
    # standard error of a difference of means: sigma * sqrt(2 / n); 95 % half-width ~ 1.96 se
    half = (np.array(res.ci_high) - np.array(res.ci_low)) / 2
    expected = 1.96 * np.array([0.3, 0.1]) * np.sqrt(2 / 400)
    assert half == pytest.approx(expected, rel=0.2)


def test_seeded_and_reproducible():
    a = shift_test(BLOCK + [0.1, 0.2], BLOCK, seed=7)
    b = shift_test(BLOCK + [0.1, 0.2], BLOCK, seed=7)
    assert a == b
    others = [shift_test(BLOCK + [0.1, 0.2], BLOCK, seed=s).p_value for s in range(5)]
    assert len(set(others)) > 1  # the seed drives the resampling ...
    assert max(others) - min(others) < 0.03  # ... but 1000 permutations pin p to about +-0.01


def test_not_tested_below_five_points_with_reason():
    res = shift_test(BLOCK[:4], BLOCK, level=0.5)
    assert not res.tested and res.p_value is None and res.verdict == "not tested"
    assert "0.5-ROI" in res.reason and "the variant's has 4" in res.reason


def test_verdict_words():
    d, lo, hi = np.array([-0.3, 0.5]), np.array([-0.5, 0.2]), np.array([-0.1, 0.8])
    assert verdict_words(True, d, lo, hi) == "shift towards larger lr and smaller wd"
    assert verdict_words(False, d, lo, hi) == "no significant shift"
    assert (
        verdict_words(True, d, np.array([-0.5, -0.1]), np.array([0.1, 0.8]))
        == "significant shift, direction unclear"
    )
    assert (
        verdict_words(True, np.array([0.3, 0.0]), np.array([0.1, -1]), np.array([0.5, 1]))
        == "shift towards larger wd"
    )
    # an interval collapsed onto 0 (seed resampling that never moves wd) names no wd shift,
    # whatever the rounding of the centres left in it
    tiny = np.array([4e-16, 0.4])
    assert verdict_words(True, tiny, tiny, np.array([4e-16, 0.44])) == "shift towards larger lr"


def _study(shift_lr, shift_wd, seed):
    variants = [SyntheticVariant("base"), SyntheticVariant("v", shift_lr, shift_wd, peak=92.2)]
    return synthetic_rows(variants, size=9, noise=0.05, seed=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_analyse_finds_a_known_shift_and_not_a_missing_one(seed):
    shifted = analyse(_study(0.6, -0.4, seed)).results["v"].shift["1.0"]
    assert shifted.significant and shifted.verdict == "shift towards larger lr and smaller wd"
    assert shifted.delta[1] == pytest.approx(0.6, abs=0.15) and shifted.delta[0] == pytest.approx(
        -0.4, abs=0.15
    )
    same = analyse(_study(0.0, 0.0, seed)).results["v"].shift["1.0"]
    assert not same.significant and same.verdict == "no significant shift"


def test_shift_result_does_not_depend_on_other_variants():
    rows = _study(0.4, 0.0, 0)
    extra = [dict(r, variant="w") for r in rows if r["variant"] == "v"]
    alone = analyse(rows, seed=4).results["v"].shift["1.0"]
    with_other = analyse(rows + extra, seed=4).results["v"].shift["1.0"]
    assert alone == with_other
