"""The study page's "Accuracy vs cost" section, one runtime at a time (issue 18).

A runtime selector (default: `/compare`'s `latency.default_runtime`, ONNX Runtime on the CPU)
drives the measurement table, the accuracy-vs-latency chart, its Pareto front and the FLOPs
ratio / latency ratio bars. Every latency figure and ratio shown is the API's row for the selected
runtime (`latency.by_runtime[rt]`, backend/analysis/latency.py): the page divides nothing, so no
ratio shown can mix runtimes, and the runtime is named next to every latency figure.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from dash.dash_table.Format import Format, Scheme
from dash.exceptions import PreventUpdate

from frontend.figures import tradeoff_figure
from frontend.figures.common import pareto_front
from frontend.figures.latency import ratio_figure
from frontend.pages import study_data as sd
from frontend.pages.components import STUDY_CSV as CSV_TYPE
from frontend.pages.components import data_table, figure_card, fmt

HIDDEN = {"display": "none"}
PRUNED_KINDS = ("structured", "unstructured")
RUNTIME_WORDS = {
    "onnxruntime-cpu": "ONNX Runtime, CPU provider",
    "torch-cpu": "eager torch, CPU",
    "torch-cuda": "eager torch, CUDA",
    "onnxruntime-cuda": "ONNX Runtime, CUDA provider",
}


def section() -> html.Div:
    """The section's layout (a list entry of the study page's layout)."""
    return html.Div(
        [
            html.H2("Accuracy vs cost"),
            html.P(id="study-cost-note", className="wait-note"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("runtime", htmlFor="latency-runtime"),
                            dcc.RadioItems(
                                id="latency-runtime",
                                options=[],
                                inline=True,
                                inputStyle={"marginLeft": "8px"},
                            ),
                            html.Label("batch size", htmlFor="latency-batch"),
                            dcc.RadioItems(
                                id="latency-batch", options=[], inline=True, inputStyle={"marginLeft": "8px"}
                            ),
                        ],
                        className="controls",
                    ),
                    html.P(id="latency-runtime-note", className="note"),
                    html.Div(id="latency-charts", className="grid-2", style={"marginTop": "8px"}),
                    html.Div(id="latency-notes"),
                    html.Div(id="latency-ratios", style={"marginTop": "16px"}),
                    html.Div(id="study-measure-table", className="panel", style={"marginTop": "16px"}),
                ],
                id="study-cost",
                style=HIDDEN,
            ),
        ],
        id="latency-panel",
    )


# --- readers: what the section shows, from the study-data store --------------------------------
def runtime_label(runtime: str) -> str:
    words = RUNTIME_WORDS.get(runtime)
    return f"{runtime} ({words})" if words else runtime


def runtime_choice(data: dict, current: Any = None) -> tuple[list[dict], str | None]:
    """(radio options, selected runtime): the runtimes `/compare` holds figures on, in its order;
    the user's choice while it is still offered, else the comparison's default."""
    view = sd.latency_view(data)
    runtimes = [rt for rt in view.get("runtimes") or [] if rt in (view.get("by_runtime") or {})]
    options = [{"label": f" {runtime_label(rt)}", "value": rt} for rt in runtimes]
    if current in runtimes:
        return options, current
    default = view.get("default_runtime")
    return options, default if default in runtimes else (runtimes[0] if runtimes else None)


def batch_choice(data: dict, current: Any = None) -> tuple[list[dict], str | None]:
    """(radio options, selected batch size): batch sizes with a figure; batch 1 first by default."""
    batches = [str(b) for b in sd.latency_view(data).get("batch_sizes") or []]
    options = [{"label": f" {b}", "value": b} for b in batches]
    if current in batches:
        return options, current
    return options, batches[0] if batches else None


def runtime_rows(data: dict, runtime: str | None, batch: str | None) -> list[dict]:
    """The API's latency rows of `runtime` at `batch`, in the study's order ([] when absent)."""
    chosen, rows = sd.latency_on(data, runtime)
    if chosen is None or chosen != runtime:
        return []
    return [row for (_, row_batch), row in rows.items() if row_batch == batch]


def chart_rows(data: dict, runtime: str | None, batch: str | None) -> list[dict]:
    """Accuracy-vs-latency points on one runtime and batch: the API's median and accuracy (best top-1)."""
    return [
        {"variant": row["variant"], "top1": row["accuracy"], "latency_ms": row["median_ms"]}
        for row in runtime_rows(data, runtime, batch)
    ]


def latency_front(data: dict, runtime: str | None, batch: str | None) -> list[str]:
    """The Pareto front of `runtime` at `batch` as the API computed it."""
    chosen, _ = sd.latency_on(data, runtime)
    if chosen is None or chosen != runtime:
        return []
    fronts = sd.latency_view(data)["by_runtime"][chosen].get("pareto_front") or {}
    return list(fronts.get(batch) or [])


