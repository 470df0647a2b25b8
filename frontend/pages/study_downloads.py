"""The study page's downloads: each figure's CSV holds the numbers a user means (accuracy, std,
seeds, lr, wd, ...) under named columns, never the plot's internals (clipped colour values, hex
colours, customdata_0..4), in a file whose name says what it is (study id, variant, metric); and
the whole study's runs as the API exports them (CSV or JSON).

The builders are pure functions of the `study-data` store; `register` wires the buttons.
"""

from __future__ import annotations

import json
from typing import Any

from dash import MATCH, Dash, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from frontend.api_client import ApiError, parse_id
from frontend.figures import record as rec
from frontend.figures.common import finite
from frontend.pages import latency_panel
from frontend.pages import study_data as sd
from frontend.pages.components import STUDY_CSV, rows_to_csv, slug
from frontend.pages.messages import error_text
from frontend.pages.token import STORE_ID as TOKEN_STORE

CSV_TYPE = STUDY_CSV  # figure_card(csv=CSV_TYPE): answered here


def _key(x: float, y: float) -> tuple[float, float]:
    return round(x, 9), round(y, 9)


def landscape_rows(data: dict, variant: str) -> tuple[list[dict], list[str]]:
    """Every grid point of a variant: where it is (lr, wd, their log10, grid indices), its state,
    and its numbers (mean of the metric over seeds, std, seeds, diverged seeds, run ids)."""
    analysis = data.get("analysis") or {}
    metric = analysis.get("metric", "top1")
    scored = {_key(p["x"], p["y"]): p for p in rec.landscape_points(analysis, variant)}
    listed = sd.grid_points(data).get(variant) or []
    seen: set[tuple[float, float]] = set()
    rows = []
    for point in listed:
        key = _key(point["x"], point["y"])
        seen.add(key)
        rows.append(_landscape_row(variant, metric, point, scored.get(key)))
    for key, point in scored.items():  # a point the analysis has and /landscape did not list
        if key not in seen:
            rows.append(_landscape_row(variant, metric, point, point))
    rows.sort(key=lambda r: (r["lr"], r["wd"]))
    columns = ["variant", "lr", "wd", "log10_lr", "log10_wd", "grid_i", "grid_j", "status",
               f"{metric}_mean", f"{metric}_std", "seeds", "diverged_seeds", "run_ids"]  # fmt: skip
    return rows, columns


def _landscape_row(variant: str, metric: str, point: dict, scored: dict | None) -> dict:
    status = point.get("status") or "missing"
    if scored is not None and scored.get("value") is not None:
        status = scored["status"]
    return {
        "variant": variant,
        "lr": point["lr"],
        "wd": point["wd"],
        "log10_lr": point["y"],
        "log10_wd": point["x"],
        "grid_i": point.get("grid_i"),
        "grid_j": point.get("grid_j"),
        "status": status,
        f"{metric}_mean": None if scored is None else scored.get("value"),
        f"{metric}_std": None if scored is None else scored.get("std"),
        "seeds": 0 if scored is None else scored.get("seeds"),
        "diverged_seeds": 0 if scored is None else scored.get("n_diverged"),
        "run_ids": " ".join(str(r) for r in (scored or {}).get("run_ids") or []),
    }


def latency_rows(data: dict, runtime: str | None, batch: str | None) -> tuple[list[dict], list[str]]:
    """Accuracy vs latency on the runtime and batch size the page shows (the API's median, the
    variant's best top-1, whether the API puts it on that runtime's Pareto front)."""
    _, runtime = latency_panel.runtime_choice(data, runtime)
    _, batch = latency_panel.batch_choice(data, batch)
    front = set(latency_panel.latency_front(data, runtime, batch))
    rows = [
        {
            "variant": r["variant"],
            "runtime": runtime,
            "batch_size": batch,
            "median_ms": r["latency_ms"],
            "best_top1": r["top1"],
            "on_pareto_front": r["variant"] in front,
        }  # fmt: skip
        for r in latency_panel.chart_rows(data, runtime, batch)
    ]
    return rows, ["variant", "runtime", "batch_size", "median_ms", "best_top1", "on_pareto_front"]


