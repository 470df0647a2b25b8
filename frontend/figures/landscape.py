"""Landscape of one variant over (log10 wd, log10 lr): contour, the runs, ROI ellipses, best point.

Every variant of a study is drawn with the same `zmin`/`zmax` (the study's colour scale) so the
plots compare at a glance; points below the floor take the lowest colour (clipped).
"""

from __future__ import annotations

import plotly.graph_objects as go

from frontend.figures import record as rec
from frontend.figures.common import (
    AXIS_LR,
    AXIS_WD,
    COLORSCALE,
    base_layout,
    ellipse_outline,
    empty_figure,
    metric_label,
)

# The study's two ROI levels, two clearly different line styles (and widths) so they read in grey
# print too, keyed by level: a 1.0-ROI drawn alone (its 0.5-ROI has < 5 points) keeps its own style,
# as the legend text under "Landscapes" promises. Any other level asked for: thin dotted grey.
ELLIPSE_STYLES = {
    0.5: dict(dash="solid", width=2.5, color="#d32f2f"),
    1.0: dict(dash="dash", width=2.0, color="#111111"),
}
OTHER_ELLIPSE_STYLE = dict(dash="dot", width=1.5, color="#6b7280")
DIVERGED_STYLE = dict(symbol="x-thin", size=11, color="#c62828", line=dict(width=2.5, color="#c62828"))
# A grey hollow square: a finished point clipped to the colour floor is a dark dot with a white
# rim, which a hollow circle would be mistaken for.
MISSING_STYLE = dict(symbol="square-open", size=9, color="#9aa5b1", line=dict(width=1.5))


def landscape_figure(
    analysis: dict,
    variant: str,
    *,
    floor: float | None = None,
    height: int = 420,
    show_colorbar: bool = True,
) -> go.Figure:
    """The landscape figure of `variant` from an analysis record (see backend/analysis/records.py)."""
    metric = analysis.get("metric", "top1")
    label = metric_label(metric)
    zmin, zmax = rec.colour_range(analysis, floor)
    grid = rec.landscape_grid(analysis, variant)
    points = rec.landscape_points(analysis, variant)
    if not points and grid is None:
        return empty_figure(f"{variant}: no finished runs yet", height=height)

    fig = go.Figure()
    if grid is not None and rec.grid_has_contour(grid):
        fig.add_trace(
            go.Contour(
                x=grid["x"],
                y=grid["y"],
                z=grid["z"],
                name=f"{label} (contour)",
                colorscale=COLORSCALE,
                zmin=zmin,
                zmax=zmax,
                zauto=False,
                contours=dict(
                    coloring="heatmap", showlines=True, start=zmin, end=zmax, size=(zmax - zmin) / 8 or 1
                ),
                line=dict(width=0.5, color="rgba(255,255,255,0.6)"),
                connectgaps=False,
                colorbar=dict(title=dict(text=label, side="right"), thickness=12, len=0.9, tickformat=".2f")
                if show_colorbar
                else None,
                showscale=show_colorbar,
                hoverinfo="skip",
                showlegend=False,
            )
        )

    finished = [p for p in points if p["status"] not in ("diverged", "missing") and p["value"] is not None]
    diverged = [p for p in points if p["status"] == "diverged"]
    missing = [
        p for p in points if p["status"] == "missing" or (p["value"] is None and p["status"] != "diverged")
    ]
    hover = (
        "run %{customdata[0]}<br>lr %{customdata[1]:.3g}, wd %{customdata[2]:.3g}<br>"
        + label
        + " %{customdata[5]}<extra>%{fullData.name}</extra>"  # mean ± std (n seeds)
    )
    if finished:
        fig.add_trace(
            go.Scatter(
                x=[p["x"] for p in finished],
                y=[p["y"] for p in finished],
                mode="markers",
                name="runs",
                marker=dict(
                    color=[max(p["value"], zmin) for p in finished],
                    colorscale=COLORSCALE,
                    cmin=zmin,
                    cmax=zmax,
                    size=9,
                    line=dict(width=1, color="#ffffff"),
                    showscale=False,
                ),
                customdata=[rec.point_customdata(p) for p in finished],
                hovertemplate=hover,
            )
        )
    if diverged:
        fig.add_trace(
            go.Scatter(
                x=[p["x"] for p in diverged],
                y=[p["y"] for p in diverged],
                mode="markers",
                name="diverged",
                marker=DIVERGED_STYLE,
                customdata=[rec.point_customdata(p) for p in diverged],
                hovertemplate=hover.replace("<extra>", " (diverged)<extra>"),
            )
        )
    if missing:
        fig.add_trace(
            go.Scatter(
                x=[p["x"] for p in missing],
                y=[p["y"] for p in missing],
                mode="markers",
                name="no result yet",
                marker=MISSING_STYLE,
                customdata=[rec.point_customdata(p) for p in missing],
                hovertemplate="lr %{customdata[1]:.3g}, wd %{customdata[2]:.3g}<br>no result yet<extra></extra>",
            )
        )

    for ellipse in rec.ellipses(analysis, variant):
        style = ELLIPSE_STYLES.get(ellipse["level"], OTHER_ELLIPSE_STYLE)
        xs, ys = ellipse_outline(ellipse["centre"], ellipse["length"], ellipse["width"], ellipse["angle_deg"])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=f"{ellipse['level']!r}-ROI ellipse",
                line=style,
                hovertemplate=(
                    f"{ellipse['level']!r}-ROI ellipse ({ellipse['n_points']} points)<br>"
                    f"length {ellipse['length']:.3f}, width {ellipse['width']:.3f} (log10)<extra></extra>"
                ),
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
                marker=dict(symbol="star", size=17, color="#ffd600", line=dict(width=1.5, color="#111111")),
                customdata=[rec.point_customdata(best)],
                hovertemplate="best: " + hover,
            )
        )

    base_layout(fig, title=None, height=height)
    fig.update_layout(
        xaxis_title=AXIS_WD,
        yaxis_title=AXIS_LR,
        legend=dict(orientation="h", yanchor="top", y=-0.18, x=0.0, font=dict(size=11)),
        margin=dict(l=60, r=10, t=10, b=100),
        uirevision=variant,
    )
    outlines = [
        ellipse_outline(e["centre"], e["length"], e["width"], e["angle_deg"])
        for e in rec.ellipses(analysis, variant)
    ]
    x_range, y_range = rec.axis_ranges(grid, points, outlines)
    if x_range:
        fig.update_xaxes(range=x_range)
    if y_range:
        fig.update_yaxes(range=y_range)
    return fig


def landscape_figures(analysis: dict, *, floor: float | None = None) -> dict[str, go.Figure]:
    """All variants of one study, base first, on one shared colour range."""
    return {
        variant: landscape_figure(analysis, variant, floor=floor) for variant in rec.variant_names(analysis)
    }