def size_rows(rows: list[dict]) -> list[dict]:
    """Accuracy-vs-size points: the saved artefact's size (runtime-free: a file has one size)."""
    return [{"variant": r["variant"], "top1": r["top1"], "size_mb": r["size_mb"]} for r in rows]


def size_front(rows: list[dict]) -> list[str]:
    # Size is one number per variant whatever the runtime, so /compare serves no front for it;
    # this is the one front the page draws over its own rows.
    return [p[2] for p in pareto_front((r["size_mb"], r["top1"], r["variant"]) for r in rows)]


def ratio_rows(data: dict, runtime: str | None, batch: str | None) -> list[dict]:
    """Every pruned variant: FLOPs ratio (FLOPs / base FLOPs) and latency ratio on `runtime` at
    `batch`, both as the API computed them; `reason` says why a latency ratio is missing."""
    kinds = {row["variant"]: row["kind"] for row in sd.measurement_rows(data)}
    return [
        {
            "variant": row["variant"],
            "flops_ratio": row["flops_ratio"],
            "latency_ratio": row["latency_ratio"],
            "not_faster": row["not_faster"],
            "reason": row["reason"],
        }
        for row in runtime_rows(data, runtime, batch)
        if kinds.get(row["variant"]) in PRUNED_KINDS
    ]


def not_faster_messages(data: dict, runtime: str | None) -> list[str]:
    """The API's "x is not faster than the base on rt at batch b" sentences for `runtime`."""
    chosen, _ = sd.latency_on(data, runtime)
    if chosen is None or chosen != runtime:
        return []
    return list(sd.latency_view(data)["by_runtime"][chosen].get("messages") or [])


def unstructured_notes(data: dict, runtime: str | None) -> list[str]:
    """Per unstructured variant: its dense and sparse sizes and the API's note on dense kernels."""
    _, rows = sd.latency_on(data, runtime)
    notes = {variant: row.get("note") for (variant, _), row in rows.items() if row.get("note")}
    out = []
    for row in sd.measurement_rows(data, runtime):
        if row["kind"] != "unstructured":
            continue
        sizes = f"{fmt(row['size_mb'], 3)} MB dense, {fmt(row['size_sparse_mb'], 3)} MB sparse encoding"
        note = notes.get(row["variant"]) or (
            "dense kernels do not skip zeros, so no speedup is expected without a sparse runtime"
        )
        out.append(f"{row['variant']} (unstructured): {sizes}. Latency: {note}.")
    return out


def measure_columns(runtime: str | None) -> list[tuple[str, str, Format | None]]:
    """The measurement table's columns; every latency column names the runtime it was taken on."""
    on = runtime or "no runtime measured"
    return [
        ("variant", "variant", None),
        ("kind", "kind", None),
        ("params", "params", Format(group=",")),
        ("params_nonzero", "non-zero params", Format(group=",")),
        ("compression_rate", "compression rate (x)", Format(precision=3, scheme=Scheme.fixed)),
        ("flops", "FLOPs", Format(precision=3, scheme=Scheme.exponent)),
        ("flops_kept", "FLOPs / base FLOPs", Format(precision=3, scheme=Scheme.fixed)),
        ("latency_ratio", f"latency / base, b1 ({on})", Format(precision=3, scheme=Scheme.fixed)),
        ("latency_ratio_32", f"latency / base, b32 ({on})", Format(precision=3, scheme=Scheme.fixed)),
        ("latency_ms", f"latency b1 (ms, {on})", Format(precision=3, scheme=Scheme.fixed)),
        ("latency_ms_32", f"latency b32 (ms, {on})", Format(precision=3, scheme=Scheme.fixed)),
        ("latency_reason", f"latency note ({on})", None),
        ("size_mb", "size (MB)", Format(precision=3, scheme=Scheme.fixed)),
        ("size_sparse_mb", "sparse size (MB)", Format(precision=3, scheme=Scheme.fixed)),
        ("top1", "best top-1 (%)", Format(precision=2, scheme=Scheme.fixed)),
        ("top5", "best top-5 (%)", Format(precision=2, scheme=Scheme.fixed)),
        ("finished_runs", "finished runs", Format(group=",")),
    ]


def measurement_table(rows: list[dict], runtime: str | None) -> tuple[list[dict], list[dict]]:
    columns = []
    for key, name, number_format in measure_columns(runtime):
        column = {"name": name, "id": key}
        if number_format is not None:
            column.update(type="numeric", format=number_format)
        columns.append(column)
    keys = [c["id"] for c in columns]
    return [{key: row.get(key) for key in keys} for row in rows], columns


def flops_note(data: dict, runtime: str | None = None) -> str:
    compare = (data.get("extras") or {}).get("compare") or {}
    chosen, _ = sd.latency_on(data, runtime)
    where = f"on {chosen}, ratios within that runtime only" if chosen else "not measured yet"
    return (
        f"{compare.get('flops_convention', '')}. Latency: median of timed runs, {where}; "
        "size: the saved artefact in MB (1e6 bytes)."
    )


