"""Seed noise: how much of the landscape is measurement noise (docs/spec.md section 7).

Noise of a variant, in percentage points:

- with seeds (some grid point has >= 2 seeds): the median over the points with >= 2 seeds of the
  sample standard deviation over seeds (denominator r - 1); source ``"seeds"``.
- with one seed: the residual standard deviation of a least-squares quadratic in
  (x, y) = (log10 wd, log10 lr), f ~ 1 + x + y + x^2 + xy + y^2, fitted to the points of the
  ``FIT_LEVEL`` (2.0)-ROI, i.e. around the best point: sqrt(RSS / (n - 6)), the unbiased estimate
  for 6 fitted terms. It needs n >= 7 points whose coordinates determine all 6 terms (rank 6);
  otherwise there is no estimate and ``reason`` says why. Source ``"fit"``, labelled an estimate:
  it also absorbs whatever the quadratic does not describe.

An x-ROI is "within noise" when x < 2 x noise (``WITHIN_NOISE_FACTOR``): its edge is then no
sharper than the accuracy differences the seeds alone produce.

Seed bootstrap (only with seeds): ``n_boot`` (= ``shift.N_BOOT``) times, resample the seeds of every
point with replacement (r draws among its r values) and recompute the seed-means. A point with one
seed inside a multi-seed study contributes its single value to every resample (there is nothing to
resample; this understates the uncertainty there). From those resamples:

- best-point CI: the 95 % percentile interval (numpy's linear interpolation, as in ``shift``) of
  the maximum of the resampled seed-means (the best value, wherever it falls in each resample);
- ROI membership of a point at level x: the fraction of resamples in which the point is in that
  resample's x-ROI (recomputed with its own maximum; ``roi.TIE_TOL`` as in ``roi_mask``);
- the x-ROI centre (mean of the ROI points in log10 units) of every resample, which the shift test
  uses with seeds (``shift``).

Random stream: ``numpy.random.default_rng((seed, crc32(variant), BOOTSTRAP_TAG))``, one per variant
and independent of the other variants in the study (``shift`` uses (seed, crc32, level in
thousandths)). Within a point, seeds are taken in ascending seed number, so the row order of the
results does not change the draws. Vectorised: one (n_boot, n_points) array per seed slot, no
Python loop over resamples or points.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from backend.analysis.records import NoiseRecord, level_key
from backend.analysis.roi import TIE_TOL, roi_mask
from backend.analysis.shift import CI_LEVEL, N_BOOT

FIT_LEVEL = 2.0
WITHIN_NOISE_FACTOR = 2.0
QUADRATIC_TERMS = 6
MIN_FIT_POINTS = QUADRATIC_TERMS + 1
BOOTSTRAP_TAG = zlib.crc32(b"seed bootstrap")


def bootstrap_stream(variant: str) -> tuple[int, int]:
    """The variant's own part of the seed-bootstrap random stream (see the module docstring)."""
    return zlib.crc32(variant.encode("utf-8")), BOOTSTRAP_TAG


def seeds_noise(point_std: np.ndarray, counts: np.ndarray) -> tuple[float | None, int]:
    """Median of the per-point sample std over the points with >= 2 seeds, and how many there are."""
    std = np.asarray(point_std, dtype=float)
    used = (np.asarray(counts) >= 2) & np.isfinite(std)
    if not used.any():
        return None, 0
    return float(np.median(std[used])), int(used.sum())


