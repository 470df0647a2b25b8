"""The study page's runs table: every run of the study, filtered by variant, state and kind,
sorted by id or accuracy, paged by the API (GET /studies/{id}/runs), each linking to its run page
(where a failed or cancelled run is retried)."""

from __future__ import annotations

from dash import Dash, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from backend.run_states import RUN_KINDS, RUN_STATUSES
from frontend.api_client import ApiError, parse_id
from frontend.pages.components import fmt, fmt_acc, fmt_hyper, status_badge
from frontend.pages.messages import error_text
from frontend.pages.token import STORE_ID as TOKEN_STORE

PAGE_SIZE = 25
SORTS = {
    "id": "run id",
    "-top1": "best top-1 first",
    "top1": "worst top-1 first",
    "-top5": "best top-5 first",
    "-id": "newest run first",
}
ERROR_CHARS = 90  # the first line of a failed run's error, cut here (the run page has all of it)


def section() -> html.Div:
    """The runs section of the study page (its heading, filters, table and pager)."""
    return html.Div(
        [
            html.H2("Runs"),
            html.Div(
                [
                    dcc.Dropdown(id="runs-variant", placeholder="any variant", style={"width": "180px"}),
                    dcc.Dropdown(
                        id="runs-status",
                        options=list(RUN_STATUSES),
                        placeholder="any state",
                        style={"width": "160px"},
                    ),
                    dcc.Dropdown(
                        id="runs-kind",
                        options=list(RUN_KINDS),
                        placeholder="any kind",
                        style={"width": "140px"},
                    ),
                    html.Label("sort", htmlFor="runs-sort"),
                    dcc.Dropdown(
                        id="runs-sort",
                        options=[{"label": label, "value": key} for key, label in SORTS.items()],
                        value="id",
                        clearable=False,
                        style={"width": "190px"},
                    ),
                ],
                className="controls",
            ),
            html.Div(id="runs-table", className="runs-table"),
            html.Div(
                [
                    html.Button("‹ previous", id="runs-prev", className="small", disabled=True),
                    html.Span(id="runs-count", className="muted"),
                    html.Button("next ›", id="runs-next", className="small", disabled=True),
                ],
                className="pager",
            ),
            dcc.Store(id="runs-offset", data=0),
            dcc.Store(id="runs-total", data=0),
        ],
        className="panel",
        id="study-runs",
    )


def first_line(text: str | None) -> str:
    line = (text or "").strip().splitlines()[-1:] or [""]  # a traceback's last line says what failed
    return line[0] if len(line[0]) <= ERROR_CHARS else line[0][: ERROR_CHARS - 1] + "…"


def runs_table(runs: list[dict]) -> html.Table | html.P:
    """One row per run: a link to its page, what it is (variant, kind, lr, wd, seed, grid point),
    its state and its numbers."""
    if not runs:
        return html.P("No run matches.", className="muted")
    head = ["run", "variant", "kind", "lr", "wd", "seed", "grid (i, j)", "state", "top-1 (%)", "top-5 (%)",
            "epochs", "attempts", "error"]  # fmt: skip
    rows = []
    for run in runs:
        grid = "—" if run.get("grid_i") is None else f"{run['grid_i']}, {run['grid_j']}"
        rows.append(
            html.Tr(
                [
                    html.Td(dcc.Link(f"run {run['id']}", href=f"/runs/{run['id']}", className="run-link")),
                    html.Td(run.get("variant")),
                    html.Td(run.get("kind")),
                    html.Td(fmt_hyper(run.get("lr")), className="num"),
                    html.Td(fmt_hyper(run.get("wd")), className="num"),
                    html.Td(fmt(run.get("seed")), className="num"),
                    html.Td(grid, className="num"),
                    html.Td(status_badge(run.get("status"))),
                    html.Td(fmt_acc(run.get("top1")), className="num"),
                    html.Td(fmt_acc(run.get("top5")), className="num"),
                    html.Td(fmt(run.get("epochs_done")), className="num"),
                    html.Td(fmt(run.get("attempts")), className="num"),
                    html.Td(
                        first_line(run.get("error")), className="error-cell", title=run.get("error") or ""
                    ),
                ],
                className="run-row",
            )
        )
    header = html.Tr(
        [html.Th(h, className="num" if "(" in h or h in ("lr", "wd", "seed") else None) for h in head]
    )
    return html.Table([html.Thead(header), html.Tbody(rows)], className="plain", id="runs-list")


def count_text(offset: int, shown: int, total: int) -> str:
    if not total:
        return "no runs"
    return f"runs {offset + 1:,}–{offset + shown:,} of {total:,}"


def next_offset(trigger: str | None, offset: int, total: int) -> int:
    """The page's offset after a pager click (filters changed: back to the first page)."""
    if trigger == "runs-next":
        return offset + PAGE_SIZE if offset + PAGE_SIZE < total else offset
    if trigger == "runs-prev":
        return max(0, offset - PAGE_SIZE)
    return 0


def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output("runs-variant", "options"),
        Input("study-data", "data"),
    )
    def variant_options(data):
        if not isinstance(data, dict) or "study" not in data:
            raise PreventUpdate
        return [str(name) for name in data["study"].get("variants") or []]

    @app.callback(
        Output("runs-offset", "data"),
        Input("runs-prev", "n_clicks"),
        Input("runs-next", "n_clicks"),
        Input("runs-variant", "value"),
        Input("runs-status", "value"),
        Input("runs-kind", "value"),
        Input("runs-sort", "value"),
        State("runs-offset", "data"),
        State("runs-total", "data"),
        prevent_initial_call=True,
    )
    def move(_prev, _next, _variant, _status, _kind, _sort, offset, total):
        return next_offset(ctx.triggered_id, int(offset or 0), int(total or 0))

    @app.callback(
        Output("runs-table", "children"),
        Output("runs-count", "children"),
        Output("runs-prev", "disabled"),
        Output("runs-next", "disabled"),
        Output("runs-total", "data"),
        Input("study-data", "data"),
        Input("runs-offset", "data"),
        # the filters too: a filter change resets the offset (`move`), which Dash runs first
        Input("runs-variant", "value"),
        Input("runs-status", "value"),
        Input("runs-kind", "value"),
        Input("runs-sort", "value"),
        State("study-id", "data"),
        State(TOKEN_STORE, "data"),
    )
    async def show_runs(data, offset, variant, status, kind, sort, study_id, token):
        if not isinstance(data, dict) or "study" not in data or parse_id(study_id) is None:
            raise PreventUpdate
        offset = max(0, int(offset or 0))
        try:
            page = await client_factory(token).list_runs(
                study_id,
                variant=variant or None,
                status=status if status in RUN_STATUSES else None,
                kind=kind if kind in RUN_KINDS else None,
                sort=sort if sort in SORTS else "id",
                limit=PAGE_SIZE,
                offset=offset,
            )
        except ApiError as exc:
            return html.P(f"Runs: {error_text(exc.detail)}", className="error"), "", True, True, 0
        items, total = page.get("items") or [], int(page.get("total") or 0)
        return (
            runs_table(items),
            count_text(offset, len(items), total),
            offset == 0,
            offset + PAGE_SIZE >= total,
            total,
        )
