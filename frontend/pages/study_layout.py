"""The study page's layout: header and body; the body (actions, view controls, landscapes, runs,
tables, cost, pruning, extension) is hidden until the study has been read, so an id that names no
study shows nothing to act on."""

from __future__ import annotations

from dash import dcc, html

from frontend.pages import (
    latency_panel,
    study_compression,
    study_downloads,
    study_extensions,
    study_noise,
    study_runs,
)
from frontend.pages import study_data as sd
from frontend.pages.components import figure_card
from frontend.pages.study_view import METRIC_LABELS, SCALES, SPEC_URL, view_from_query

HIDDEN = {"display": "none"}
CSV = study_downloads.CSV_TYPE
POLL_MS = 3000


# --- layout ------------------------------------------------------------------------------------------
def layout(study_id: str, search: str | None = None) -> html.Div:
    view = view_from_query(search)
    return html.Div(
        [
            dcc.Store(id="study-id", data=study_id),
            dcc.Store(id="study-data"),
            # Enabled by load_study only while the study has runs to wait for.
            dcc.Interval(id="study-poll", interval=POLL_MS, disabled=True),
            dcc.Store(id="study-refresh"),  # a write changed the study: read it again now
            dcc.Store(id="study-floor-wanted", data=view["floor"]),  # the URL's floor, used once
            html.Div(id="study-header"),
            html.Div(
                [
                    _actions(),
                    _controls(view),
                    *_landscapes(),
                    *_tables(),
                    latency_panel.section(),  # accuracy vs cost, latency by runtime
                    *_pruning(),
                    study_compression.section(),  # sensitivity scans, iteration rounds
                    study_runs.section(),  # every run, filtered, sorted, paged; each links to its page
                    *_extension(),
                    study_extensions.section(),
                    html.P(
                        [
                            "Every number on this page is defined in ",
                            html.A("docs/spec.md", href=SPEC_URL, target="_blank", id="study-spec-link"),
                            " (what prunescape computes).",
                        ],
                        className="note",
                    ),
                ],
                id="study-body",
                style=HIDDEN,
            ),
        ]
    )


def _actions() -> html.Div:
    return html.Div(
        [
            # The questions are read from the API when the button is pressed (never stale).
            html.Button("Cancel study", id="study-cancel"),
            dcc.ConfirmDialog(id="study-cancel-confirm"),
            html.Button("Delete study", id="study-delete", className="danger"),
            dcc.ConfirmDialog(id="study-delete-confirm"),
            html.Span(id="study-action-result"),
            html.A("runs table ↓", href="#study-runs", id="study-runs-link"),
            study_downloads.export_buttons(),
        ],
        id="study-actions",
        className="actions",
    )


def _controls(view: dict) -> html.Div:
    return html.Div(
        [
            html.Div(
                [
                    html.Label("metric", style={"marginRight": "8px"}),
                    dcc.RadioItems(
                        id="study-metric",
                        options=[{"label": label, "value": key} for key, label in METRIC_LABELS.items()],
                        value=view["metric"],
                        inline=True,
                        inputStyle={"marginLeft": "8px"},
                    ),
                    html.Span(id="study-metric-note", className="muted"),
                ],
                style={"display": "flex", "alignItems": "center", "gap": "4px"},
            ),
            html.Div(
                [
                    html.Label("colour scale", style={"marginRight": "8px"}),
                    dcc.RadioItems(
                        id="study-scale",
                        options=[{"label": label, "value": key} for key, label in SCALES.items()],
                        value=view["scale"],
                        inline=True,
                        inputStyle={"marginLeft": "8px"},
                    ),
                ],
                style={"display": "flex", "alignItems": "center"},
            ),
            html.Div(
                [
                    html.Label(
                        "colour floor (accuracy %), shared by all variants; type a value and press Enter",
                        htmlFor="study-floor-box",
                    ),
                    html.Div(
                        [
                            dcc.Input(
                                id="study-floor-box",
                                type="number",
                                step=0.1,
                                debounce=True,  # applies on Enter (or leaving the box), not per keystroke
                                style={"width": "90px"},
                            ),
                            html.Div(
                                dcc.Slider(
                                    id="study-floor",
                                    min=0,
                                    max=100,
                                    step=0.1,
                                    value=None,
                                    marks=None,
                                    allow_direct_input=False,
                                    updatemode="mouseup",
                                    tooltip={"placement": "bottom", "always_visible": False},
                                ),
                                style={"flex": "1 1 auto"},
                            ),
                        ],
                        style={"display": "flex", "alignItems": "center", "gap": "8px"},
                    ),
                ],
                className="slider-wrap",
            ),
        ],
        className="controls panel",
    )


def _landscapes() -> list:
    return [
        html.H2("Landscapes"),
        study_noise.view_control(),
        html.P(id="study-scale-note", className="note"),
        html.Div(id="study-landscapes", className="grid-cards"),
    ]


def _tables() -> list:
    return [
        html.H2("ROI ellipses"),
        html.Div(id="study-ellipse-table", className="panel"),
        study_noise.section(),
        html.H2("Performance risk of not retuning"),
        html.P(sd.RISK_DEFINITIONS, className="note", id="study-risk-definitions"),
        html.Div(id="study-risk-table", className="panel"),
        html.Div(id="study-shift", className="panel"),
        html.P(id="study-risk-note", className="wait-note"),
        html.Div(
            [
                figure_card("risk-absolute", "Risk d, absolute (pp)", csv=CSV),
                figure_card("risk-relative", "Risk d/f*, relative (%)", csv=CSV),
            ],
            id="study-risk-boxes",
            className="grid-2",
        ),
    ]


def _pruning() -> list:
    return [
        html.H2("Pruning"),
        html.Div(id="study-kept", className="grid-cards"),
        html.P(id="study-hist-note", className="wait-note"),
        html.Div(
            [
                html.Div(
                    [
                        html.Label("weight histograms of variant"),
                        dcc.Dropdown(id="study-hist-variant", clearable=False, style={"width": "220px"}),
                        html.Label("layer"),
                        dcc.Dropdown(id="study-hist-layer", clearable=False, style={"width": "320px"}),
                    ],
                    className="controls",
                    style={"marginBottom": "8px"},
                ),
                figure_card("weight-histogram", "Weight histogram", csv=CSV),
            ],
            id="study-hist-panel",
            className="panel",
            style={"marginTop": "16px"},
        ),
    ]


def _extension() -> list:
    return [
        html.H2("Grid extension"),
        html.Div(
            [
                html.Div(id="study-extension"),
                html.Button("Extend the grid as proposed", id="study-extend", className="primary"),
                dcc.ConfirmDialog(id="study-extend-confirm"),
                html.Div(id="study-extend-result", style={"marginTop": "8px"}),
            ],
            className="panel",
        ),
    ]
