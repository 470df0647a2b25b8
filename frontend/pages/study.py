"""`/studies/<id>`: the study's landscapes side by side (one pair of axes, one colour scale or one
per variant), its runs, its two result tables, risk, shift verdicts, accuracy vs cost, pruning
details, sensitivity scans and the grid extension; cancelling, deleting, extending and exporting
the study. Polls the API while runs are going and stops when the study is done (the poll starts
disabled: a finished study is read once and never polled).

The view (metric, colour scale, floor) lives in the URL (`?metric=top5&scale=variant&floor=91.5`):
a link shows what its sender saw, and a reload keeps it. An id that names no study is a not-found
page with nothing to act on.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from frontend.api_client import ApiError, parse_id
from frontend.figures import (
    kept_fractions_figure,
    landscape_figure,
    risk_box_figure,
    sensitivity_figure,
    tradeoff_figure,
    weight_histogram_figure,
)
from frontend.figures import record as rec
from frontend.pages import study_data as sd
from frontend.pages import study_downloads, study_runs
from frontend.pages.components import (
    data_table,
    figure_card,
    fmt,
    fmt_acc,
    fmt_hyper,
    not_found,
    run_progress,
    status_badge,
)
from frontend.pages.messages import error_text
from frontend.pages.study_record import active_runs, study_is_done, study_is_open, study_summary
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal, refusal

POLL_MS = 3000
HIDDEN = {"display": "none"}
METRICS = ("top1", "top5")
METRIC_LABELS = {"top1": " top-1", "top5": " top-5"}
SCALES = {"shared": " one scale for every variant", "variant": " each variant its own scale"}
FLOOR_MIN, FLOOR_MAX = 0.0, 100.0
SPEC_URL = "/docs/spec.md"
CSV = study_downloads.CSV_TYPE


# --- the view in the URL -----------------------------------------------------------------------------
def view_from_query(search: str | None) -> dict[str, Any]:
    """metric, scale and floor from the page's query string, each checked (the URL is anyone's):
    an unknown word or a floor that is not a finite accuracy is ignored."""
    query = parse_qs((search or "").lstrip("?"), max_num_fields=10)
    metric = (query.get("metric") or ["top1"])[0]
    scale = (query.get("scale") or ["shared"])[0]
    floor = None
    try:
        value = float((query.get("floor") or [""])[0][:20])
        floor = value if math.isfinite(value) and FLOOR_MIN <= value <= FLOOR_MAX else None
    except ValueError:
        pass
    return {
        "metric": metric if metric in METRICS else "top1",
        "scale": scale if scale in SCALES else "shared",
        "floor": floor,
    }


def query_string(metric: Any, scale: Any, floor: Any) -> str:
    """The query string of a view (what `view_from_query` reads back)."""
    params = {
        "metric": metric if metric in METRICS else "top1",
        "scale": scale if scale in SCALES else "shared",
    }
    if isinstance(floor, int | float) and math.isfinite(floor) and scale != "variant":
        params["floor"] = f"{floor:.1f}"
    return "?" + urlencode(params)


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
                    study_runs.section(),
                    *_tables(),
                    *_cost(),
                    *_pruning(),
                    html.Div(id="study-sensitivity"),
                    *_extension(),
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
        html.P(id="study-scale-note", className="note"),
        html.Div(id="study-landscapes", className="grid-cards"),
    ]


def _tables() -> list:
    return [
        html.H2("ROI ellipses"),
        html.Div(id="study-ellipse-table", className="panel"),
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


def _cost() -> list:
    return [
        html.H2("Accuracy vs cost"),
        html.P(id="study-cost-note", className="wait-note"),
        html.Div(
            [
                html.Div(
                    [
                        figure_card("tradeoff-latency", "Accuracy vs latency (batch 1)", csv=CSV),
                        figure_card("tradeoff-size", "Accuracy vs size on disk", csv=CSV),
                    ],
                    className="grid-2",
                ),
                html.Div(id="study-measure-table", className="panel", style={"marginTop": "16px"}),
            ],
            id="study-cost",
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


def _digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


# --- the header ------------------------------------------------------------------------------------
def best_line(best_rows: list[dict]) -> html.Div:
    """The summary's best top-1 of every variant, with the grid point it was found at."""
    items = [
        html.Span(
            [html.B(row["variant"]), f" {fmt_acc(row['top1'])} %"]
            + ([f" ± {fmt_acc(row['std'])}"] if row.get("std") is not None else [])
            + ([f" ({row['n']} seeds)"] if (row.get("n") or 0) > 1 else [])
            + (
                [f" at lr {fmt_hyper(row['lr'])}, wd {fmt_hyper(row['wd'])}"]
                if row.get("lr") is not None
                else []
            ),
            className="best-item",
            title="the best seed-mean of the grid (docs/spec.md section 5)",
        )
        if row.get("top1") is not None
        else html.Span([html.B(row["variant"]), " no result yet"], className="best-item muted")
        for row in best_rows
    ]
    return html.Div(
        [html.Span("best top-1", className="best-label"), *items], id="study-best", className="meta"
    )