def size_rows(data: dict) -> tuple[list[dict], list[str]]:
    """Accuracy vs size on disk per variant (MB = 1e6 bytes), and the Pareto front over them."""
    rows = latency_panel.size_rows(sd.measurement_rows(data))
    front = set(latency_panel.size_front(rows))
    out = [
        {
            "variant": r["variant"],
            "size_mb": r["size_mb"],
            "best_top1": r["top1"],
            "on_pareto_front": r["variant"] in front if finite(r["size_mb"]) else None,
        }  # fmt: skip
        for r in rows
    ]
    return out, ["variant", "size_mb", "best_top1", "on_pareto_front"]


def risk_rows(data: dict) -> tuple[list[dict], list[str]]:
    """d and d/f* at every point of the base's 0.5-ROI, per variant (the risk box plots' values)."""
    analysis = data.get("analysis") or {}
    rows = []
    for variant in rec.variant_names(analysis):
        risk = rec.result(analysis, variant).get("risk") or {}
        points = risk.get("points") or []
        values = risk.get("values") or []
        relative = risk.get("rel_values") or []
        for k, value in enumerate(values):
            x, y = points[k] if k < len(points) else (None, None)
            rel = relative[k] if k < len(relative) else None
            rows.append(
                {
                    "variant": variant,
                    "lr": 10**y if finite(y) else None,
                    "wd": 10**x if finite(x) else None,
                    "d_pp": value,
                    "d_over_best_percent": rel * 100 if finite(rel) else None,
                }
            )
    return rows, ["variant", "lr", "wd", "d_pp", "d_over_best_percent"]


def kept_rows(data: dict, variant: str) -> tuple[list[dict], list[str]]:
    fractions = sd.kept_fractions(data).get(variant) or {}
    return [{"variant": variant, "layer": k, "kept_fraction": v} for k, v in fractions.items()], [
        "variant",
        "layer",
        "kept_fraction",
    ]


def histogram_rows(data: dict, variant: str | None, layer: str | None) -> tuple[list[dict], list[str]]:
    rows = []
    if variant and layer:
        for series, hist in sd.histogram_series(data, variant, layer).items():
            edges, counts = hist.get("edges") or [], hist.get("counts") or []
            for k, count in enumerate(counts):
                if k + 1 < len(edges):
                    rows.append(
                        {
                            "series": series,
                            "layer": layer,
                            "bin_low": edges[k],
                            "bin_high": edges[k + 1],
                            "count": count,
                        }  # fmt: skip
                    )
    return rows, ["series", "layer", "bin_low", "bin_high", "count"]


def sensitivity_rows(data: dict) -> tuple[list[dict], list[str]]:
    metric = (data.get("analysis") or {}).get("metric", "top1")
    rows = [
        {"curve": curve["label"], "fraction_pruned": f, metric: a}
        for curve in sd.sensitivity_scans(data)
        for f, a in zip(curve["fractions"], curve["accuracy"], strict=False)
    ]
    return rows, ["curve", "fraction_pruned", metric]


