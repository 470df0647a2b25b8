"""`/studies/<id>`: the study's landscapes side by side on one colour scale, its two result
tables, risk, shift verdicts, accuracy vs cost, pruning details, sensitivity scans and the grid
extension; cancelling and deleting the study. Polls the API while runs are going and stops when
the study is done (the poll starts disabled: a finished study is read once and never polled)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from frontend.api_client import ApiError, parse_id
from frontend.figures import (
    kept_fractions_figure,
    landscape_figure,
    risk_box_figure,
    weight_histogram_figure,
)
from frontend.figures import record as rec
from frontend.pages import latency_panel, study_compression, study_extensions, study_noise
from frontend.pages import study_data as sd
from frontend.pages.components import data_table, figure_card, fmt, progress_bar, status_badge
from frontend.pages.study_record import active_runs, study_is_done, study_is_open, study_summary
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal, refusal

POLL_MS = 3000
HIDDEN = {"display": "none"}
METRICS = ("top1", "top5")


def layout(study_id: str) -> html.Div:
    return html.Div(
        [
            dcc.Store(id="study-id", data=study_id),
            dcc.Store(id="study-data"),
            # Enabled by load_study only while the study has runs to wait for.
            dcc.Interval(id="study-poll", interval=POLL_MS, disabled=True),
            dcc.Store(id="study-refresh"),  # a write changed the study: read it again now
            html.Div(id="study-header"),
            html.Div(
                [
                    dcc.ConfirmDialogProvider(
                        html.Button("Cancel study", id="study-cancel"),
                        id="study-cancel-confirm",
                        message="Cancel this study?",
                    ),
                    dcc.ConfirmDialogProvider(
                        html.Button("Delete study", id="study-delete", className="danger"),
                        id="study-delete-confirm",
                        message="Delete this study?",
                    ),
                    html.Span(id="study-action-result"),
                ],
                id="study-actions",
                className="actions",
                style=HIDDEN,
            ),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("metric", style={"marginRight": "8px"}),
                            dcc.RadioItems(
                                id="study-metric",
                                options=[
                                    {"label": " top-1", "value": "top1"},
                                    {"label": " top-5", "value": "top5"},
                                ],
                                value="top1",
                                inline=True,
                                inputStyle={"marginLeft": "8px"},
                            ),
                        ],
                        style={"display": "flex", "alignItems": "center"},
                    ),
                    html.Div(
                        [
                            html.Label("colour floor (accuracy %), shared by all variants"),
                            dcc.Slider(
                                id="study-floor",
                                min=0,
                                max=100,
                                step=0.1,
                                value=None,
                                marks=None,
                                tooltip={"placement": "bottom", "always_visible": True},
                            ),
                        ],
                        className="slider-wrap",
                    ),
                ],
                className="controls panel",
            ),
            html.H2("Landscapes"),
            study_noise.view_control(),
            html.P(id="study-scale-note", className="note"),
            html.Div(id="study-landscapes", className="grid-cards"),
            html.H2("ROI ellipses"),
            html.Div(id="study-ellipse-table", className="panel"),
            study_noise.section(),
            html.H2("Performance risk of not retuning"),
            html.Div(id="study-risk-table", className="panel"),
            html.Div(id="study-shift", className="panel"),
            html.P(id="study-risk-note", className="wait-note"),
            html.Div(
                [
                    figure_card("risk-absolute", "Risk, absolute (pp)"),
                    figure_card("risk-relative", "Risk, relative (%)"),
                ],
                id="study-risk-boxes",
                className="grid-2",
            ),
            latency_panel.section(),
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
                    figure_card("weight-histogram", "Weight histogram"),
                ],
                id="study-hist-panel",
                className="panel",
                style={"marginTop": "16px"},
            ),
            study_compression.section(),
            html.H2("Grid extension"),
            html.Div(
                [
                    html.Div(id="study-extension"),
                    html.Button("Extend the grid as proposed", id="study-extend", className="primary"),
                    html.Span(id="study-extend-result", style={"marginLeft": "12px"}),
                ],
                className="panel",
            ),
            study_extensions.section(),
        ]
    )


def _digest(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def best_line(best_rows: list[dict]) -> html.Div:
    """The summary's best top-1 of every variant, with the grid point it was found at."""
    items = [
        html.Span(
            [html.B(row["variant"]), f" {fmt(row['top1'])} %"]
            + ([f" ± {fmt(row['std'])}"] if row.get("std") is not None else [])
            + ([f" ({row['n']} seeds)"] if (row.get("n") or 0) > 1 else [])
            + ([f" at lr {fmt(row['lr'], 4)}, wd {fmt(row['wd'], 6)}"] if row.get("lr") is not None else []),
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
            html.Div(progress_bar(s["done"], s["planned"]), id="study-progress", style={"maxWidth": "480px"}),
        ]
    )


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