def fit_noise(values: np.ndarray, coords: np.ndarray) -> tuple[float | None, int, str | None]:
    """Residual std of the quadratic fit over the 2.0-ROI: (std or None, points used, reason)."""
    values = np.asarray(values, dtype=float)
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if values.size == 0:
        return None, 0, "no results"
    mask = roi_mask(values, FIT_LEVEL)
    n = int(mask.sum())
    roi = f"the {FIT_LEVEL!r}-ROI"
    if n < MIN_FIT_POINTS:
        return (
            None,
            n,
            f"only {n} point{'s' if n != 1 else ''} in {roi}; a quadratic fit in (log10 wd, log10 lr) "
            f"needs at least {MIN_FIT_POINTS} ({QUADRATIC_TERMS} terms + 1 for the residual)",
        )
    # Centred and scaled coordinates: the same fit and residuals, a well-conditioned design matrix.
    xy = coords[mask]
    dev = xy - xy.mean(axis=0)
    scale = np.abs(dev).max(axis=0)
    x, y = (dev / np.where(scale > 0, scale, 1.0)).T
    design = np.column_stack([np.ones(n), x, y, x * x, x * y, y * y])
    f = values[mask]
    coef, _, rank, _ = np.linalg.lstsq(design, f, rcond=None)
    if rank < QUADRATIC_TERMS:
        return (
            None,
            n,
            f"the {n} points of {roi} do not determine a quadratic in (log10 wd, log10 lr) "
            "(it needs at least 3 values of each axis, not all on one line)",
        )
    resid = f - design @ coef
    return float(np.sqrt(resid @ resid / (n - QUADRATIC_TERMS))), n, None


def within_noise(std: float | None, levels: Sequence[float]) -> dict[str, bool | None]:
    """Per ROI level: x < 2 x noise (``None`` when there is no noise figure)."""
    return {level_key(x): None if std is None else bool(float(x) < WITHIN_NOISE_FACTOR * std) for x in levels}


def noise_record(
    values: np.ndarray,
    coords: np.ndarray,
    point_std: np.ndarray,
    counts: np.ndarray,
    levels: Sequence[float],
    n_boot: int = 0,
) -> NoiseRecord:
    """The variant's noise: from its seeds when any point has >= 2, else from the quadratic fit.

    ``n_boot`` is the number of seed resamples behind the best-point CI and the ROI membership
    (0 when there are none), recorded for the page.
    """
    counts = np.asarray(counts)
    if np.any(counts >= 2):
        std, n_used = seeds_noise(point_std, counts)
        source, reason = "seeds", None
    else:
        std, n_used, reason = fit_noise(values, coords)
        source = "fit"
    return NoiseRecord(
        std=std,
        source=source,
        estimate=source == "fit",
        n_points_used=n_used,
        within_noise_below=None if std is None else WITHIN_NOISE_FACTOR * std,
        roi_within_noise=within_noise(std, levels),
        reason=reason,
        n_boot=int(n_boot),
        ci_level=CI_LEVEL,
    )


def resample_seed_means(
    run_values: np.ndarray,
    counts: np.ndarray,
    point_means: np.ndarray,
    rng: np.random.Generator,
    n_boot: int = N_BOOT,
) -> np.ndarray | None:
    """Seed-means of every point in ``n_boot`` seed resamples: an (n_boot, n_points) array.

    ``run_values`` holds the runs point after point (``counts[p]`` values for point p, in the
    order of ``point_means``). ``None`` when no point has >= 2 seeds (nothing to resample).
    """
    counts = np.asarray(counts, dtype=np.int64)
    values = np.asarray(run_values, dtype=float)
    means = np.asarray(point_means, dtype=float)
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if len(values) != int(counts.sum()) or len(means) != len(counts):
        raise ValueError("run_values must hold counts[p] values for every point p")
    if not np.any(counts >= 2):
        return None
    out = np.empty((n_boot, len(counts)))
    out[:] = means  # single-seed points keep their one value in every resample
    starts = np.cumsum(counts) - counts
    # Points grouped by their number of seeds r; per group, r draws among r values per point, one
    # (n_boot, points) array per draw: a loop over seed slots, not over resamples or points.
    for r in np.unique(counts[counts >= 2]).tolist():
        points = np.flatnonzero(counts == r)
        seed_major = values[starts[points][None, :] + np.arange(r)[:, None]].ravel()  # [slot, point]
        offset = np.arange(len(points))
        total = np.zeros((n_boot, len(points)))
        for _ in range(r):
            pick = rng.integers(0, r, size=(n_boot, len(points)), dtype=np.intp)
            pick *= len(points)
            pick += offset
            total += seed_major[pick]
        out[:, points] = total / r
    return out


