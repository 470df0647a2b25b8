"""Reading the analysis record (backend/analysis/records.py, served by GET /studies/{id}/analysis).

The only module that knows the record's key names, so the figure functions stay about drawing. It
reads the record's one shape: a renamed or missing field fails a contract test
(tests/frontend/test_contracts.py), it is not papered over by a second spelling.
"""

from __future__ import annotations

from typing import Any

from frontend.figures.common import finite


def variant_names(analysis: dict) -> list[str]:
    """Variants in the record's order (base first)."""
    return list(analysis.get("variants") or [])


def result(analysis: dict, variant: str) -> dict:
    return (analysis.get("results") or {}).get(variant) or {}


MIN_COLOUR_SPAN = 1.0  # accuracy points: a readable colour bar when the scale has no width


def colour_range(analysis: dict, floor: float | None = None) -> tuple[float, float]:
    """(zmin, zmax) of the study's shared colour scale; `floor` overrides the lower end."""
    scale = analysis.get("colour_scale") or {}
    zmin, zmax = scale.get("min"), scale.get("max")
    if not finite(zmax):
        zmax = 100.0
    if not finite(zmin):
        zmin = 0.0
    if finite(floor):
        zmin = float(floor)
    if zmin >= zmax:  # every observation at the floor (an easy set), or a floor set at the top
        zmin = zmax - MIN_COLOUR_SPAN
    return float(zmin), float(zmax)


def _status(mean: float | None, n: int, n_diverged: int) -> str:
    if mean is None or not finite(mean):
        return "missing"
    return "diverged" if n and n_diverged >= n else "finished"  # every seed at this point diverged


def landscape_points(analysis: dict, variant: str) -> list[dict]:
    """Every grid point of the variant that has a result, status `finished` | `diverged`: the
    record's column-wise `landscape.points` turned into one dict per point."""
    columns = (result(analysis, variant).get("landscape") or {}).get("points") or {}
    n = len(columns.get("x") or [])
    run_ids = columns.get("run_ids")
    points = []
    for i in range(n):
        mean = columns["mean"][i]
        points.append(
            {
                "x": columns["x"][i],
                "y": columns["y"][i],
                "lr": columns["lr"][i],
                "wd": columns["wd"][i],
                "value": mean if finite(mean) else None,
                "std": columns["std"][i],
                "seeds": columns["n"][i],
                "n_diverged": columns["n_diverged"][i],
                "run_ids": list(run_ids[i]) if run_ids is not None else [],
                "status": _status(mean, columns["n"][i], columns["n_diverged"][i]),
            }
        )
    return points


def landscape_grid(analysis: dict, variant: str) -> dict | None:
    """{'x': log10 wd axis, 'y': log10 lr axis, 'z': rows by lr} or None when there is no grid yet."""
    landscape = result(analysis, variant).get("landscape")
    if not landscape:
        return None
    z = [[v if finite(v) else None for v in row] for row in landscape["z"]]
    return {"x": list(landscape["x"]), "y": list(landscape["y"]), "z": z}


def grid_has_contour(grid: dict) -> bool:
    """A contour needs at least 2 x 2 grid points and 3 values."""
    values = [v for row in grid["z"] for v in row if v is not None]
    return len(grid["x"]) >= 2 and len(grid["y"]) >= 2 and len(values) >= 3


def seed_summary(point: dict) -> str:
    """'91.79 ± 0.21 (3 seeds)' for a point: the seed-mean, the spread over seeds (std, n - 1) and
    how many seeds; one seed has no spread: '91.80 (1 seed)'."""
    value, std, seeds = point.get("value"), point.get("std"), point.get("seeds") or 0
    if not finite(value):
        return "no result"
    spread = f" ± {std:.2g}" if finite(std) else ""  # two significant figures: 0.013, 0.21, 1.2
    return f"{value:.2f}{spread} ({seeds} seed{'' if seeds == 1 else 's'})"