def landscape_cards(analysis: dict, floor: float | None) -> list:
    cards = []
    for variant in rec.variant_names(analysis):
        fig = landscape_figure(analysis, variant, floor=floor)
        best = rec.best_point(analysis, variant)
        note = (
            f"best {fmt(best['value'])} % at lr {fmt(best['lr'], 4)}, wd {fmt(best['wd'], 6)}"
            if best
            else None
        )
        cards.append(figure_card(f"landscape-{variant}", variant, fig, note=note))
    return cards


def register(app: Dash, client_factory) -> None:
    for panel in (study_noise, study_compression, latency_panel, study_extensions):
        panel.register(app)  # each panel draws from the study-data store

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
        metric = metric if metric in METRICS else "top1"
        client = client_factory(token)
        try:
            study = await client.get_study(study_id)  # 404 without a request unless the id is an id
        except ApiError as exc:
            # not found, or refused for want of a token: nothing to poll for until the user acts
            return {"error": str(exc.detail), "status": exc.status}, exc.status in (401, 403, 404)
        try:
            analysis = await client.get_analysis(study_id, metric)
        except ApiError as exc:  # e.g. 409 before the first run finishes: show the study anyway
            analysis = {
                "metric": metric,
                "variants": [],
                "results": {},
                "unavailable": str(exc.detail),
            }
        extras = await sd.load_extras(client, study_id, study)
        data = {"study": study, "analysis": analysis, "extras": extras, "metric": metric}
        data["digest"] = _digest(data)
        done = study_is_done(study)
        if isinstance(current, dict) and current.get("digest") == data["digest"]:
            return no_update, done
        return data, done

    @app.callback(
        Output("study-header", "children"),
        Output("study-floor", "min"),
        Output("study-floor", "max"),
        Output("study-floor", "value"),
        Input("study-data", "data"),
        State("study-floor", "value"),
        State("study-floor", "min"),
        State("study-floor", "max"),
    )
    def show_header(data, floor, old_min, old_max):
        if not data:
            raise PreventUpdate
        if "error" in data:
            message = read_refusal(data.get("status"), data["error"]) or html.P(
                f"Study: {data['error']}", className="error"
            )
            return message, no_update, no_update, no_update
        analysis = data["analysis"]
        low, high = sd.observed_range(analysis)
        default_floor, _ = rec.colour_range(analysis)
        # keep the user's floor across polls; reset it when the scale itself moved (metric toggle)
        keep = floor is not None and low <= floor <= high and (old_min, old_max) == (low, high)
        best_rows = sd.best_per_variant(data)
        return header(data["study"], best_rows), low, high, floor if keep else round(default_floor, 1)

    @app.callback(
        Output("study-actions", "style"),
        Output("study-cancel", "style"),
        Output("study-cancel-confirm", "message"),
        Output("study-delete-confirm", "message"),
        Input("study-data", "data"),
    )
    def show_actions(data):
        if not data or "error" in data:
            return HIDDEN, no_update, no_update, no_update
        study = data["study"]
        cancel_style = None if study_is_open(study) else HIDDEN
        return None, cancel_style, cancel_question(study), delete_question(study)

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
            return refusal("Not deleted", exc), time.time() if exc.stale_page() else no_update, no_update
        return no_update, no_update, "/"

    @app.callback(
        Output("study-landscapes", "children"),
        Output("study-scale-note", "children"),
        Input("study-data", "data"),
        Input("study-floor", "value"),
        Input("landscape-view", "value"),
        Input("landscape-level", "value"),
    )
    def show_landscapes(data, floor, view, level):
        if not data or "error" in data:
            raise PreventUpdate
        analysis = data["analysis"]
        if "unavailable" in analysis:
            return [], f"No landscape yet: {analysis['unavailable']}"
        if view in study_noise.POINT_VIEWS:  # spread, seeds or ROI membership instead of the mean
            return study_noise.view_cards(analysis, view, level), study_noise.view_note(analysis, view, level)
        zmin, zmax = rec.colour_range(analysis, floor)
        scale = analysis.get("colour_scale") or {}
        note = (
            f"One colour scale for every variant: {fmt(zmin)} – {fmt(zmax)} % "
            f"(default floor = {fmt(scale.get('percentile', 85), 0)}th percentile of all observed accuracies; "
            "points below the floor take the lowest colour). Solid red: 0.5-ROI ellipse, dashed black: 1.0-ROI "
            "ellipse (k = 2 standard deviations, ≥ 5 points). Star: best point; ✕: diverged; grey square: no "
            "result yet. Click a point to open its run."
        )
        return landscape_cards(analysis, floor), note

    @app.callback(
        Output("url", "pathname", allow_duplicate=True),
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
        return f"/runs/{run_id}"

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
        ellipse_rows, ellipse_cols = sd.ellipse_table(analysis)
        risk_rows, risk_cols = sd.risk_table(analysis)
        verdicts = [html.H3("Did the optimum move? (shift test of the ROI ellipse centres vs the base)")]
        verdicts += [html.P(text, className="verdict") for text in sd.shift_verdicts(analysis)] or [
            html.P("No shift test yet (needs ellipses of the base and the variant).", className="muted")
        ]
        risk_series = sd.risk_series(analysis)
        risk_note = sd.risk_note(analysis)
        return (
            data_table("ellipses", ellipse_rows, ellipse_cols),
            data_table("risk", risk_rows, risk_cols),
            verdicts,
            risk_box_figure(risk_series),
            risk_box_figure(risk_series, relative=True),
            HIDDEN if risk_note else None,
            risk_note,
        )

    @app.callback(
        Output("study-kept", "children"),
        Output("study-extension", "children"),
        Output("study-extend", "disabled"),
        Output("study-hist-variant", "options"),
        Output("study-hist-panel", "style"),
        Output("study-hist-note", "children"),
        Input("study-data", "data"),
    )
    def show_measurements(data):
        if not data or "error" in data:
            raise PreventUpdate
        kept = [
            figure_card(
                f"kept-{name}", f"Kept filters per layer: {name}", kept_fractions_figure(name, fractions)
            )
            for name, fractions in sd.kept_fractions(data).items()
        ] or [html.P(sd.kept_fractions_note(data), className="wait-note")]
        hist_variants = [name for name, h in sd.histograms(data).items() if h]
        hist_note = "" if hist_variants else sd.histograms_note(data)
        extension, can_extend = sd.extension_panel(data)
        return (
            kept,
            extension,
            not can_extend,
            hist_variants,
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
        Output("study-extend-result", "children"),
        Output("study-refresh", "data", allow_duplicate=True),
        Input("study-extend", "n_clicks"),
        State("study-id", "data"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def extend(n_clicks, study_id, token):
        if not n_clicks:
            raise PreventUpdate
        try:
            answer = await client_factory(token).extend_study(study_id, {"proposal": True})
        except ApiError as exc:
            return refusal("Not extended", exc), no_update
        added = sd.extension_added(answer)
        # the new runs are waiting: load_study reads the study now and turns the poll back on
        return html.Span(f"Extended: {added}", className="ok"), time.time()
