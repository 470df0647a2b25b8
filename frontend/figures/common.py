"""What every figure shares: axis names, the metric's label, the colour scale, the CSV of a figure."""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import plotly.graph_objects as go

AXIS_WD = "log10 weight decay"
AXIS_LR = "log10 learning rate"
METRIC_LABELS = {"top1": "top-1 accuracy (%)", "top5": "top-5 accuracy (%)"}
COLORSCALE = "Viridis"
# One colour per variant, in the record's order (base first), for every per-variant chart.
VARIANT_COLOURS = ["#334e68", "#2f6fde", "#e8710a", "#2e7d32", "#8e24aa", "#c62828", "#00897b", "#6d4c41"]
FONT = dict(family="system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif", size=12, color="#1f2933")


def plotly_text(value: Any) -> str:
    """`value` as text plotly shows literally. Plotly draws a subset of HTML (<a href>, <b>, <br>,
    ...) in trace names, legends, tick labels, hover labels and annotations, so every user text
    (variant, layer and scan names) goes through here: <, > and & become entities (plotly shows
    them as the characters), and a hovertemplate field `%{` is broken up so it is not filled in."""
    return html.escape(str(value), quote=False).replace("%{", "%&#123;")


def plain_text(value: Any) -> Any:
    """The inverse of plotly_text for a string (a figure's data back as the user wrote it)."""
    return html.unescape(value) if isinstance(value, str) else value


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, f"{metric} (%)")


def variant_colour(index: int) -> str:
    return VARIANT_COLOURS[index % len(VARIANT_COLOURS)]


def base_layout(fig: go.Figure, *, title: str | None = None, height: int = 380) -> go.Figure:
    """Same margins, font and legend placement everywhere: legends sit below the plot, never on it."""
    fig.update_layout(
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)) if title else None,
        height=height,
        margin=dict(l=60, r=20, t=40 if title else 16, b=60),
        font=FONT,
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0.0, font=dict(size=11)),
        hoverlabel=dict(font_size=12),
    )
    fig.update_xaxes(showline=True, linecolor="#9aa5b1", gridcolor="#eef2f6", zeroline=False, ticks="outside")
    fig.update_yaxes(showline=True, linecolor="#9aa5b1", gridcolor="#eef2f6", zeroline=False, ticks="outside")
    return fig


def empty_figure(message: str, *, height: int = 300) -> go.Figure:
    """A figure that only says `message` (escaped: it may name a variant or a layer)."""
    fig = go.Figure()
    fig.add_annotation(text=plotly_text(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return base_layout(fig, height=height)


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def hyper_text(value: Any) -> str:
    """A learning rate or weight decay as every page and tooltip writes it: 3 significant figures,
    scientific below 1e-4 (0.1, 0.0398, 0.000251, 3.98e-05). Tooltips get the text, not a d3
    format, so a hover and a table never disagree."""
    return f"{value:.3g}" if finite(value) else "—"


def clip_segment(
    p0: Sequence[float], p1: Sequence[float], box: Sequence[float]
) -> tuple[list[float], list[float]] | None:
    """The part of the segment p0-p1 inside box (xmin, xmax, ymin, ymax) as ([x0, x1], [y0, y1]),
    or None when it misses the box (Liang-Barsky)."""
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    xmin, xmax, ymin, ymax = box
    for p, q in ((-dx, x0 - xmin), (dx, xmax - x0), (-dy, y0 - ymin), (dy, ymax - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return [x0 + t0 * dx, x0 + t1 * dx], [y0 + t0 * dy, y0 + t1 * dy]


def major_axis(centre: Sequence[float], length: float, angle_deg: float) -> tuple[list[float], list[float]]:
    """The two ends of an ellipse's major axis (a width-0 ellipse is this segment)."""
    theta = math.radians(angle_deg)
    dx, dy = length / 2 * math.cos(theta), length / 2 * math.sin(theta)
    return [centre[0] - dx, centre[1] - dy], [centre[0] + dx, centre[1] + dy]


def ellipse_outline(
    centre: Sequence[float], length: float, width: float, angle_deg: float, n: int = 97
) -> tuple[list[float], list[float]]:
    """Closed outline of an ellipse given its full axes (length >= width) and major-axis angle.

    Coordinates are (log10 wd, log10 lr); the angle is measured from the x axis, counter-clockwise.
    """
    a, b = length / 2.0, width / 2.0
    theta = math.radians(angle_deg)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    xs, ys = [], []
    for i in range(n):
        t = 2.0 * math.pi * i / (n - 1)
        x, y = a * math.cos(t), b * math.sin(t)
        xs.append(centre[0] + x * cos_t - y * sin_t)
        ys.append(centre[1] + x * sin_t + y * cos_t)
    return xs, ys


def pareto_front(points: Iterable[tuple[float, float, Any]]) -> list[tuple[float, float, Any]]:
    """Points not dominated when lower cost (first) and higher accuracy (second) are better.

    Returned sorted by cost, so they draw as a staircase from cheap to accurate.
    """
    usable = sorted((p for p in points if finite(p[0]) and finite(p[1])), key=lambda p: (p[0], -p[1]))
    front: list[tuple[float, float, Any]] = []
    best_accuracy = -math.inf
    for point in usable:
        if point[1] > best_accuracy:
            front.append(point)
            best_accuracy = point[1]
    return front


def _column(value: Any, n: int) -> list[Any]:
    if value is None:
        return [None] * n
    if isinstance(value, list | tuple):
        return list(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return [value] * n


def figure_to_csv(figure: dict | go.Figure) -> str:
    """The data behind a figure as CSV, one row per plotted point (or grid cell), any trace type.

    Works on the figure as the browser holds it, so what downloads is exactly what is drawn.
    """
    fig = figure.to_plotly_json() if isinstance(figure, go.Figure) else figure
    rows: list[dict[str, Any]] = []
    for index, trace in enumerate(fig.get("data", [])):
        name = plain_text(trace.get("name")) or f"trace {index}"
        kind = trace.get("type", "scatter")
        x, y, z = trace.get("x"), trace.get("y"), trace.get("z")
        if kind in ("contour", "heatmap") and z is not None:
            xs, ys = _column(x, 0), _column(y, 0)
            for i, row in enumerate(z):
                for j, value in enumerate(row):
                    rows.append(
                        {
                            "trace": name,
                            "x": xs[j] if j < len(xs) else j,
                            "y": ys[i] if i < len(ys) else i,
                            "value": value,
                        }
                    )
            continue
        if kind == "box":
            values = _column(y if y is not None else x, 0)
            rows.extend({"trace": name, "value": value} for value in values)
            continue
        n = max(len(_column(x, 0)), len(_column(y, 0)))
        xs, ys = _column(x, n), _column(y, n)
        marker = trace.get("marker") or {}
        colours = marker.get("color")
        values = _column(colours, n) if isinstance(colours, list | tuple) else [None] * n
        customdata = _column(trace.get("customdata"), n)
        texts = _column(trace.get("text"), n)
        for i in range(n):
            row = {"trace": name, "x": plain_text(xs[i]), "y": plain_text(ys[i])}
            if values[i] is not None:
                row["value"] = values[i]
            if customdata[i] is not None:
                extra = customdata[i] if isinstance(customdata[i], list | tuple) else [customdata[i]]
                for k, item in enumerate(extra):
                    row[f"customdata_{k}"] = plain_text(item)
            if texts[i] is not None:
                row["text"] = plain_text(texts[i])
            rows.append(row)
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or ["trace"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
