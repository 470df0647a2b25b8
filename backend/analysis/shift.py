"""Shift test: has compression moved the x-ROI? (docs/spec.md section 5: what the study only eyeballed.)

Statistic. The centre of an x-ROI ellipse is the mean of its points in (log10 wd, log10 lr).
delta = centre_v - centre_base per axis (log10 units, variant minus base) and the test statistic is
the centre distance T = ||delta||. The test runs only when both ellipses exist (>= 5 ROI points
each, docs/spec.md's condition for an ellipse); otherwise it says why not.

Confidence interval. Percentile bootstrap; the 95 % interval per axis is the 2.5th to 97.5th
percentile of the resampled deltas. What is resampled (``resampling`` in the record):

- ``"roi points"`` (one seed, or either side without a point with >= 2 seeds): ``n_boot`` times,
  resample the variant's ROI points with replacement (n_v of them) and, independently, the base's
  (n_b), and recompute delta.
- ``"seeds"`` (the variant and the base both have points with >= 2 seeds; docs/spec.md section 7): the
  caller passes ``seed_deltas``, the deltas of the seed bootstrap of :mod:`~backend.analysis.noise`:
  in resample b, the seeds of every point of the variant and of the base are resampled, both
  x-ROIs are recomputed from the resampled seed-means and delta_b = centre_v,b - centre_base,b
  (each centre the mean of that resample's ROI points, which always holds its best point). The
  ROI itself is uncertain, and this interval shows it: points join and leave the ROIs.

p-value. The same in both modes, with the same draws (the ROI-point bootstrap's indices are drawn
from the stream in both modes, so the permutations that follow are identical): it asks whether
the observed ROIs could be one region split at random, the CI asks how far the centres move under
the noise the resampling models. The verdict needs both: significant by the p-value, an axis named
only where the interval excludes 0.

p-value. Permutation test of H0 "the two ROIs are draws from the same region": pool the n_v + n_b
points, ``n_perm`` times assign n_v of them at random to the variant and the rest to the base,
recompute T; p = (1 + #{T_perm >= T_obs}) / (1 + n_perm) (never 0, exact-size under H0). Identical
ROIs give T_obs = 0 and p = 1.

Verdict. ``significant`` = p < alpha (0.05). When not significant: "no significant shift". When
significant, an axis is named only when its bootstrap interval excludes 0: "shift towards larger
lr", "... smaller wd", "... larger lr and smaller wd"; when neither interval excludes 0:
"significant shift, direction unclear".

Reproducibility: the random stream is ``numpy.random.default_rng((seed, *stream))``; analyse()
uses stream = (crc32 of the variant name, level in thousandths), so a variant's result does not
depend on which other variants are in the study.

Caveat (stated, not hidden): ROI points are grid points, not independent draws, so the
"roi points" resampling measures how far apart the two regions are relative to their extent; it
does not model the noise of the accuracies themselves. With seeds, the "seeds" resampling does.
"""

from __future__ import annotations

import numpy as np

from backend.analysis.ellipse import MIN_POINTS
from backend.analysis.records import ShiftRecord

N_BOOT = 1000
N_PERM = 1000
ALPHA = 0.05
CI_LEVEL = 0.95
ZERO_TOL = 1e-12  # log10 units: far below any grid step, far above the rounding of a mean


RESAMPLING_POINTS = "roi points"
RESAMPLING_SEEDS = "seeds"


def not_tested(level: float, reason: str, n_v: int, n_b: int, n_boot: int, n_perm: int) -> ShiftRecord:
    return ShiftRecord(
        level=float(level),
        tested=False,
        reason=reason,
        delta=None,
        distance=None,
        ci_low=None,
        ci_high=None,
        ci_level=CI_LEVEL,
        p_value=None,
        alpha=ALPHA,
        significant=False,
        verdict="not tested",
        n_variant=n_v,
        n_base=n_b,
        n_boot=n_boot,
        n_perm=n_perm,
        seed=None,
        resampling=None,
    )


def verdict_words(significant: bool, delta: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray) -> str:
    """Plain words for the dashboard; axes named only where the interval excludes 0.

    "Excludes 0" allows ``ZERO_TOL``: a seed-resampled interval can collapse onto 0 (both ROIs
    keep their wd values in every resample), where rounding of the centres must not name an axis.
    """
    if not significant:
        return "no significant shift"
    words = []
    for axis, name in ((1, "lr"), (0, "wd")):
        if ci_low[axis] > ZERO_TOL or ci_high[axis] < -ZERO_TOL:
            words.append(f"{'larger' if delta[axis] > 0 else 'smaller'} {name}")
    if not words:
        return "significant shift, direction unclear"
    return "shift towards " + " and ".join(words)


