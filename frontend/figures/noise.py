"""Per-point views of one variant's landscape besides the mean: the spread over seeds, the number
of seeds, and each point's frequency of membership in an x-ROI over seed resamples.

Every number is the analysis record's (backend/analysis/records.py: `landscape.points.std` / `n`,
`roi_membership`); these functions only lay them out on the grid.
"""

from __future__ import annotations

import plotly.graph_objects as go

from frontend.figures import record as rec
from frontend.figures.common import AXIS_LR, AXIS_WD, base_layout, ellipse_outline, empty_figure, finite

VIEWS = ("mean", "spread", "count", "membership")
VIEW_WORDS = {
    "mean": "mean over seeds",
    "spread": "spread over seeds (std, pp)",
    "count": "seeds per point",
    "membership": "ROI membership frequency",
}
COLOURS = {"spread": "OrRd", "count": "Blues", "membership": "Greens"}


def _key(value: float) -> float:
    return round(float(value), 9)  # axes and points come from one record: equal up to float noise


def point_values(analysis: dict, variant: str, view: str, level: float | None = None) -> list[float | None]:
    """The per-point number a view colours by, in `landscape_points` order."""
    points = rec.landscape_points(analysis, variant)
    if view == "spread":
        return [p["std"] if finite(p["std"]) else None for p in points]
    if view == "count":
        return [p["seeds"] for p in points]
    if view == "membership":
        membership = rec.roi_membership(analysis, variant, level if level is not None else 0.5)
        return (
            membership if membership is not None and len(membership) == len(points) else [None] * len(points)
        )
    raise ValueError(f"view: one of {', '.join(VIEWS[1:])}, got {view!r}")


def point_map_figure(
    analysis: dict, variant: str, view: str, *, level: float | None = None, height: int = 420
) -> go.Figure:
    """`variant`'s grid coloured by `view` ('spread' | 'count' | 'membership' of the `level`-ROI),
    each cell labelled with its number; hover: lr, wd, mean ± std (n seeds) and the cell's value."""
    grid = rec.landscape_grid(analysis, variant)
    points = rec.landscape_points(analysis, variant)
    if grid is None or not points:
        return empty_figure(f"{variant}: no finished runs yet", height=height)
    values = point_values(analysis, variant, view, level)
    if view == "membership" and all(v is None for v in values):
        return empty_figure(
            f"{variant}: no ROI membership (it needs two or more seeds per point)", height=height
        )
    if view == "spread" and all(v is None for v in values):
        return empty_figure(f"{variant}: no spread (one seed per point)", height=height)
    col = {_key(x): j for j, x in enumerate(grid["x"])}
    row = {_key(y): i for i, y in enumerate(grid["y"])}
    z: list[list[float | None]] = [[None] * len(grid["x"]) for _ in grid["y"]]
    hover: list[list[list[str]]] = [[["", ""] for _ in grid["x"]] for _ in grid["y"]]
    for point, value in zip(points, values, strict=True):
        i, j = row.get(_key(point["y"])), col.get(_key(point["x"]))
        if i is None or j is None:
            continue
        z[i][j] = value
        hover[i][j] = [rec.seed_summary(point), _value_text(view, value)]
    if view == "membership":
        title, zmin, zmax, text_format = f"in the {level!r}-ROI", 0.0, 1.0, "%{z:.2f}"
    elif view == "count":
        title, zmin, zmax, text_format = (
            "seeds",
            0.0,
            max((v for v in values if v is not None), default=1),
            "%{z}",
        )
    else:
        title, zmin, zmax, text_format = "std (pp)", 0.0, None, "%{z:.2f}"
    fig = go.Figure(
        go.Heatmap(
            x=grid["x"],
            y=grid["y"],
            z=z,
            zmin=zmin,
            zmax=zmax,
            colorscale=COLOURS[view],
            colorbar=dict(title=dict(text=title, side="right"), thickness=12, len=0.9),
            texttemplate=text_format,
            textfont=dict(size=10),
            customdata=hover,
            hovertemplate="lr 10^%{y:.2f}, wd 10^%{x:.2f}<br>%{customdata[0]}<br>%{customdata[1]}"
            "<extra></extra>",
            xgap=1,
            ygap=1,
            name=VIEW_WORDS[view],
        )
    )
    outlines = []
    if view == "membership" and level is not None:
        for ellipse in rec.ellipses(analysis, variant):
            if ellipse["level"] == float(level):
                xs, ys = ellipse_outline(
                    ellipse["centre"], ellipse["length"], ellipse["width"], ellipse["angle_deg"]
                )
                outlines.append((xs, ys))
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        name=f"{level!r}-ROI ellipse of the means",
                        line=dict(color="#111111", width=2, dash="dash"),
                        hoverinfo="skip",
                    )
                )
    best = rec.best_point(analysis, variant)
    if best is not None:
        fig.add_trace(
            go.Scatter(
                x=[best["x"]],
                y=[best["y"]],
                mode="markers",
                name="best",
                marker=dict(symbol="star", size=15, color="#ffd600", line=dict(width=1.5, color="#111111")),
                hovertemplate="best: " + rec.seed_summary(best) + "<extra></extra>",
            )
        )
    base_layout(fig, height=height)
    fig.update_layout(
        xaxis_title=AXIS_WD,
        yaxis_title=AXIS_LR,
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0.0, font=dict(size=11)),
        margin=dict(l=60, r=10, t=10, b=100),
    )
    x_range, y_range = rec.axis_ranges(grid, points, outlines)
    if x_range:  # the cells (half a step beyond the outer points) and the ellipse, whole
        half_x, half_y = _half_step(grid["x"]), _half_step(grid["y"])
        fig.update_xaxes(
            range=[min(x_range[0], grid["x"][0] - half_x), max(x_range[1], grid["x"][-1] + half_x)]
        )
        fig.update_yaxes(
            range=[min(y_range[0], grid["y"][0] - half_y), max(y_range[1], grid["y"][-1] + half_y)]
        )
    return fig


def _half_step(axis: list[float]) -> float:
    return (axis[1] - axis[0]) / 2 if len(axis) >= 2 else 0.1


def _value_text(view: str, value: float | None) -> str:
    if value is None:
        return "no value"
    if view == "membership":
        return f"in the ROI in {value:.0%} of the seed resamples"
    if view == "count":
        return f"{value} seeds"
    return f"std {value:.3f} pp"
