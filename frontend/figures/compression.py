"""Iterative pruning, round by round: accuracy right after each pruning step and after the
retraining that follows it (VariantOut.iterations, docs/api.md)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from frontend.figures.common import base_layout, empty_figure, finite, metric_label, plotly_text

AFTER_PRUNING = dict(color="#c62828", dash="dot")
AFTER_RETRAINING = dict(color="#2f6fde", dash="solid")


def iteration_figure(
    variant: str, steps: Sequence[dict], *, metric: str = "top1", height: int = 320
) -> go.Figure:
    """Two curves over the rounds: after pruning (no retraining yet) and after the round's retraining.

    `steps`: [{'step', 'target', 'after_pruning', 'after_retraining', 'reached'}] ('reached': the
    round's FLOPs ratio or sparsity as text, for the hover).
    """
    usable = [s for s in steps if finite(s.get("after_pruning")) or finite(s.get("after_retraining"))]
    if not usable:
        return empty_figure(f"{variant}: no pruning round recorded yet", height=height)
    xs = [s["step"] for s in usable]
    fig = go.Figure()
    for key, label, line in (
        ("after_pruning", "after pruning", AFTER_PRUNING),
        ("after_retraining", "after retraining", AFTER_RETRAINING),
    ):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[s.get(key) if finite(s.get(key)) else None for s in usable],
                mode="lines+markers",
                name=label,
                line=line,
                marker=dict(size=8),
                customdata=[[plotly_text(s.get("reached") or "")] for s in usable],
                hovertemplate="round %{x} "
                + label
                + ": %{y:.2f} %<br>%{customdata[0]}<extra>"
                + plotly_text(variant)
                + "</extra>",
            )
        )
    base_layout(fig, height=height)
    fig.update_xaxes(title_text="pruning round", dtick=1, tickmode="linear")
    fig.update_yaxes(title_text=metric_label(metric))
    return fig