def best_interval(resampled_means: np.ndarray) -> tuple[float, float]:
    """95 % percentile interval of the best (maximum) seed-mean over the resamples."""
    best = np.asarray(resampled_means, dtype=float).max(axis=1)
    tail = 100.0 * (1.0 - CI_LEVEL) / 2.0
    low, high = np.percentile(best, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class RoiResamples:
    """One x-ROI recomputed in every seed resample."""

    level: float
    membership: np.ndarray  # (n_points,): fraction of resamples with the point in the x-ROI
    centres: np.ndarray  # (n_boot, 2): [log10 wd, log10 lr] centre of each resample's x-ROI


def roi_resamples(resampled_means: np.ndarray, coords: np.ndarray, level: float) -> RoiResamples:
    """The x-ROI of every resample: each point's membership frequency and each resample's centre."""
    means = np.asarray(resampled_means, dtype=float)
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if level < 0:
        raise ValueError(f"ROI level must be >= 0 percentage points, got {level}")
    inside = means >= means.max(axis=1, keepdims=True) - level - TIE_TOL
    weights = inside.astype(np.float64)
    size = weights.sum(axis=1)  # >= 1: a resample's best point is always in its ROI
    centres = np.column_stack([weights @ coords[:, 0], weights @ coords[:, 1]]) / size[:, None]
    return RoiResamples(level=float(level), membership=weights.mean(axis=0), centres=centres)


@dataclass(frozen=True)
class SeedBootstrap:
    """What the page and the shift test need from one variant's seed resamples."""

    n_boot: int
    best_ci: tuple[float, float]
    rois: dict[str, RoiResamples]  # by level_key


def seed_bootstrap(
    run_values: np.ndarray,
    counts: np.ndarray,
    point_means: np.ndarray,
    coords: np.ndarray,
    levels: Sequence[float],
    rng: np.random.Generator,
    n_boot: int = N_BOOT,
) -> SeedBootstrap | None:
    """Resample the seeds once; the best-point CI and every level's ROI from the same resamples.

    ``None`` when no point has >= 2 seeds. Only the points that can be in the largest x-ROI of
    some resample are resampled: a resampled seed-mean lies between the point's lowest and highest
    seed, so every resample's best is >= F = max over points of their lowest seed, and a point
    whose highest seed is below F - x is in no x-ROI of any resample and never the best. Leaving
    those points out changes no number (their membership is exactly 0) and makes the bootstrap
    cost grow with the size of the ROI, not of the grid.
    """
    counts = np.asarray(counts, dtype=np.int64)
    values = np.asarray(run_values, dtype=float)
    means_all = np.asarray(point_means, dtype=float)
    coords = np.asarray(coords, dtype=float).reshape(-1, 2)
    if not np.any(counts >= 2):
        return None
    if np.any(counts < 1) or len(values) != int(counts.sum()):
        raise ValueError("every point needs >= 1 run, and run_values counts[p] values for point p")
    if not levels:
        raise ValueError("levels: give at least one ROI level")
    starts = np.cumsum(counts) - counts
    floor = float(np.minimum.reduceat(values, starts).max())
    reach = max(float(x) for x in levels)
    # 2 x TIE_TOL: room for the rounding of a resampled mean of equal values.
    candidate = np.maximum.reduceat(values, starts) >= floor - reach - 2 * TIE_TOL
    keep = np.repeat(candidate, counts)
    means = resample_seed_means(values[keep], counts[candidate], means_all[candidate], rng, n_boot)
    if means is None:  # the candidates have one seed each: every resample is the observed landscape
        means = np.broadcast_to(means_all[candidate], (n_boot, int(candidate.sum())))
    rois = {}
    for x in levels:
        roi = roi_resamples(means, coords[candidate], x)
        membership = np.zeros(len(counts))
        membership[candidate] = roi.membership
        rois[level_key(x)] = RoiResamples(level=roi.level, membership=membership, centres=roi.centres)
    return SeedBootstrap(n_boot=n_boot, best_ci=best_interval(means), rois=rois)