def shift_test(
    variant_points: np.ndarray,
    base_points: np.ndarray,
    *,
    level: float = 1.0,
    seed: int = 0,
    stream: tuple[int, ...] = (),
    n_boot: int = N_BOOT,
    n_perm: int = N_PERM,
    seed_deltas: np.ndarray | None = None,
) -> ShiftRecord:
    """Compare the variant's and the base's x-ROI points ((n, 2) arrays of [log10 wd, log10 lr]).

    ``seed_deltas`` ((n_resamples, 2), from :func:`seed_resampled_deltas`) switches the CI to the
    seed bootstrap; without it the CI resamples ROI points (the one-seed behaviour).
    """
    pv = np.asarray(variant_points, dtype=float).reshape(-1, 2)
    pb = np.asarray(base_points, dtype=float).reshape(-1, 2)
    nv, nb = len(pv), len(pb)
    if nv < MIN_POINTS or nb < MIN_POINTS:
        who = [f"the variant's has {nv}"] if nv < MIN_POINTS else []
        who += [f"the base's has {nb}"] if nb < MIN_POINTS else []
        reason = f"needs both {float(level)!r}-ROI ellipses (>= {MIN_POINTS} points each); " + " and ".join(
            who
        )
        return not_tested(level, reason, nv, nb, n_boot, n_perm)
    if n_boot < 1 or n_perm < 1:
        raise ValueError("n_boot and n_perm must be >= 1")
    rng = np.random.default_rng((int(seed), *[int(s) for s in stream]))
    delta = pv.mean(axis=0) - pb.mean(axis=0)
    t_obs = float(np.hypot(*delta))

    # Points as complex numbers x + iy: one 1-d gather per resample matrix, not a slow 3-d one.
    zv = pv[:, 0] + 1j * pv[:, 1]
    zb = pb[:, 0] + 1j * pb[:, 1]
    tail = 100.0 * (1.0 - CI_LEVEL) / 2.0
    if seed_deltas is None:
        boot_v = zv[rng.integers(0, nv, size=(n_boot, nv), dtype=np.int32)].mean(axis=1)
        boot_b = zb[rng.integers(0, nb, size=(n_boot, nb), dtype=np.int32)].mean(axis=1)
        boot = boot_v - boot_b
        deltas = np.column_stack([boot.real, boot.imag])
        resampling = RESAMPLING_POINTS
    else:
        # The point bootstrap's indices are drawn and dropped: the permutations below use the
        # same draws as with one seed, so the p-value does not depend on the resampling.
        rng.integers(0, nv, size=(n_boot, nv), dtype=np.int32)
        rng.integers(0, nb, size=(n_boot, nb), dtype=np.int32)
        deltas = np.asarray(seed_deltas, dtype=float).reshape(-1, 2)
        if len(deltas) < 1:
            raise ValueError("seed_deltas: give at least one resampled delta")
        n_boot = len(deltas)
        resampling = RESAMPLING_SEEDS
    ci_low, ci_high = np.percentile(deltas, [tail, 100.0 - tail], axis=0)

    # Each permutation: the n_v smallest of N uniform keys go to the variant (a uniform random
    # subset; float64 keys tie with probability ~N^2 2^-53); the base gets the rest, whose sum is
    # the total minus the variant's. partition + masked sums beat argpartition + gather; no
    # matrix product, whose BLAS threads thrash on a busy machine.
    pooled = np.vstack([pv, pb])
    total = pooled.sum(axis=0)
    keys = rng.random((n_perm, nv + nb))
    in_v = keys <= np.partition(keys, nv - 1, axis=1)[:, nv - 1 : nv]
    sum_v = np.column_stack([(in_v * pooled[:, 0]).sum(axis=1), (in_v * pooled[:, 1]).sum(axis=1)])
    perm_delta = sum_v / nv - (total - sum_v) / nb
    t_perm = np.hypot(perm_delta[:, 0], perm_delta[:, 1])
    # A tiny tolerance so that rounding in the sums cannot turn T_perm == T_obs into "<".
    exceed = int(np.count_nonzero(t_perm >= t_obs - 1e-12))
    p_value = (1.0 + exceed) / (1.0 + n_perm)
    significant = p_value < ALPHA
    return ShiftRecord(
        level=float(level),
        tested=True,
        reason=None,
        delta=[float(delta[0]), float(delta[1])],
        distance=t_obs,
        ci_low=[float(ci_low[0]), float(ci_low[1])],
        ci_high=[float(ci_high[0]), float(ci_high[1])],
        ci_level=CI_LEVEL,
        p_value=p_value,
        alpha=ALPHA,
        significant=significant,
        verdict=verdict_words(significant, delta, ci_low, ci_high),
        n_variant=nv,
        n_base=nb,
        n_boot=n_boot,
        n_perm=n_perm,
        seed=int(seed),
        resampling=resampling,
    )


def seed_resampled_deltas(variant_centres: np.ndarray, base_centres: np.ndarray) -> np.ndarray:
    """delta_b = variant centre - base centre of resample b, from the seed bootstrap's x-ROI
    centres of each side ((n_boot, 2) arrays from :func:`backend.analysis.noise.roi_resamples`)."""
    cv = np.asarray(variant_centres, dtype=float).reshape(-1, 2)
    cb = np.asarray(base_centres, dtype=float).reshape(-1, 2)
    if len(cv) != len(cb):
        raise ValueError(f"the variant has {len(cv)} resamples and the base {len(cb)}; they must pair up")
    return cv - cb
