"""The study's other figures: risk box plots, accuracy vs cost with its Pareto front, kept
fractions per layer, weight histograms, epoch curves and sensitivity scans.

Each takes plain numbers (from the analysis record or the API's JSON) and returns a plotly figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from frontend.figures.common import (
    base_layout,
    empty_figure,
    finite,
    metric_label,
    plotly_text,
    variant_colour,
)


def risk_box_figure(risk_rows: Sequence[dict], *, relative: bool = False, height: int = 360) -> go.Figure:
    """One box per variant (base first) of the accuracy lost at the base model's 0.5-ROI.

    `risk_rows`: [{'variant', 'values': [pp], 'relative_values': [fraction]}] in the study's order.
    """
    fig = go.Figure()
    for index, row in enumerate(risk_rows):
        values = row.get("relative_values" if relative else "values") or []
        values = [v * 100.0 if relative else v for v in values if finite(v)]
        if not values:
            continue
        label = plotly_text(row["variant"])
        fig.add_trace(
            go.Box(
                y=values,
                name=label,
                boxpoints="all",
                jitter=0.35,
                pointpos=0,
                marker=dict(color=variant_colour(index), size=5, opacity=0.7),
                line=dict(color=variant_colour(index)),
                boxmean=True,
                hovertemplate=label + ": %{y:.3g}" + (" %" if relative else " pp") + "<extra></extra>",
            )
        )
    if not fig.data:
        return empty_figure("no performance-risk values yet (needs the base model's 0.5-ROI)", height=height)
    base_layout(fig, height=height)
    fig.update_layout(showlegend=False)
    fig.update_xaxes(
        title_text="variant",
        categoryorder="array",
        categoryarray=[plotly_text(r["variant"]) for r in risk_rows],
    )
    fig.update_yaxes(
        title_text="relative loss d/f(best) (%)" if relative else "accuracy loss vs own best (pp)",
        rangemode="tozero",
    )
    return fig


def tradeoff_figure(
    rows: Sequence[dict],
    *,
    cost_key: str,
    cost_label: str,
    metric: str = "top1",
    front: Sequence[str] | None = None,
    log_x: bool = False,
    height: int = 360,
) -> go.Figure:
    """Accuracy vs a cost (latency, size): one point per variant and the Pareto front given.

    `rows`: [{'variant', metric: best accuracy, cost_key: value}], cheaper and more accurate is better.
    `front`: the names on the Pareto front as the API computed it (`/compare`'s per-runtime
    `pareto_front`), drawn as given; None draws none (the figure computes no front of its own).
    """
    points = [(row.get(cost_key), row.get(metric), row["variant"]) for row in rows]
    usable = [p for p in points if finite(p[0]) and finite(p[1])]
    if not usable:
        return empty_figure(f"no {cost_label} measured yet", height=height)
    fig = go.Figure()
    by_name = {p[2]: p for p in usable}
    front = sorted((by_name[name] for name in front or () if name in by_name), key=lambda p: p[0])
    if len(front) >= 2:
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in front],
                y=[p[1] for p in front],
                mode="lines",
                name="Pareto front",
                line=dict(color="#9aa5b1", dash="dot", width=2, shape="hv"),
                hoverinfo="skip",
            )
        )
    order = {row["variant"]: i for i, row in enumerate(rows)}
    front_names = {p[2] for p in front}
    fig.add_trace(
        go.Scatter(
            x=[p[0] for p in usable],
            y=[p[1] for p in usable],
            mode="markers+text",
            name="variants",
            text=[plotly_text(p[2]) for p in usable],
            textposition="top center",
            marker=dict(
                size=12,
                color=[variant_colour(order[p[2]]) for p in usable],
                symbol=["diamond" if p[2] in front_names else "circle" for p in usable],
                line=dict(width=1, color="#ffffff"),
            ),
            customdata=[[plotly_text(p[2])] for p in usable],
            hovertemplate="%{customdata[0]}<br>"
            + cost_label
            + " %{x:.4g}<br>"
            + metric_label(metric)
            + " %{y:.2f}<extra></extra>",
            cliponaxis=False,
        )
    )
    base_layout(fig, height=height)
    fig.update_xaxes(title_text=cost_label, type="log" if log_x else "linear")
    fig.update_yaxes(title_text="best " + metric_label(metric))
    return fig


def kept_fractions_figure(variant: str, kept_fractions: dict[str, float], *, height: int = 320) -> go.Figure:
    """Fraction of each prunable layer's filters a structured variant keeps (1 = untouched)."""
    if not kept_fractions:
        return empty_figure(f"{variant}: no per-layer fractions stored", height=height)
    layers = list(kept_fractions)
    fig = go.Figure(
        go.Bar(
            x=[plotly_text(name) for name in layers],
            y=[kept_fractions[name] for name in layers],
            name=plotly_text(variant),
            marker_color="#2f6fde",
            hovertemplate="%{x}: keeps %{y:.1%}<extra></extra>",
        )
    )
    base_layout(fig, height=height)
    fig.update_xaxes(title_text="layer", tickangle=-45, tickfont=dict(size=10), automargin=True)
    fig.update_yaxes(title_text="kept fraction of filters", range=[0, 1.05], tickformat=".0%")
    fig.update_layout(showlegend=False, bargap=0.15)
    return fig


