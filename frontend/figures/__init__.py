"""Pure figure functions: analysis record / API JSON in, plotly figure out (no HTTP, no Dash)."""

from frontend.figures.charts import (
    epoch_curves_figure,
    kept_fractions_figure,
    risk_box_figure,
    sensitivity_figure,
    tradeoff_figure,
    weight_histogram_figure,
)
from frontend.figures.common import AXIS_LR, AXIS_WD, figure_to_csv, pareto_front
from frontend.figures.landscape import landscape_figure, landscape_figures

__all__ = [
    "AXIS_LR",
    "AXIS_WD",
    "epoch_curves_figure",
    "figure_to_csv",
    "kept_fractions_figure",
    "landscape_figure",
    "landscape_figures",
    "pareto_front",
    "risk_box_figure",
    "sensitivity_figure",
    "tradeoff_figure",
    "weight_histogram_figure",
]
