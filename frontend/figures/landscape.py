"""Landscape of one variant over (log10 wd, log10 lr): contour, the runs, ROI ellipses, best point,
and every grid point without a result as the legend says (waiting or running; failed or cancelled).

Every variant of a study is drawn with the same axis ranges (`record.study_axis_ranges`) and, by
default, the same `zmin`/`zmax` (the study's colour scale) so the plots compare at a glance; points
below the floor take the lowest colour (clipped). A per-variant scale passes its own `zrange`.
"""

from __future__ import annotations

import plotly.graph_objects as go

from frontend.figures import record as rec
from frontend.figures.common import (
    AXIS_LR,
    AXIS_WD,
    COLORSCALE,
    base_layout,
    clip_segment,
    ellipse_outline,
    empty_figure,
    hyper_text,
    major_axis,
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
# rim, which a hollow circle would be mistaken for. Crossed out: it will get no result unless retried.
MISSING_STYLE = dict(symbol="square-open", size=9, color="#9aa5b1", line=dict(width=1.5))
ENDED_EMPTY_STYLE = dict(symbol="square-x-open", size=10, color="#616e7c", line=dict(width=1.5))
WAITING_TEXT = "waiting for the first results"
NO_RESULT = "no result yet"
ENDED_WITHOUT_RESULT = "failed or cancelled"


def _hover_data(point: dict) -> list:
    """`record.point_customdata` with lr and wd as text (`hyper_text`, the one format of every
    page): [run id, lr, wd, value, seeds, 'mean ± std (n seeds)']; the run id opens its page."""
    run_id, _lr, _wd, *rest = rec.point_customdata(point)
    return [run_id, hyper_text(point.get("lr")), hyper_text(point.get("wd")), *rest]


def landscape_figure(
    analysis: dict,
    variant: str,
    *,
    floor: float | None = None,
    height: int = 420,
    show_colorbar: bool = True,
    grid_points: list[dict] | None = None,
    axis_ranges: tuple[list[float] | None, list[float] | None] | None = None,
    zrange: tuple[float, float] | None = None,
) -> go.Figure:
    """The landscape figure of `variant` from an analysis record (see backend/analysis/records.py).

    `grid_points`: the variant's GET /landscape points, for the grid points without a result;
    `axis_ranges`: the study's shared (x, y) ranges (default: this variant's own);
    `zrange`: this figure's colour range (default: the study's shared scale with `floor`)."""
    metric = analysis.get("metric", "top1")
    label = metric_label(metric)
    zmin, zmax = zrange if zrange is not None else rec.colour_range(analysis, floor)
    grid = rec.landscape_grid(analysis, variant)
    points = rec.landscape_points(analysis, variant)
    unscored = rec.unscored_points(grid_points)
    if not points and grid is None and not unscored:
        return empty_figure(f"{variant}: {WAITING_TEXT}", height=height)

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
    scored_at = {(round(p["x"], 9), round(p["y"], 9)) for p in points if p["value"] is not None}
    missing = [
        p for p in points if p["status"] == "missing" or (p["value"] is None and p["status"] != "diverged")
    ] + [p for p in unscored if p["status"] in ("running", "missing")]
    ended_empty = [p for p in unscored if p["status"] in ("failed", "cancelled")]
    # a point the analysis scored since /landscape was read is drawn as scored only
    missing = [p for p in missing if (round(p["x"], 9), round(p["y"], 9)) not in scored_at]
    ended_empty = [p for p in ended_empty if (round(p["x"], 9), round(p["y"], 9)) not in scored_at]
    hover = (
        "run %{customdata[0]}<br>lr %{customdata[1]}, wd %{customdata[2]}<br>"
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
                customdata=[_hover_data(p) for p in finished],
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
                customdata=[_hover_data(p) for p in diverged],
                hovertemplate=hover.replace("<extra>", " (diverged)<extra>"),
            )
        )
    for name, group, style in ((NO_RESULT, missing, MISSING_STYLE), (ENDED_WITHOUT_RESULT, ended_empty,
                                                                      ENDED_EMPTY_STYLE)):  # fmt: skip
        if not group:
            continue
        fig.add_trace(
            go.Scatter(
                x=[p["x"] for p in group],
                y=[p["y"] for p in group],
                mode="markers",
                name=name,
                marker=style,
                customdata=[
                    [None, hyper_text(p["lr"]), hyper_text(p["wd"]), p.get("status") or "missing"]
                    for p in group
                ],
                hovertemplate="lr %{customdata[1]}, wd %{customdata[2]}<br>no result: %{customdata[3]}"
                "<extra></extra>",
            )
        )

    x_range, y_range = axis_ranges if axis_ranges is not None else (None, None)
    if axis_ranges is None:
        outlines = [
            ellipse_outline(e["centre"], e["length"], e["width"], e["angle_deg"])
            for e in rec.ellipses(analysis, variant)
            if not rec.is_degenerate(e)
        ]
        x_range, y_range = rec.axis_ranges(grid, points + unscored, outlines)
    box = rec.grid_box(analysis, {variant: grid_points or []})
    for ellipse in rec.ellipses(analysis, variant):
        style = ELLIPSE_STYLES.get(ellipse["level"], OTHER_ELLIPSE_STYLE)
        level = f"{ellipse['level']!r}-ROI ellipse"
        if rec.is_degenerate(ellipse):
            # width 0: the points lie on a line; draw that line inside the grid, ends marked
            ends = major_axis(ellipse["centre"], ellipse["length"], ellipse["angle_deg"])
            clipped = clip_segment(*ends, box) if box is not None else None
            xs, ys = (
                clipped if clipped is not None else ([ellipse["centre"][0]] * 2, [ellipse["centre"][1]] * 2)
            )
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines+markers",
                    name=f"{level} (width 0: a segment)",
                    line=style,
                    marker=dict(symbol="line-ns-open", size=12, color=style["color"], line=dict(width=2)),
                    hovertemplate=(
                        f"{level} ({ellipse['n_points']} points on a line)<br>"
                        f"width 0, length {ellipse['length']:.3f} (log10)<extra></extra>"
                    ),
                )
            )
            continue
        xs, ys = ellipse_outline(ellipse["centre"], ellipse["length"], ellipse["width"], ellipse["angle_deg"])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=level,
                line=style,
                hovertemplate=(
                    f"{level} ({ellipse['n_points']} points)<br>"
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
                customdata=[_hover_data(best)],
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
    if not points and grid is None:
        fig.add_annotation(
            text=WAITING_TEXT, showarrow=False, x=0.5, y=1.0, xref="paper", yref="paper", yanchor="bottom"
        )
    if x_range:
        fig.update_xaxes(range=x_range)
    if y_range:
        fig.update_yaxes(range=y_range)
    return fig


def landscape_figures(analysis: dict, *, floor: float | None = None) -> dict[str, go.Figure]:
    """All variants of one study, base first, on one shared colour range and one pair of axes."""
    ranges = rec.study_axis_ranges(analysis)
    return {
        variant: landscape_figure(analysis, variant, floor=floor, axis_ranges=ranges)
        for variant in rec.variant_names(analysis)
    }