def weight_histogram_figure(layer: str, histograms: dict[str, dict], *, height: int = 320) -> go.Figure:
    """Overlaid weight histograms of one layer: e.g. {'before': {edges, counts}, 'after pruning': ...}."""
    fig = go.Figure()
    for index, (label, hist) in enumerate(histograms.items()):
        edges, counts = hist.get("edges") or [], hist.get("counts") or []
        if len(edges) != len(counts) + 1:
            continue
        centres = [(edges[i] + edges[i + 1]) / 2 for i in range(len(counts))]
        widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
        label = plotly_text(label)
        fig.add_trace(
            go.Bar(
                x=centres,
                y=counts,
                width=widths,
                name=label,
                opacity=0.6,
                marker_color=variant_colour(index),
                hovertemplate=label + ": %{y} weights near %{x:.3g}<extra></extra>",
            )
        )
    if not fig.data:
        return empty_figure(f"no weight histogram for {layer}", height=height)
    base_layout(fig, height=height)
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text=f"weight value ({plotly_text(layer)})")
    fig.update_yaxes(title_text="count")
    return fig


def epoch_curves_figure(
    epochs: Sequence[dict], *, height: int = 520, empty_text: str = "no epochs recorded yet"
) -> go.Figure:
    """Loss, top-1, top-5 and learning rate per epoch of one run (2 x 2 panels)."""
    if not epochs:
        return empty_figure(empty_text, height=height)
    xs = [e.get("epoch") for e in epochs]
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=("loss", "top-1 accuracy (%)", "top-5 accuracy (%)", "learning rate"),
        horizontal_spacing=0.1,
        vertical_spacing=0.16,
    )
    panels = [
        (1, 1, [("train_loss", "train loss", "#e8710a"), ("val_loss", "val loss", "#2f6fde")]),
        (1, 2, [("train_top1", "train top-1", "#e8710a"), ("val_top1", "val top-1", "#2f6fde")]),
        (2, 1, [("val_top5", "val top-5", "#2f6fde")]),
        (2, 2, [("lr", "learning rate", "#334e68")]),
    ]
    for row, col, series in panels:
        for key, label, colour in series:
            # the API stores validation accuracy as top1/top5; the engine calls it val_top1/val_top5
            ys = [e.get(key, e.get(key.removeprefix("val_"))) for e in epochs]
            if not any(finite(y) for y in ys):
                continue
            fig.add_trace(
                go.Scatter(
                    x=xs, y=ys, mode="lines+markers", name=label, line=dict(color=colour), marker=dict(size=4)
                ),
                row=row,
                col=col,
            )
    base_layout(fig, height=height)
    fig.update_layout(margin=dict(l=60, r=20, t=40, b=70), legend=dict(y=-0.12))
    fig.update_xaxes(title_text="epoch", row=2)  # the top row's would collide with the titles below
    fig.update_xaxes(rangemode="tozero", dtick=max(1, round(len(xs) / 8)) if xs else None)
    fig.update_yaxes(type="log", row=2, col=2)
    return fig


def sensitivity_figure(scans: Sequence[dict], *, metric: str = "top1", height: int = 340) -> go.Figure:
    """Accuracy after pruning a fraction p without retraining: one curve per (variant, kind, scope, layer).

    `scans`: [{'label', 'fractions': [p], 'accuracy': [%]}].
    """
    fig = go.Figure()
    for index, scan in enumerate(scans):
        xs, ys = scan.get("fractions") or [], scan.get("accuracy") or []
        if not xs:
            continue
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=plotly_text(scan.get("label", f"scan {index + 1}")),
                line=dict(color=variant_colour(index)),
                hovertemplate="pruned %{x:.0%}: %{y:.2f} %<extra>%{fullData.name}</extra>",
            )
        )
    if not fig.data:
        return empty_figure("no sensitivity scan", height=height)
    base_layout(fig, height=height)
    fig.update_xaxes(title_text="fraction pruned (no retraining)", tickformat=".0%")
    fig.update_yaxes(title_text=metric_label(metric))
    return fig
