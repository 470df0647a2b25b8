"""Reading the analysis record (backend/analysis/records.py, served by GET /studies/{id}/analysis).

The only module that knows the record's key names, so the figure functions stay about drawing.
"""

from __future__ import annotations

from typing import Any

from frontend.figures.common import finite, log10_or_none


def variant_names(analysis: dict) -> list[str]:
    """Variants in the record's order (base first)."""
    names = analysis.get("variants") or list((analysis.get("results") or {}).keys())
    return [v["name"] if isinstance(v, dict) else str(v) for v in names]


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


def _xy(point: dict) -> tuple[float | None, float | None]:
    x, y = point.get("x"), point.get("y")
    if x is None:
        x = log10_or_none(point.get("wd"))
    if y is None:
        y = log10_or_none(point.get("lr"))
    return x, y


def _point(raw: dict) -> dict:
    x, y = _xy(raw)
    value = raw.get("value", raw.get("mean"))
    run_ids = raw.get("run_ids") or []
    n = raw.get("n")
    n_diverged = raw.get("n_diverged") or 0
    if value is None or not finite(value):
        status = "missing"
    elif n and n_diverged >= n:
        status = "diverged"  # every seed at this point diverged
    else:
        status = "finished"
    return {
        "x": x,
        "y": y,
        "lr": raw.get("lr", 10**y if y is not None else None),
        "wd": raw.get("wd", 10**x if x is not None else None),
        "value": value if finite(value) else None,
        "std": raw.get("std"),
        "seeds": n if n is not None else len(run_ids) or None,
        "n_diverged": n_diverged,
        "run_ids": list(run_ids),
        "status": status,
    }


def landscape_points(analysis: dict, variant: str) -> list[dict]:
    """Every grid point of the variant, status `finished` | `diverged` | `missing`.

    The record holds them column-wise (`landscape.points` = {x: [...], y: [...], mean: [...]}).
    """
    columns = (result(analysis, variant).get("landscape") or {}).get("points") or {}
    if isinstance(columns, list):  # row-wise (e.g. the /landscape endpoint's points)
        rows = columns
    else:
        n = len(columns.get("x") or [])
        run_ids = columns.get("run_ids") or [None] * n
        rows = [
            {
                "x": columns["x"][i],
                "y": columns["y"][i],
                "wd": (columns.get("wd") or [None] * n)[i],
                "lr": (columns.get("lr") or [None] * n)[i],
                "mean": (columns.get("mean") or [None] * n)[i],
                "std": (columns.get("std") or [None] * n)[i],
                "n": (columns.get("n") or [None] * n)[i],
                "n_diverged": (columns.get("n_diverged") or [0] * n)[i],
                "run_ids": run_ids[i] or [],
            }
            for i in range(n)
        ]
    points = [_point(raw) for raw in rows]
    return [p for p in points if p["x"] is not None and p["y"] is not None]


def landscape_grid(analysis: dict, variant: str) -> dict | None:
    """{'x': log10 wd axis, 'y': log10 lr axis, 'z': rows by lr} or None when there is no grid yet."""
    landscape = result(analysis, variant).get("landscape") or {}
    x, y, z = landscape.get("x"), landscape.get("y"), landscape.get("z")
    if x is None or y is None or z is None:
        points = landscape_points(analysis, variant)
        if not points:
            return None
        xs = sorted({round(p["x"], 9) for p in points})
        ys = sorted({round(p["y"], 9) for p in points})
        z = [[None] * len(xs) for _ in ys]
        for p in points:
            z[ys.index(round(p["y"], 9))][xs.index(round(p["x"], 9))] = p["value"]
        x, y = xs, ys
    return {"x": list(x), "y": list(y), "z": [[v if finite(v) else None for v in row] for row in z]}


def grid_has_contour(grid: dict) -> bool:
    """A contour needs at least 2 x 2 grid points and 3 values."""
    values = [v for row in grid["z"] for v in row if v is not None]
    return len(grid["x"]) >= 2 and len(grid["y"]) >= 2 and len(values) >= 3


def point_customdata(point: dict) -> list[Any]:
    """[run id, lr, wd, value, seeds]: the first entry opens the run page on click."""
    run_id = point["run_ids"][0] if point.get("run_ids") else None
    return [run_id, point.get("lr"), point.get("wd"), point.get("value"), point.get("seeds")]


def _ellipse(level: float, raw: dict) -> dict | None:
    centre = raw.get("centre")
    length, width = raw.get("length"), raw.get("width")
    angle = raw.get("angle_deg")
    if centre is None or not finite(length) or not finite(width) or not finite(angle):
        return None
    return {
        "level": float(raw.get("level", level)),
        "centre": [float(centre[0]), float(centre[1])],
        "length": float(length),
        "width": float(width),
        "angle_deg": float(angle),
        "n_points": raw.get("n_points"),
    }


def ellipses(analysis: dict, variant: str) -> list[dict]:
    """The variant's ROI ellipses ordered by level (0.5 then 1.0); levels with < 5 points are absent."""
    raw = result(analysis, variant).get("ellipse") or {}
    out = []
    for level, value in raw.items():
        if not isinstance(value, dict):
            continue
        parsed = _ellipse(float(level), value)
        if parsed is not None:
            out.append(parsed)
    return sorted(out, key=lambda e: e["level"])


def best_point(analysis: dict, variant: str) -> dict | None:
    best = result(analysis, variant).get("best")
    if not best:
        return None
    point = _point(best)
    return point if point["x"] is not None else None


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