def header(study: dict, best_rows: list[dict] | None = None) -> html.Div:
    s = study_summary(study)
    return html.Div(
        [
            html.H1([s["name"], " ", status_badge(s["status"])]),
            html.Div(
                [
                    html.Span([html.B("model "), s["model"] or "—"]),
                    html.Span([html.B("dataset "), s["dataset"] or "—"]),
                    html.Span([html.B("variants "), ", ".join(map(str, s["variants"])) or "—"]),
                    html.Span([html.B("created by "), s["created_by"] or "—"]),
                    html.Span([html.B("study id "), str(s["id"])]),
                ],
                className="meta",
            ),
            best_line(best_rows) if best_rows else None,
            html.Div(run_progress(study["progress"]), id="study-progress", style={"maxWidth": "720px"}),
        ]
    )


def missing_page(data: dict) -> Any:
    """The header for a study the API would not show: not found (nothing to act on), refused for
    want of a token, or the API's reason in a sentence."""
    if data.get("status") == 404:
        return not_found("study", data.get("study_id"), "There is no such study: it may have been deleted.")
    return read_refusal(data.get("status"), data.get("detail")) or html.P(
        f"Study: {data['error']}", className="error"
    )


# --- the dialogs' questions and the writes' answers ---------------------------------------------------
def cancel_question(study: dict) -> str:
    s = study_summary(study)
    return (
        f"Cancel study '{s['name']}' (id {s['id']})? Its {active_runs(study)} unfinished runs are "
        "cancelled; running ones stop at their next epoch. Finished results are kept."
    )


def delete_question(study: dict) -> str:
    s = study_summary(study)
    return (
        f"Delete study '{s['name']}' (id {s['id']}) for good? Its {s['planned']} runs, their metrics "
        "and artefact files are removed. This cannot be undone."
    )


def cancel_answer(answer: dict) -> str:
    """POST /studies/{id}/cancel's CancelOut in a sentence."""
    text = f"Study {answer.get('status', 'cancelled')}: {answer.get('cancelled', 0)} waiting runs cancelled"
    requested = answer.get("cancel_requested", 0)
    if requested:
        text += f", {requested} running stop at their next epoch"
    return text + "."


# --- landscapes -------------------------------------------------------------------------------------
def landscape_cards(data: dict, floor: float | None, scale: str = "shared") -> list:
    """One card per variant, every one on the study's axes; the shared colour scale (with `floor`)
    or, with scale "variant", each on its own."""
    analysis = data.get("analysis") or {}
    points = sd.grid_points(data)
    ranges = rec.study_axis_ranges(analysis, points)
    names = rec.variant_names(analysis) or [str(v) for v in (data.get("study") or {}).get("variants") or []]
    cards = []
    for variant in names:
        zrange = rec.variant_colour_range(analysis, variant) if scale == "variant" else None
        fig = landscape_figure(
            analysis, variant, floor=floor, grid_points=points.get(variant), axis_ranges=ranges, zrange=zrange
        )
        best = rec.best_point(analysis, variant)
        notes = []
        if best:
            notes.append(
                f"best {fmt_acc(best['value'])} % at lr {fmt_hyper(best['lr'])}, wd {fmt_hyper(best['wd'])}"
            )
        if zrange is not None:
            notes.append(f"colour scale of this variant: {fmt_acc(zrange[0])} – {fmt_acc(zrange[1])} %")
        notes += rec.degenerate_notes(analysis, variant)
        cards.append(
            figure_card(f"landscape-{variant}", variant, fig, note=" · ".join(notes) or None, csv=CSV)
        )
    return cards