# --- the section's view ------------------------------------------------------------------------
def charts(data: dict, runtime: str | None, batch: str | None, metric: str) -> list:
    rows = sd.measurement_rows(data, runtime)
    on = f"batch {batch}, {runtime}" if runtime else "not measured"
    latency = tradeoff_figure(
        chart_rows(data, runtime, batch),
        cost_key="latency_ms",
        cost_label=f"latency, batch {batch} (ms, {runtime or 'not measured'})",
        metric=metric,
        front=latency_front(data, runtime, batch),
    )
    size = tradeoff_figure(
        size_rows(rows),
        cost_key="size_mb",
        cost_label="size on disk (MB)",
        metric=metric,
        front=size_front(rows),
    )
    return [
        # csv: the numbers behind each chart, named files (frontend/pages/study_downloads.py)
        figure_card("tradeoff-latency", f"Accuracy vs latency ({on})", latency, csv=CSV_TYPE),
        figure_card("tradeoff-size", "Accuracy vs size on disk (any runtime)", size, csv=CSV_TYPE),
    ]


def untimed_notes(data: dict, runtime: str | None) -> list[str]:
    """Variants without a latency figure or ratio on `runtime`, with the API's reason."""
    if not runtime:
        return []
    return [
        f"{row['variant']}: no latency ratio on {runtime}: {row['latency_reason']}"
        for row in sd.measurement_rows(data, runtime)
        if row["latency_reason"] and row["kind"] != "base"
    ]


def notes(data: dict, runtime: str | None) -> list:
    items = [
        html.P(text, className="note latency-unstructured") for text in unstructured_notes(data, runtime)
    ]
    items += [html.P(text, className="note latency-untimed") for text in untimed_notes(data, runtime)]
    slower = not_faster_messages(data, runtime)
    items += [html.P(text, className="verdict not-faster") for text in slower]
    if runtime and not slower and any(r["kind"] in PRUNED_KINDS for r in sd.measurement_rows(data)):
        items.append(
            html.P(
                f"Every pruned variant timed on {runtime} is faster than the base there.", className="note"
            )
        )
    return items


def ratios(data: dict, runtime: str | None, batch: str | None) -> list:
    rows = ratio_rows(data, runtime, batch)
    if not rows:
        return []
    return [
        figure_card(
            "latency-ratios",
            f"FLOPs ratio and latency ratio of the pruned variants ({runtime}, batch {batch})",
            ratio_figure(rows, runtime=runtime or "", batch=batch or ""),
            note="FLOPs ratio: FLOPs / base FLOPs; latency ratio: median / the base's median on the same "
            "runtime and batch size (both from the API). Fewer FLOPs need not mean less time.",
        )
    ]


def register(app: Dash) -> None:
    @app.callback(
        Output("latency-runtime", "options"),
        Output("latency-runtime", "value"),
        Output("latency-batch", "options"),
        Output("latency-batch", "value"),
        Input("study-data", "data"),
        State("latency-runtime", "value"),
        State("latency-batch", "value"),
    )
    def pick_runtime(data, runtime, batch):
        if not data or "error" in data:
            raise PreventUpdate
        runtime_options, chosen = runtime_choice(data, runtime)
        batch_options, chosen_batch = batch_choice(data, batch)
        return runtime_options, chosen, batch_options, chosen_batch

    @app.callback(
        Output("latency-charts", "children"),
        Output("latency-notes", "children"),
        Output("latency-ratios", "children"),
        Output("study-measure-table", "children"),
        Output("latency-runtime-note", "children"),
        Output("study-cost", "style"),
        Output("study-cost-note", "children"),
        Input("study-data", "data"),
        Input("latency-runtime", "value"),
        Input("latency-batch", "value"),
    )
    def show_costs(data, runtime, batch):
        if not data or "error" in data:
            raise PreventUpdate
        metric = (data.get("analysis") or {}).get("metric", "top1")
        _, runtime = runtime_choice(data, runtime)  # a forged value falls back to the default
        _, batch = batch_choice(data, batch)
        rows = sd.measurement_rows(data, runtime)
        table_rows, table_cols = measurement_table(rows, runtime)
        cost_note, measured = sd.measurements_note(data, rows)
        runtime_note = (
            f"Every latency figure and ratio below is on {runtime_label(runtime)}: ratios are taken "
            "between two figures of the same runtime and batch size only."
            if runtime
            else "No latency measured yet."
        )
        table = [
            html.H3(f"Variants measured (latency on {runtime or 'no runtime yet'})"),
            data_table(
                "measurements",
                table_rows,
                table_cols,
                filename=f"study-{data['study']['id']}-measurements-{runtime or 'not-measured'}.csv",
            ),
            html.P(flops_note(data, runtime), className="note"),
        ]
        return (
            charts(data, runtime, batch, metric),
            notes(data, runtime),
            ratios(data, runtime, batch),
            table,
            runtime_note,
            None if measured else HIDDEN,
            cost_note,
        )
