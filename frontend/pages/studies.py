"""`/`: every study with model, dataset, variants, status, progress by state and best accuracy per
variant. Filtered, sorted and paged by the API (GET /studies: `q`, `status`, `sort`, `limit`,
`offset`), so every study is reachable however many there are, and "oldest" means oldest of all."""

from __future__ import annotations

import asyncio

from dash import Dash, Input, Output, State, ctx, dcc, html
from dash.exceptions import PreventUpdate

from backend.run_states import STUDY_STATUSES
from frontend.api_client import ApiError
from frontend.pages import compare
from frontend.pages.components import fmt_acc, run_progress, status_badge
from frontend.pages.messages import error_text
from frontend.pages.study_record import study_summary
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal

PAGE_SIZE = 25
# The list's sorts, each one the API's (GET /studies?sort=...).
SORTS = {
    "newest": "-created_at",
    "oldest": "created_at",
    "name A–Z": "name",
    "name Z–A": "-name",
}
FILTER_MAX = 200  # characters the API takes in `q`


def layout() -> html.Div:
    return html.Div(
        [
            html.Div(
                [html.H1("Studies"), dcc.Link(html.Button("New study", className="primary"), href="/new")],
                style={"display": "flex", "justifyContent": "space-between", "alignItems": "center"},
            ),
            html.Div(
                [
                    dcc.Input(
                        id="studies-filter",
                        type="search",
                        placeholder="filter by name, model, dataset, variant, creator",
                        debounce=0.4,  # seconds after the last keystroke: one request, not one per key
                        maxLength=FILTER_MAX,
                        style={"width": "360px", "padding": "4px 8px"},
                    ),
                    dcc.Dropdown(
                        id="studies-status",
                        options=list(STUDY_STATUSES),  # the badges' words
                        placeholder="any status",
                        style={"width": "180px"},
                    ),
                    html.Label("sort", htmlFor="studies-sort"),
                    dcc.Dropdown(
                        id="studies-sort",
                        options=[{"label": k, "value": k} for k in SORTS],
                        value="newest",
                        clearable=False,
                        style={"width": "140px"},
                    ),
                ],
                className="controls panel",
            ),
            dcc.Interval(id="studies-poll", interval=5000),
            dcc.Store(id="studies-data"),
            dcc.Store(id="studies-offset", data=0),
            html.Div(html.P("Loading…", className="muted"), id="studies-table", className="panel"),
            html.Div(
                [
                    html.Button("‹ previous", id="studies-prev", className="small", disabled=True),
                    html.Span(id="studies-count", className="muted"),
                    html.Button("next ›", id="studies-next", className="small", disabled=True),
                ],
                className="pager",
                id="studies-pager",
            ),
        ]
    )


