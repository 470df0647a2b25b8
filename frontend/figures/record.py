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


# --- one view for every variant of a study ---------------------------------------------------------
# An ellipse whose width is this small next to its length is a line: its points lie on one line.
DEGENERATE_WIDTH = 1e-9
UNSCORED = ("running", "failed", "cancelled", "missing")  # GET /landscape states without a result
SINGLE_POINT_SPAN = 0.4  # log10 units shown around a grid of one point


def is_degenerate(ellipse: dict) -> bool:
    """A width-0 ellipse (collinear ROI points): drawn as its major axis, not as an outline."""
    return ellipse["width"] <= DEGENERATE_WIDTH * max(1.0, ellipse["length"])


def unscored_points(grid_points: list[dict] | None) -> list[dict]:
    """The grid points of GET /studies/{id}/landscape (`Landscape.points`) that have no result:
    {'x', 'y', 'lr', 'wd', 'status'} with status running | failed | cancelled | missing."""
    return [
        {"x": p["x"], "y": p["y"], "lr": p["lr"], "wd": p["wd"], "status": p["status"]}
        for p in grid_points or []
        if p["status"] in UNSCORED
    ]


def grid_box(
    analysis: dict, grid_points: dict[str, list[dict]] | None = None
) -> tuple[float, float, float, float] | None:
    """(xmin, xmax, ymin, ymax) of the study's grid: every variant's landscape axes and points in
    the analysis, and every point GET /landscape lists (the grid points without a result too)."""
    xs: list[float] = []
    ys: list[float] = []
    for variant in variant_names(analysis):
        grid = landscape_grid(analysis, variant)
        if grid is not None:
            xs += grid["x"]
            ys += grid["y"]
        for point in landscape_points(analysis, variant):
            xs.append(point["x"])
            ys.append(point["y"])
    for points in (grid_points or {}).values():
        for point in points or []:
            xs.append(point["x"])
            ys.append(point["y"])
    xs = [x for x in xs if finite(x)]
    ys = [y for y in ys if finite(y)]
    if not xs or not ys:
        return None
    return min(xs), max(xs), min(ys), max(ys)


def study_axis_ranges(
    analysis: dict, grid_points: dict[str, list[dict]] | None = None
) -> tuple[list[float] | None, list[float] | None]:
    """One pair of axis ranges for every landscape of the study, so the panels line up: the grid
    (`grid_box`) plus every ellipse that is not degenerate, an ellipse stretching the view by at
    most one grid width on each side (a degenerate one is drawn clipped to the grid)."""
    from frontend.figures.common import ellipse_outline

    box = grid_box(analysis, grid_points)
    if box is None:
        return None, None
    xmin, xmax, ymin, ymax = box
    span_x = (xmax - xmin) or SINGLE_POINT_SPAN
    span_y = (ymax - ymin) or SINGLE_POINT_SPAN
    xs, ys = [xmin, xmax], [ymin, ymax]
    for variant in variant_names(analysis):
        for ellipse in ellipses(analysis, variant):
            if is_degenerate(ellipse):
                continue
            outline_x, outline_y = ellipse_outline(
                ellipse["centre"], ellipse["length"], ellipse["width"], ellipse["angle_deg"]
            )
            xs += [min(max(x, xmin - span_x), xmax + span_x) for x in outline_x]
            ys += [min(max(y, ymin - span_y), ymax + span_y) for y in outline_y]

    def padded(values: list[float], span: float) -> list[float]:
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.06 or span / 2
        return [lo - pad, hi + pad]

    return padded(xs, span_x), padded(ys, span_y)


def variant_colour_range(analysis: dict, variant: str) -> tuple[float, float]:
    """(zmin, zmax) of one variant's own values (the per-variant colour scale): its lowest to its
    highest grid-point mean, at least MIN_COLOUR_SPAN wide; the shared scale when it has none."""
    values = [p["value"] for p in landscape_points(analysis, variant) if p["value"] is not None]
    if not values:
        return colour_range(analysis)
    low, high = float(min(values)), float(max(values))
    return (high - MIN_COLOUR_SPAN if high - low < MIN_COLOUR_SPAN else low), high


def degenerate_notes(analysis: dict, variant: str) -> list[str]:
    """A sentence per degenerate ellipse of the variant, for the note under its landscape."""
    return [
        f"The {e['level']!r}-ROI ellipse has width 0 (its {e['n_points']} points lie on a line): "
        "drawn as a marked segment along that line, clipped to the grid."
        for e in ellipses(analysis, variant)
        if is_degenerate(e)
    ]


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