LEGEND = (
    "Solid red: 0.5-ROI ellipse, dashed black: 1.0-ROI ellipse (k = 2 standard deviations, ≥ 5 points; "
    "width 0: a marked segment). Star: best point; ✕: diverged; grey square: no result yet (waiting "
    "or running); crossed grey square: failed or cancelled, no result (retry it from the runs table). "
    "Click a point to open its run."
)


def scale_note(analysis: dict, floor: float | None, scale: str) -> str:
    """Which colour scale is in use, in words, and the legend."""
    if scale == "variant":
        return (
            "Colour scale in use: each variant its own, from its lowest to its highest grid-point mean "
            "(shown under each map; colours do not compare across maps). " + LEGEND
        )
    zmin, zmax = rec.colour_range(analysis, floor)
    colour = analysis.get("colour_scale") or {}
    return (
        f"Colour scale in use: one for every variant, {fmt_acc(zmin)} – {fmt_acc(zmax)} % (default floor = "
        f"{fmt(colour.get('percentile', 85), 0)}th percentile of all observed accuracies; points below the "
        "floor take the lowest colour; if a map is one colour, try each variant its own scale). " + LEGEND
    )


def metric_options(analysis: dict) -> list[dict]:
    """The metric choices, one the results do not hold disabled (an import without top-5)."""
    available = analysis.get("metrics_available")
    return [
        {
            "label": label + ("" if available is None or key in available else " (not in these results)"),
            "value": key,
            "disabled": available is not None and key not in available,
        }
        for key, label in METRIC_LABELS.items()
    ]


# --- reading the study ------------------------------------------------------------------------------
async def read_study(client, study_id: Any, metric: str) -> dict:
    """The page's data: the study, its analysis for `metric` (top-1 with a note when the results do
    not hold `metric`), and the extras (/compare, /variants, /landscape)."""
    try:
        study = await client.get_study(study_id)  # 404 without a request unless the id is an id
    except ApiError as exc:
        return {
            "error": error_text(exc.detail),
            "detail": exc.detail,
            "status": exc.status,
            "study_id": study_id,
        }
    note = None
    try:
        analysis = await client.get_analysis(study_id, metric)
    except ApiError as exc:
        if exc.status == 422 and metric != "top1":  # e.g. top-5 of an import without top-5
            note = f"This study's results hold no {METRIC_LABELS[metric].strip()}: showing top-1."
            metric = "top1"
            try:
                analysis = await client.get_analysis(study_id, metric)
            except ApiError as again:
                analysis = _unavailable(metric, again)
        else:  # e.g. 409 before the first run finishes: show the study anyway
            analysis = _unavailable(metric, exc)
    extras = await sd.load_extras(client, study_id, study, metric)
    data = {"study": study, "analysis": analysis, "extras": extras, "metric": metric, "metric_note": note}
    data["digest"] = _digest(data)
    return data


def _unavailable(metric: str, exc: ApiError) -> dict:
    reason = "waiting for the first results." if exc.status == 409 else error_text(exc.detail)
    return {"metric": metric, "variants": [], "results": {}, "unavailable": reason}