def point_customdata(point: dict) -> list[Any]:
    """[run id, lr, wd, value, seeds, 'mean ± std (n)']: the first entry opens the run page on click."""
    run_id = point["run_ids"][0] if point.get("run_ids") else None
    return [
        run_id,
        point.get("lr"),
        point.get("wd"),
        point.get("value"),
        point.get("seeds"),
        seed_summary(point),
    ]


def ellipses(analysis: dict, variant: str) -> list[dict]:
    """The variant's ROI ellipses ordered by level (0.5 then 1.0); levels with < 5 points have none
    (their entry is null in the record)."""
    raw = result(analysis, variant).get("ellipse") or {}
    out = [
        {
            "level": float(e["level"]),
            "centre": [float(e["centre"][0]), float(e["centre"][1])],
            "length": float(e["length"]),
            "width": float(e["width"]),
            "angle_deg": float(e["angle_deg"]),
            "n_points": e["n_points"],
        }
        for e in raw.values()
        if e is not None
    ]
    return sorted(out, key=lambda e: e["level"])


def best_point(analysis: dict, variant: str) -> dict | None:
    """The variant's best point (the best seed-mean, the record's tie rule), or None."""
    best = result(analysis, variant).get("best")
    if not best:
        return None
    return {
        "x": best["x"],
        "y": best["y"],
        "lr": best["lr"],
        "wd": best["wd"],
        "value": best["value"],
        "std": best["std"],
        "seeds": best["n"],
        "ci_low": best.get("ci_low"),
        "ci_high": best.get("ci_high"),
        "run_ids": list(best["run_ids"] or []),
        "status": "finished",
    }


def axis_ranges(
    grid: dict | None, points: list[dict], outlines: list[tuple[list[float], list[float]]] = ()
) -> tuple[list[float] | None, list[float] | None]:
    """Ranges that show every grid point and every ellipse whole."""
    xs = [p["x"] for p in points] + (list(grid["x"]) if grid else [])
    ys = [p["y"] for p in points] + (list(grid["y"]) if grid else [])
    for outline_x, outline_y in outlines:
        xs += outline_x
        ys += outline_y
    if not xs or not ys:
        return None, None

    def padded(values: list[float]) -> list[float]:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.06 or 0.2
        return [lo - pad, hi + pad]

    return padded(xs), padded(ys)


def roi_levels(analysis: dict) -> list[float]:
    """The record's ROI levels (0.5, 1.0 by default), ascending."""
    return sorted(float(level) for level in analysis.get("roi_levels") or [])


def level_key(level: float) -> str:
    """The record's key of an ROI level ('0.5', '1.0': backend/analysis/records.py level_key)."""
    return repr(float(level))


def roi_membership(analysis: dict, variant: str, level: float) -> list[float | None] | None:
    """Each landscape point's frequency of membership in the `level`-ROI over seed resamples, in
    `landscape_points` order; None with one seed (the record has no resamples to count)."""
    membership = result(analysis, variant).get("roi_membership") or {}
    values = membership.get(level_key(level))
    if values is None:
        return None
    return [float(v) if finite(v) else None for v in values]


def noise(analysis: dict, variant: str) -> dict | None:
    """The variant's seed-noise record (backend/analysis/noise.py), or None before there is one:
    std (pp), source 'seeds' | 'fit' (fit: one seed, an estimate), within_noise_below (2 x std),
    roi_within_noise {level key: bool | None}, n_points_used, reason."""
    record = result(analysis, variant).get("noise")
    if not record:
        return None
    return {
        "std": record["std"],
        "source": record["source"],
        "estimate": bool(record["estimate"]),
        "n_points_used": record["n_points_used"],
        "within_noise_below": record["within_noise_below"],
        "roi_within_noise": dict(record["roi_within_noise"] or {}),
        "reason": record["reason"],
        "n_boot": record["n_boot"],
        "ci_level": record["ci_level"],
    }


def shift_resampling(analysis: dict, variant: str) -> dict[str, str | None]:
    """{level key: what the shift test's CI resampled}: 'seeds' (seeds per point, the ROI
    recomputed each time), 'roi points' (one seed), or None (not tested)."""
    shifts = result(analysis, variant).get("shift") or {}
    return {level: (test or {}).get("resampling") for level, test in shifts.items()}
