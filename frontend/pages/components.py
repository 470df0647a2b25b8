"""Widgets every page uses: figure cards (PNG from plotly's modebar, CSV from the figure's data),
exportable tables, progress bars, status badges, number formatting."""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

from dash import MATCH, Dash, Input, Output, State, dash_table, dcc, html
from dash.exceptions import PreventUpdate

from frontend.figures.common import figure_to_csv


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "figure"


def graph_config(filename: str) -> dict:
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": slug(filename), "scale": 2},
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    }


def figure_card(
    name: str, title: str, figure: Any = None, *, note: Any = None, height: int | None = None
) -> html.Div:
    """A titled graph with a CSV button; `name` must be unique on the page (it keys the callbacks)."""
    style = {"height": f"{height}px"} if height else None
    return html.Div(
        [
            html.Div(
                [
                    html.H3(title),
                    html.Button(
                        "CSV", id={"type": "csv-btn", "name": name}, className="small", title="data as CSV"
                    ),
                ],
                className="card-head",
            ),
            dcc.Graph(
                id={"type": "fig", "name": name},
                figure=figure if figure is not None else {},
                config=graph_config(name),
                style=style,
            ),
            dcc.Download(id={"type": "csv-dl", "name": name}),
            html.P(note, className="note") if note else None,
        ],
        className="figure-card",
        id={"type": "card", "name": name},
    )


def data_table(
    table_id: str, rows: list[dict], columns: list[dict] | None = None, *, page_size: int = 25
) -> html.Div:
    """A sortable DataTable with CSV export and a copy-to-clipboard (tab-separated) button."""
    columns = columns or [{"name": key, "id": key} for key in (rows[0].keys() if rows else [])]
    return html.Div(
        [
            html.Div(
                [
                    dcc.Clipboard(
                        id={"type": "copy", "name": table_id},
                        title="copy the table (tab-separated)",
                        style={"display": "inline-block", "fontSize": 18, "cursor": "pointer"},
                    ),
                    html.Span(" copy", className="muted"),
                ],
                style={"marginBottom": "4px"},
            ),
            dash_table.DataTable(
                id={"type": "table", "name": table_id},
                data=rows,
                columns=columns,
                export_format="csv",
                export_headers="display",
                sort_action="native",
                page_size=page_size,
                style_table={"overflowX": "auto"},
                style_cell={
                    "padding": "4px 8px",
                    "textAlign": "right",
                    "whiteSpace": "nowrap",
                    "fontFamily": "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif",
                    "fontSize": "13px",
                },
                style_cell_conditional=[
                    {"if": {"column_id": c}, "textAlign": "left"} for c in ("variant", "kind", "note")
                ],
                # headers wrap, so a wide table (the measurements' 14 columns) fits a laptop screen
                style_header={
                    "fontWeight": "600",
                    "backgroundColor": "#f5f7fa",
                    "whiteSpace": "normal",
                    "height": "auto",
                    "verticalAlign": "bottom",
                },
            ),
        ]
    )


def table_to_tsv(rows: list[dict], columns: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow([c["name"] if isinstance(c["name"], str) else " ".join(c["name"]) for c in columns])
    for row in rows:
        writer.writerow([row.get(c["id"], "") for c in columns])
    return out.getvalue()


def progress_bar(done: int, total: int, *, label: str | None = None) -> html.Div:
    fraction = done / total if total else 0.0
    return html.Div(
        [
            html.Div(html.Div(style={"width": f"{100 * fraction:.1f}%"}), className="progress"),
            html.Span(label or f"{done} / {total} runs", className="progress-label"),
        ],
        style={"display": "flex", "alignItems": "center", "gap": "8px"},
    )


def status_badge(status: str | None) -> html.Span:
    status = status or "unknown"
    return html.Span(status, className=f"status status-{slug(status)}")


def fmt(value: Any, digits: int = 2, *, unit: str = "") -> str:
    """Numbers for people: fixed decimals, thousands separators for counts, '—' for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    if isinstance(value, float):
        if value == 0:
            return f"{0:.{digits}f}{unit}"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 10 ** (-digits)):
            return f"{value:.3g}{unit}"
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def fmt_sig(value: Any, sig: int = 2, *, floor: float = 1e-3) -> str:
    """Significant figures rather than fixed decimals, so a small number keeps its digits (0.0043,
    not 0.00); a magnitude below `floor` reads '<0.001' rather than float noise like 1.1e-16."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    if abs(value) < floor:
        return f"<{floor:g}"
    if abs(value) >= 10 ** (sig - 1):
        return f"{value:,.0f}"
    return f"{value:.{sig}g}"


def fmt_p(p_value: Any) -> str:
    """A p-value as people report it: three significant figures, '<0.001' below that."""
    return fmt_sig(p_value, 3, floor=1e-3)


def register(app: Dash) -> None:
    """Callbacks shared by all pages: CSV of any figure, copy of any table."""

    @app.callback(
        Output({"type": "csv-dl", "name": MATCH}, "data"),
        Input({"type": "csv-btn", "name": MATCH}, "n_clicks"),
        State({"type": "fig", "name": MATCH}, "figure"),
        State({"type": "fig", "name": MATCH}, "id"),
        prevent_initial_call=True,
    )
    def download_figure_csv(n_clicks, figure, graph_id):
        if not n_clicks or not figure:
            raise PreventUpdate
        return dcc.send_string(figure_to_csv(figure), f"{slug(graph_id['name'])}.csv")

    @app.callback(
        Output({"type": "copy", "name": MATCH}, "content"),
        Input({"type": "copy", "name": MATCH}, "n_clicks"),
        State({"type": "table", "name": MATCH}, "data"),
        State({"type": "table", "name": MATCH}, "columns"),
        prevent_initial_call=True,
    )
    def copy_table(_n_clicks, rows, columns):
        return table_to_tsv(rows or [], columns or [])