def register(app: Dash, client_factory) -> None:
    study_runs.register(app, client_factory)
    study_downloads.register(app, client_factory)

    @app.callback(
        Output("study-data", "data"),
        Output("study-poll", "disabled"),
        Input("study-poll", "n_intervals"),
        Input("study-metric", "value"),
        Input("study-refresh", "data"),
        Input(TOKEN_STORE, "data"),
        State("study-id", "data"),
        State("study-data", "data"),
    )
    async def load_study(_n, metric, _refresh, token, study_id, current):
        if not study_id:
            raise PreventUpdate
        data = await read_study(client_factory(token), study_id, metric if metric in METRICS else "top1")
        if "error" in data:
            # not found, or refused for want of a token: nothing to poll for until the user acts
            return data, data["status"] in (401, 403, 404)
        done = study_is_done(data["study"])
        if isinstance(current, dict) and current.get("digest") == data["digest"]:
            return no_update, done
        return data, done

    @app.callback(
        Output("study-header", "children"),
        Output("study-body", "style"),
        Output("study-floor", "min"),
        Output("study-floor", "max"),
        Output("study-floor", "value", allow_duplicate=True),
        Output("study-floor-wanted", "data"),
        Output("study-metric", "options"),
        Output("study-metric", "value"),
        Output("study-metric-note", "children"),
        Input("study-data", "data"),
        State("study-floor", "value"),
        State("study-floor", "min"),
        State("study-floor", "max"),
        State("study-floor-wanted", "data"),
        State("study-metric", "value"),
        prevent_initial_call="initial_duplicate",
    )
    def show_header(data, floor, old_min, old_max, wanted, metric):
        if not data:
            raise PreventUpdate
        if "error" in data:
            return (missing_page(data), HIDDEN, *([no_update] * 7))
        analysis = data["analysis"]
        low, high = sd.observed_range(analysis)
        default_floor, _ = rec.colour_range(analysis)
        if isinstance(wanted, int | float) and low <= wanted <= high:
            value = wanted  # the floor of the URL the page was opened with
        elif floor is not None and low <= floor <= high and (old_min, old_max) == (low, high):
            value = floor  # the user's floor, across polls; reset when the scale itself moved
        else:
            value = round(default_floor, 1)
        shown_metric = data.get("metric") or "top1"
        return (
            header(data["study"], sd.best_per_variant(data)),
            None,
            low,
            high,
            value,
            None,
            metric_options(analysis),
            shown_metric if shown_metric != metric else no_update,
            data.get("metric_note") or "",
        )

    @app.callback(
        Output("study-floor", "value", allow_duplicate=True),
        Output("study-floor-box", "value"),
        Input("study-floor", "value"),
        Input("study-floor-box", "value"),
        State("study-floor", "min"),
        State("study-floor", "max"),
        prevent_initial_call=True,
    )
    def sync_floor(slider, box, low, high):
        """The slider and the box show one floor; the box applies on Enter, within the slider's range."""
        if ctx.triggered_id == "study-floor-box":
            if not isinstance(box, int | float) or not math.isfinite(box):
                raise PreventUpdate
            value = min(
                max(float(box), low if low is not None else FLOOR_MIN),
                high if high is not None else FLOOR_MAX,
            )
            return value, value if value != box else no_update
        return no_update, slider

    @app.callback(
        Output("url", "search"),
        Input("study-metric", "value"),
        Input("study-scale", "value"),
        Input("study-floor", "value"),
        State("url", "search"),
        prevent_initial_call=True,
    )
    def keep_view_in_url(metric, scale, floor, search):
        wanted = query_string(metric, scale, floor)
        return no_update if wanted == (search or "") else wanted

    @app.callback(
        Output("study-floor", "disabled"),
        Output("study-floor-box", "disabled"),
        Input("study-scale", "value"),
    )
    def floor_applies(scale):
        return scale == "variant", scale == "variant"

    @app.callback(
        Output("study-cancel", "style"),
        Input("study-data", "data"),
    )
    def show_actions(data):
        if not data or "error" in data:
            return HIDDEN
        return None if study_is_open(data["study"]) else HIDDEN

    @app.callback(
        Output("study-cancel-confirm", "message"),
        Output("study-cancel-confirm", "displayed"),
        Output("study-delete-confirm", "message"),
        Output("study-delete-confirm", "displayed"),
        Output("study-action-result", "children", allow_duplicate=True),
        Input("study-cancel", "n_clicks"),
        Input("study-delete", "n_clicks"),
        State("study-id", "data"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def ask(_cancel, _delete, study_id, token):
        """Read the study now, so the question's counts are the ones the action will meet."""
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        try:
            study = await client_factory(token).get_study(study_id)
        except ApiError as exc:
            return no_update, False, no_update, False, refusal("Not possible", exc)
        if ctx.triggered_id == "study-cancel":
            return cancel_question(study), True, no_update, False, ""
        return no_update, False, delete_question(study), True, ""

    @app.callback(
        Output("study-action-result", "children"),
        Output("study-refresh", "data"),
        Input("study-cancel-confirm", "submit_n_clicks"),
        State("study-id", "data"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def cancel(n_clicks, study_id, token):
        if not n_clicks:
            raise PreventUpdate
        try:
            answer = await client_factory(token).cancel_study(study_id)
        except ApiError as exc:
            return refusal("Not cancelled", exc), time.time() if exc.stale_page() else no_update
        return html.Span(cancel_answer(answer), className="ok"), time.time()

    @app.callback(
        Output("study-action-result", "children", allow_duplicate=True),
        Output("study-refresh", "data", allow_duplicate=True),
        Output("url", "pathname", allow_duplicate=True),
        Output("url", "search", allow_duplicate=True),
        Input("study-delete-confirm", "submit_n_clicks"),
        State("study-id", "data"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def delete(n_clicks, study_id, token):
        if not n_clicks:
            raise PreventUpdate
        try:
            await client_factory(token).delete_study(study_id)
        except ApiError as exc:
            return (
                refusal("Not deleted", exc),
                time.time() if exc.stale_page() else no_update,
                no_update,
                no_update,
            )
        return no_update, no_update, "/", ""  # the list, without this page's view in the URL

    @app.callback(
        Output("study-landscapes", "children"),
        Output("study-scale-note", "children"),
        Input("study-data", "data"),
        Input("study-floor", "value"),
        Input("study-scale", "value"),
    )
    def show_landscapes(data, floor, scale):
        if not data or "error" in data:
            raise PreventUpdate
        analysis = data["analysis"]
        scale = scale if scale in SCALES else "shared"
        note = scale_note(analysis, floor, scale)
        if "unavailable" in analysis:
            note = f"No landscape yet: {analysis['unavailable']} " + LEGEND
        return landscape_cards(data, floor, scale), note

    @app.callback(
        Output("url", "pathname", allow_duplicate=True),
        Output("url", "search", allow_duplicate=True),
        Input({"type": "fig", "name": ALL}, "clickData"),
        prevent_initial_call=True,
    )
    def open_clicked_run(_clicks):
        trigger = ctx.triggered_id
        if not trigger or not str(trigger.get("name", "")).startswith("landscape-"):
            raise PreventUpdate
        click = ctx.triggered[0]["value"] if ctx.triggered else None
        points = (click or {}).get("points") or []
        custom = points[0].get("customdata") if points else None
        run_id = parse_id(custom[0]) if isinstance(custom, list) and custom else None
        if run_id is None:
            raise PreventUpdate
        return f"/runs/{run_id}", ""  # the run page, without the study's view in the URL

    @app.callback(
        Output("study-ellipse-table", "children"),
        Output("study-risk-table", "children"),
        Output("study-shift", "children"),
        Output({"type": "fig", "name": "risk-absolute"}, "figure"),
        Output({"type": "fig", "name": "risk-relative"}, "figure"),
        Output("study-risk-boxes", "style"),
        Output("study-risk-note", "children"),
        Input("study-data", "data"),
    )
    def show_tables(data):
        if not data or "error" in data:
            raise PreventUpdate
        analysis = data["analysis"]
        study_id = data["study"]["id"]
        metric = analysis.get("metric", "top1")
        ellipse_rows, ellipse_cols = sd.ellipse_table(analysis)
        risk_rows, risk_cols = sd.risk_table(analysis)
        verdicts = [html.H3("Did the optimum move? (shift test of the ROI ellipse centres vs the base)")]
        verdicts += [html.P(text, className="verdict") for text in sd.shift_verdicts(analysis)] or [
            html.P("No shift test yet (needs ellipses of the base and the variant).", className="muted")
        ]
        risk_series = sd.risk_series(analysis)
        risk_note = sd.risk_note(analysis)
        return (
            data_table(
                "ellipses", ellipse_rows, ellipse_cols, filename=f"study-{study_id}-ellipses-{metric}.csv"
            ),
            data_table("risk", risk_rows, risk_cols, filename=f"study-{study_id}-risk-summary-{metric}.csv"),
            verdicts,
            risk_box_figure(risk_series),
            risk_box_figure(risk_series, relative=True),
            HIDDEN if risk_note else None,
            risk_note,
        )

    @app.callback(
        Output({"type": "fig", "name": "tradeoff-latency"}, "figure"),
        Output({"type": "fig", "name": "tradeoff-size"}, "figure"),
        Output("study-measure-table", "children"),
        Output("study-kept", "children"),
        Output("study-sensitivity", "children"),
        Output("study-extension", "children"),
        Output("study-extend", "disabled"),
        Output("study-extend", "style"),
        Output("study-hist-variant", "options"),
        Output("study-cost", "style"),
        Output("study-cost-note", "children"),
        Output("study-hist-panel", "style"),
        Output("study-hist-note", "children"),
        Input("study-data", "data"),
    )
    def show_measurements(data):
        if not data or "error" in data:
            raise PreventUpdate
        metric = data["analysis"].get("metric", "top1")
        study_id = data["study"]["id"]
        rows = sd.measurement_rows(data)
        table_rows, table_cols = sd.measurement_table(rows)
        measure = [
            html.H3("Variants measured"),
            data_table("measurements", table_rows, table_cols, filename=f"study-{study_id}-measurements.csv"),
            html.P(sd.flops_note(data), className="note"),
        ]
        kept = [
            figure_card(
                f"kept-{name}",
                f"Kept filters per layer: {name}",
                kept_fractions_figure(name, fractions),
                csv=CSV,
            )
            for name, fractions in sd.kept_fractions(data).items()
        ] or [html.P(sd.kept_fractions_note(data), className="wait-note")]
        cost_note, measured = sd.measurements_note(data, rows)
        scans = sd.sensitivity_scans(data)
        sensitivity = (
            [
                html.H2("Sensitivity scans"),
                figure_card(
                    "sensitivity",
                    "Accuracy after pruning without retraining",
                    sensitivity_figure(scans, metric=metric),
                    csv=CSV,
                ),
            ]
            if scans
            else []
        )
        hist_variants = [name for name, h in sd.histograms(data).items() if h]
        hist_note = "" if hist_variants else sd.histograms_note(data)
        extension, can_extend = sd.extension_panel(data)
        imported = data["study"].get("kind") == "imported"
        return (
            tradeoff_figure(
                rows,
                cost_key="latency_ms",
                cost_label=f"latency, batch 1 (ms, {sd.latency_on(data)[0] or 'not measured'})",
                metric=metric,
            ),
            tradeoff_figure(rows, cost_key="size_mb", cost_label="size on disk (MB)", metric=metric),
            measure,
            kept,
            sensitivity,
            extension,
            not can_extend,
            HIDDEN if imported else None,
            hist_variants,
            None if measured else HIDDEN,
            cost_note,
            HIDDEN if hist_note else {"marginTop": "16px"},
            hist_note,
        )

    @app.callback(
        Output("study-hist-variant", "value"),
        Input("study-hist-variant", "options"),
        State("study-hist-variant", "value"),
    )
    def pick_hist_variant(options, value):
        if not options:
            return None
        return value if value in options else options[-1]

    @app.callback(
        Output("study-hist-layer", "options"),
        Output("study-hist-layer", "value"),
        Input("study-hist-variant", "value"),
        State("study-hist-layer", "value"),
        State("study-data", "data"),
    )
    def pick_hist_layer(variant, layer, data):
        layers = sd.histogram_layers(data, variant) if data and variant else []
        return layers, (layer if layer in layers else (layers[0] if layers else None))

    @app.callback(
        Output({"type": "fig", "name": "weight-histogram"}, "figure"),
        Input("study-hist-layer", "value"),
        State("study-hist-variant", "value"),
        State("study-data", "data"),
    )
    def show_histogram(layer, variant, data):
        if not data or not variant or not layer:
            return weight_histogram_figure(layer or "—", {})
        return weight_histogram_figure(layer, sd.histogram_series(data, variant, layer))

    @app.callback(
        Output("study-extend-confirm", "message"),
        Output("study-extend-confirm", "displayed"),
        Input("study-extend", "n_clicks"),
        State("study-data", "data"),
        prevent_initial_call=True,
    )
    def ask_extend(n_clicks, data):
        if not n_clicks or not isinstance(data, dict) or "study" not in data:
            raise PreventUpdate
        return sd.extension_question(data), True

    @app.callback(
        Output("study-extend-result", "children"),
        Output("study-refresh", "data", allow_duplicate=True),
        Input("study-extend-confirm", "submit_n_clicks"),
        State("study-id", "data"),
        State("study-data", "data"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def extend(n_clicks, study_id, data, token):
        if not n_clicks:
            raise PreventUpdate
        try:
            answer = await client_factory(token).extend_study(study_id, {"proposal": True})
        except ApiError as exc:
            return refusal("Not extended", exc), no_update
        old_grid = ((data or {}).get("study") or {}).get("spec", {}).get("grid")
        # the new runs are waiting: load_study reads the study now and turns the poll back on
        return html.Span(sd.extension_added(answer, old_grid), className="ok"), time.time()