def count_text(offset: int, shown: int, total: int) -> str:
    """ "Studies 26–50 of 52 · page 2 of 3"."""
    if not total:
        return "no studies"
    pages = -(-total // PAGE_SIZE)
    return (
        f"studies {offset + 1:,}–{offset + shown:,} of {total:,} · page {offset // PAGE_SIZE + 1} of {pages}"
    )


def render_table(studies: list[dict], filtered: bool) -> html.Div | html.Table:
    rows = [study_summary(s) for s in studies]
    if not rows:
        return html.P("No study matches." if filtered else "No studies yet. Start one or import a CSV.")
    header = html.Tr(
        [html.Th("compare", title="tick studies, then 'Compare selected'")]
        + [
            html.Th(h)
            for h in ("study", "model", "dataset", "variants", "status", "progress", "best top-1 per variant")
        ]
        + [html.Th("created by")]
    )
    body = []
    for study, r in zip(studies, rows, strict=True):
        best = [
            html.Span(
                [html.B(name), f" {fmt_acc(r['best'].get(name))}"],
                style={"marginRight": "10px", "whiteSpace": "nowrap"},
            )
            for name in r["variants"]
            if name in r["best"]
        ]
        body.append(
            html.Tr(
                [
                    compare.pick_cell(r["id"]),
                    html.Td(dcc.Link(r["name"], href=f"/studies/{r['id']}", className="study-link")),
                    html.Td(r["model"] or ("imported" if r["kind"] == "imported" else "—")),
                    html.Td(r["dataset"] or "—"),
                    html.Td(", ".join(map(str, r["variants"]))),
                    html.Td(status_badge(r["status"])),
                    html.Td(run_progress(study["progress"]), style={"minWidth": "220px"}),
                    html.Td(best or "—"),
                    html.Td(r["created_by"]),
                ],
                className="study-row",
            )
        )
    table = html.Table([html.Thead(header), html.Tbody(body)], className="plain", id="studies-list")
    return html.Div([compare.selected_link(), table])


def next_offset(trigger: str | None, offset: int, total: int) -> int:
    """The list's offset after a pager click; a new filter, status or sort starts at the first page."""
    if trigger == "studies-next":
        return offset + PAGE_SIZE if offset + PAGE_SIZE < total else offset
    if trigger == "studies-prev":
        return max(0, offset - PAGE_SIZE)
    return 0


def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output("studies-offset", "data"),
        Input("studies-prev", "n_clicks"),
        Input("studies-next", "n_clicks"),
        Input("studies-filter", "value"),
        Input("studies-status", "value"),
        Input("studies-sort", "value"),
        State("studies-offset", "data"),
        State("studies-data", "data"),
        prevent_initial_call=True,
    )
    def move(_prev, _next, _text, _status, _sort, offset, data):
        total = int((data or {}).get("total") or 0)
        return next_offset(ctx.triggered_id, int(offset or 0), total)

    @app.callback(
        Output("studies-data", "data"),
        Input("studies-poll", "n_intervals"),
        Input(TOKEN_STORE, "data"),
        Input("studies-offset", "data"),
        Input("studies-filter", "value"),
        Input("studies-status", "value"),
        Input("studies-sort", "value"),
    )
    async def load_studies(_n, token, offset, text, status, sort):
        client = client_factory(token)
        offset = max(0, int(offset or 0))
        try:
            page = await client.studies_page(
                limit=PAGE_SIZE,
                offset=offset,
                sort=SORTS.get(sort or "newest", SORTS["newest"]),
                status=status if status in STUDY_STATUSES else None,
                q=(text or "").strip()[:FILTER_MAX] or None,
            )
        except ApiError as exc:
            return {"error": error_text(exc.detail), "status": exc.status, "detail": str(exc.detail)}
        studies = page.get("items") or []
        # The list has no accuracies; /compare has each variant's best (only studies with results).
        with_results = [s for s in studies if (s.get("progress") or {}).get("succeeded")]
        answers = await asyncio.gather(
            *(client.compare(s["id"]) for s in with_results), return_exceptions=True
        )
        for s, answer in zip(with_results, answers, strict=True):
            if isinstance(answer, dict):
                s["best"] = {row["name"]: row.get("best_top1") for row in answer.get("variants", [])}
        return {
            "studies": studies,
            "total": int(page.get("total") or 0),
            "offset": offset,
            "filtered": bool(text or status),
        }

    @app.callback(
        Output("studies-table", "children"),
        Output("studies-count", "children"),
        Output("studies-prev", "disabled"),
        Output("studies-next", "disabled"),
        Input("studies-data", "data"),
    )
    def show_studies(data):
        if not data:
            raise PreventUpdate
        if "error" in data:
            refused = read_refusal(data.get("status"), data.get("detail"))
            message = refused or html.P(f"Could not load studies: {data['error']}", className="error")
            return message, "", True, True
        offset, total, studies = data["offset"], data["total"], data["studies"]
        return (
            render_table(studies, data.get("filtered", False)),
            count_text(offset, len(studies), total),
            offset == 0,
            offset + PAGE_SIZE >= total,
        )