def figure_download(
    data: dict,
    name: str,
    *,
    hist: tuple[str | None, str | None] = (None, None),
    latency: tuple[str | None, str | None] = (None, None),
) -> dict:
    """The CSV (text and file name) behind the study figure `name` (a figure_card name); `hist`
    is the histogram's (variant, layer), `latency` the (runtime, batch size) the page shows."""
    study_id = (data.get("study") or {}).get("id")
    metric = (data.get("analysis") or {}).get("metric", "top1")
    prefix = f"study-{study_id}"
    if name.startswith("landscape-"):
        variant = name.removeprefix("landscape-")
        rows, columns = landscape_rows(data, variant)
        filename = f"{prefix}-landscape-{slug(variant)}-{metric}.csv"
    elif name == "tradeoff-latency":
        rows, columns = latency_rows(data, *latency)
        runtime, batch = (rows[0]["runtime"], rows[0]["batch_size"]) if rows else ("not-measured", "none")
        filename = f"{prefix}-accuracy-vs-latency-{slug(runtime)}-batch-{slug(batch)}.csv"
    elif name == "tradeoff-size":
        rows, columns = size_rows(data)
        filename = f"{prefix}-accuracy-vs-size.csv"
    elif name in ("risk-absolute", "risk-relative"):
        rows, columns = risk_rows(data)
        filename = f"{prefix}-risk-{metric}.csv"
    elif name.startswith("kept-"):
        variant = name.removeprefix("kept-")
        rows, columns = kept_rows(data, variant)
        filename = f"{prefix}-kept-filters-{slug(variant)}.csv"
    elif name == "weight-histogram":
        rows, columns = histogram_rows(data, *hist)
        filename = f"{prefix}-weights-{slug(hist[0] or 'none')}-{slug(hist[1] or 'none')}.csv"
    elif name == "sensitivity":
        rows, columns = sensitivity_rows(data)
        filename = f"{prefix}-sensitivity-{metric}.csv"
    else:
        raise KeyError(name)
    return {"content": rows_to_csv(rows, columns), "filename": filename}


def export_buttons() -> html.Div:
    """The whole study's runs, as the API exports them."""
    return html.Div(
        [
            html.Span("All runs of this study:", className="muted"),
            html.Button("Download CSV", id="study-export-csv", className="small"),
            html.Button("Download JSON", id="study-export-json", className="small"),
            dcc.Download(id="study-export-dl"),
            html.Span(id="study-export-result"),
        ],
        className="actions",
        id="study-export",
    )


def export_file(study_id: int, fmt: str, body: Any) -> tuple[str, str]:
    """(text, file name) of GET /export's answer: study-<id>-runs.csv or .json."""
    content = body if isinstance(body, str) else json.dumps(body, indent=1, allow_nan=False)
    return content, f"study-{study_id}-runs.{fmt}"


def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output({"type": f"{CSV_TYPE}-dl", "name": MATCH}, "data"),
        Input({"type": f"{CSV_TYPE}-btn", "name": MATCH}, "n_clicks"),
        State({"type": f"{CSV_TYPE}-btn", "name": MATCH}, "id"),
        State("study-data", "data"),
        State("study-hist-variant", "value"),
        State("study-hist-layer", "value"),
        State("latency-runtime", "value"),
        State("latency-batch", "value"),
        prevent_initial_call=True,
    )
    def download_study_figure(n_clicks, button_id, data, hist_variant, hist_layer, runtime, batch):
        if not n_clicks or not isinstance(data, dict) or "study" not in data:
            raise PreventUpdate
        try:
            answer = figure_download(
                data, str(button_id["name"]), hist=(hist_variant, hist_layer), latency=(runtime, batch)
            )
        except KeyError:
            raise PreventUpdate from None
        return dcc.send_string(answer["content"], answer["filename"])

    @app.callback(
        Output("study-export-dl", "data"),
        Output("study-export-result", "children"),
        Input("study-export-csv", "n_clicks"),
        Input("study-export-json", "n_clicks"),
        State("study-id", "data"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def download_export(_csv, _json, study_id, token):
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        fmt = "json" if ctx.triggered_id == "study-export-json" else "csv"
        number = parse_id(study_id)
        if number is None:
            raise PreventUpdate
        try:
            body = await client_factory(token).export_study(number, fmt)
        except ApiError as exc:
            return None, html.Span(f"Not downloaded: {error_text(exc.detail)}", className="error")
        content, filename = export_file(number, fmt, body)
        return dcc.send_string(content, filename), ""
