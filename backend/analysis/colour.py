"""The study-wide colour scale of landscape plots (docs/spec.md section 5).

One scale for every variant of a study, so their landscapes compare at a glance: from the
``floor_percentile``-th percentile (85 by default: the study's "top 15 %") of all observed
accuracies of the study (every run of every variant, diverged runs included, for the chosen
metric) to their maximum. Percentiles use numpy's linear interpolation. Points below the floor are
clipped by the renderer. ``None`` when there is no observation.
"""

from __future__ import annotations

import math

import numpy as np

from backend.analysis.records import ColourScale

DEFAULT_FLOOR_PERCENTILE = 85.0


def colour_scale(
    values: np.ndarray, floor_percentile: float = DEFAULT_FLOOR_PERCENTILE
) -> ColourScale | None:
    """Colour range over all observations ``values`` (NaN = no observation, ignored)."""
    if not (math.isfinite(floor_percentile) and 0.0 <= floor_percentile <= 100.0):
        raise ValueError(f"colour floor percentile must be in [0, 100], got {floor_percentile}")
    obs = np.asarray(values, dtype=float).reshape(-1)
    obs = obs[np.isfinite(obs)]
    if obs.size == 0:
        return None
    return ColourScale(
        min=float(np.percentile(obs, floor_percentile)),
        max=float(obs.max()),
        percentile=float(floor_percentile),
        n_observations=int(obs.size),
    )
