"""Widgets every page uses: figure cards (PNG from plotly's modebar, CSV of the numbers behind the
figure), tables with a named CSV download and a copy button, run progress by state, status badges,
number formatting (one format per quantity: `fmt_hyper` for learning rates and weight decays)."""

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


# figure_card(csv=STUDY_CSV): the study page's figures, whose CSVs frontend/pages/study_downloads.py
# builds from the numbers behind them.
STUDY_CSV = "study-csv"


def figure_card(
    name: str,
    title: str,
    figure: Any = None,
    *,
    note: Any = None,
    height: int | None = None,
    csv: str = "csv",
) -> html.Div:
    """A titled graph with a CSV button; `name` must be unique on the page (it keys the callbacks).
    `csv` names the callback family that answers the button: "csv" (the figure's own traces,
    `figure_to_csv`) or a page's own ("study-csv", "run-csv": the numbers behind the figure)."""
    style = {"height": f"{height}px"} if height else None
    return html.Div(
        [
            html.Div(
                [
                    html.H3(title),
                    html.Button(
                        "CSV",
                        id={"type": f"{csv}-btn", "name": name},
                        className="small",
                        title="the numbers behind this figure, as CSV",
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
            dcc.Download(id={"type": f"{csv}-dl", "name": name}),
            html.P(note, className="note") if note else None,
        ],
        className="figure-card",
        id={"type": "card", "name": name},
    )


def data_table(
    table_id: str,
    rows: list[dict],
    columns: list[dict] | None = None,
    *,
    page_size: int = 25,
    filename: str | None = None,
) -> html.Div:
    """A sortable DataTable with a CSV download named `filename` (default `<table_id>.csv`; the
    columns under their shown names) and a "copy" button (tab-separated, as shown)."""
    columns = columns or [{"name": key, "id": key} for key in (rows[0].keys() if rows else [])]
    return html.Div(
        [
            html.Div(
                [
                    dcc.Clipboard(
                        "copy",
                        id={"type": "copy", "name": table_id},
                        copied_children="copied",
                        title="copy the table (tab-separated) to paste into a spreadsheet",
                        className="copy-button",
                    ),
                    html.Button(
                        "CSV",
                        id={"type": "table-csv-btn", "name": table_id},
                        className="small",
                        title=f"download as {filename or slug(table_id) + '.csv'}",
                    ),
                    dcc.Store(id={"type": "table-file", "name": table_id}, data=filename),
                    dcc.Download(id={"type": "table-csv-dl", "name": table_id}),
                ],
                className="table-tools",
            ),
            dash_table.DataTable(
                id={"type": "table", "name": table_id},
                data=rows,
                columns=columns,
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


def _column_name(column: dict) -> str:
    name = column["name"]
    return name if isinstance(name, str) else " ".join(name)


def cell_text(value: Any, digits: int) -> Any:
    """A table cell for a file: floats to `digits` significant figures (no float noise such as
    0.30000000000000004), none as empty, everything else as it is."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return value


def table_to_tsv(rows: list[dict], columns: list[dict]) -> str:
    """What "copy" puts on the clipboard: the shown columns, numbers to 6 significant figures."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow([_column_name(c) for c in columns])
    for row in rows:
        writer.writerow([cell_text(row.get(c["id"]), 6) for c in columns])
    return out.getvalue()


def rows_to_csv(rows: list[dict], columns: list[dict] | list[str]) -> str:
    """A CSV of `rows` under named columns (`columns`: DataTable columns or plain keys), numbers to
    10 significant figures; text that a spreadsheet would run as a formula gets a leading '."""
    specs = [c if isinstance(c, dict) else {"id": c, "name": c} for c in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_column_name(c) for c in specs])
    for row in rows:
        cells = [cell_text(row.get(c["id"]), 10) for c in specs]
        writer.writerow(["'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v for v in cells])
    return out.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Run states in the order a progress bar draws them, and each one's colour (docs/spec.md section 1).
PROGRESS_PARTS = (
    ("succeeded", "succeeded", "#2e7d32"),
    ("diverged", "diverged", "#f9a825"),
    ("failed", "failed", "#c62828"),
    ("cancelled", "cancelled", "#7b8794"),
)


def run_progress(progress: dict) -> html.Div:
    """A study's runs by state: one bar with a segment per ended state (succeeded, diverged, failed,
    cancelled) over the runs still to happen, and the counts in words: "24 / 64 runs ended:
    18 succeeded, 6 cancelled; 40 to go". A cancelled study never reads as a full, finished bar."""
    total = int(progress.get("total") or 0)
    finished = int(progress.get("finished") or 0)
    segments, words = [], []
    for state, label, colour in PROGRESS_PARTS:
        n = int(progress.get(state) or 0)
        if n:
            width = 100 * n / total if total else 0
            segments.append(
                html.Div(
                    className=f"segment segment-{state}",
                    style={"width": f"{width:.2f}%", "background": colour},
                    title=f"{n} {label}",
                )
            )
            words.append(f"{n:,} {label}")
    to_go = total - finished
    text = f"{finished:,} / {total:,} runs ended"
    if words:
        text += ": " + ", ".join(words)
    if to_go and finished:
        text += f"; {to_go:,} to go"
    return html.Div(
        [
            html.Div(segments, className="progress progress-stacked"),
            html.Span(text, className="progress-label"),
        ],
        className="run-progress",
    )


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


def fmt_acc(value: Any) -> str:
    """An accuracy (or a spread of one) in percent, the one way every page writes it: two decimals,
    also when JSON made a whole number of it (91.0 arrives as 91)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return f"{float(value):.2f}"


def fmt_hyper(value: Any) -> str:
    """A learning rate or weight decay, the one way every page writes them: 3 significant figures,
    scientific below 1e-4 (0.1, 0.0398, 0.000251, 3.98e-05)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return f"{value:.3g}"


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

    @app.callback(
        Output({"type": "table-csv-dl", "name": MATCH}, "data"),
        Input({"type": "table-csv-btn", "name": MATCH}, "n_clicks"),
        State({"type": "table", "name": MATCH}, "data"),
        State({"type": "table", "name": MATCH}, "columns"),
        State({"type": "table-file", "name": MATCH}, "data"),
        State({"type": "table", "name": MATCH}, "id"),
        prevent_initial_call=True,
    )
    def download_table_csv(n_clicks, rows, columns, filename, table_id):
        if not n_clicks:
            raise PreventUpdate
        name = slug(filename) if isinstance(filename, str) and filename else f"{slug(table_id['name'])}.csv"
        return dcc.send_string(rows_to_csv(rows or [], columns or []), name)


def not_found(what: str, ident: object, detail: str | None = None) -> html.Div:
    """The page for an id that names nothing (deleted, or never there): says so, offers the list,
    and shows nothing to act on."""
    return html.Div(
        [
            html.H1(f"{what.capitalize()} {ident} not found"),
            html.P(detail or f"There is no {what} {ident}: it may have been deleted.", className="muted"),
            html.P(dcc.Link("All studies", href="/")),
        ],
        className="not-found panel",
        id="not-found",
    )
