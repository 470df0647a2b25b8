"""FLOPs ratio next to the measured latency ratio of every pruned variant, on one runtime.

Users of pruning libraries report "MACs went down, latency did not": the two bars side by side
show it. Both ratios come from the API (`/compare`: `flops_kept`, and `latency.by_runtime[rt]`
rows' `latency_ratio`); nothing is divided here.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from frontend.figures.common import base_layout, empty_figure, finite, plotly_text

FLOPS_COLOUR = "#9aa5b1"
LATENCY_COLOUR = "#2f6fde"


def ratio_figure(rows: Sequence[dict], *, runtime: str, batch: str, height: int = 340) -> go.Figure:
    """Grouped bars per variant: FLOPs / base FLOPs and latency / base latency on `runtime`.

    `rows`: [{'variant', 'flops_ratio': float | None, 'latency_ratio': float | None,
    'reason': str | None}] (reason: why there is no latency ratio on this runtime).
    """
    if not rows:
        return empty_figure("no pruned variant in this study", height=height)
    names = [plotly_text(row["variant"]) for row in rows]
    where = f"{plotly_text(runtime)}, batch {plotly_text(batch)}"
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=names,
            y=[row["flops_ratio"] if finite(row["flops_ratio"]) else None for row in rows],
            name="FLOPs / base FLOPs",
            marker_color=FLOPS_COLOUR,
            hovertemplate="%{x}: FLOPs x%{y:.3f} of the base<extra></extra>",
        )
    )
    fig.add_trace(
        go.Bar(
            x=names,
            y=[row["latency_ratio"] if finite(row["latency_ratio"]) else None for row in rows],
            name=f"latency / base latency ({where})",
            marker_color=LATENCY_COLOUR,
            customdata=[[plotly_text(row.get("reason") or "")] for row in rows],
            hovertemplate="%{x}: latency x%{y:.3f} of the base on " + where + "<extra></extra>",
        )
    )
    missing = [(name, row) for name, row in zip(names, rows, strict=True) if not finite(row["latency_ratio"])]
    for name, row in missing:
        fig.add_annotation(
            x=name,
            y=0,
            yanchor="bottom",
            text=f"no latency ratio on {where}",
            hovertext=plotly_text(row.get("reason") or ""),
            showarrow=False,
            font=dict(size=10, color="#616e7c"),
            textangle=-90,
        )
    fig.add_hline(y=1.0, line=dict(color="#111111", width=1, dash="dot"))
    base_layout(fig, height=height)
    fig.update_layout(barmode="group", bargap=0.3)
    fig.update_xaxes(title_text="pruned variant")
    fig.update_yaxes(title_text="ratio to the base (< 1: smaller / faster)", rangemode="tozero")
    return fig
