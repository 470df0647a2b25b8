"""`/studies/<id>`: its callbacks (the layout is `study_layout`, the view of the landscapes
`study_view`, the runs table `study_runs`, the downloads `study_downloads`): reading the study and
polling while runs are going (stopping when the study is done: the poll starts disabled, so a
finished study is read once), the header with progress by state, the view kept in the URL, the
landscapes, tables, cost and pruning panels; cancelling, deleting and extending, each asked first
with what the API says now. An id that names no study is a not-found page with nothing to act on.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, html, no_update
from dash.exceptions import PreventUpdate

from frontend.api_client import ApiError, parse_id
from frontend.figures import (
    kept_fractions_figure,
    risk_box_figure,
    weight_histogram_figure,
)
from frontend.figures import record as rec
from frontend.pages import (
    latency_panel,
    study_compression,
    study_downloads,
    study_extensions,
    study_noise,
    study_runs,
)
from frontend.pages import study_data as sd
from frontend.pages.components import (
    data_table,
    figure_card,
    fmt_acc,
    fmt_hyper,
    not_found,
    run_progress,
    status_badge,
)
from frontend.pages.messages import error_text
from frontend.pages.study_layout import layout  # noqa: F401 - app.route draws the page from here
from frontend.pages.study_record import active_runs, study_is_done, study_is_open, study_summary
from frontend.pages.study_view import (
    FLOOR_MAX,
    FLOOR_MIN,
    LEGEND,
    METRIC_LABELS,
    METRICS,
    SCALES,
    landscape_cards,
    metric_options,
    query_string,
    scale_note,
)
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal, refusal

HIDDEN = {"display": "none"}
CSV = study_downloads.CSV_TYPE


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
        State("study-data", "data"),
        prevent_initial_call=True,
    )
    def keep_view_in_url(metric, scale, floor, search, data):
        analysis = (data or {}).get("analysis") or {}
        default_floor = round(rec.colour_range(analysis)[0], 1) if "colour_scale" in analysis else None
        wanted = query_string(metric, scale, floor, default_floor)
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
        Input("landscape-view", "value"),
        Input("landscape-level", "value"),
    )
    def show_landscapes(data, floor, scale, view, level):
        if not data or "error" in data:
            raise PreventUpdate
        analysis = data["analysis"]
        scale = scale if scale in SCALES else "shared"
        note = scale_note(analysis, floor, scale)
        if "unavailable" in analysis:
            note = f"No landscape yet: {analysis['unavailable']} " + LEGEND
            return landscape_cards(data, floor, scale), note
        if view in study_noise.POINT_VIEWS:  # spread, seeds or ROI membership instead of the mean
            return study_noise.view_cards(analysis, view, level), study_noise.view_note(analysis, view, level)
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
        Output("study-kept", "children"),
        Output("study-extension", "children"),
        Output("study-extend", "disabled"),
        Output("study-extend", "style"),
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
                f"kept-{name}",
                f"Kept filters per layer: {name}",
                kept_fractions_figure(name, fractions),
                csv=CSV,
            )
            for name, fractions in sd.kept_fractions(data).items()
        ] or [html.P(sd.kept_fractions_note(data), className="wait-note")]
        hist_variants = [name for name, h in sd.histograms(data).items() if h]
        hist_note = "" if hist_variants else sd.histograms_note(data)
        extension, can_extend = sd.extension_panel(data)
        imported = data["study"].get("kind") == "imported"
        return (
            kept,
            extension,
            not can_extend,
            HIDDEN if imported else None,
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
