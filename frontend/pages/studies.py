"""`/`: every study with model, dataset, variants, status, progress and best accuracy per variant."""

from __future__ import annotations

import asyncio

from dash import Dash, Input, Output, dcc, html

from frontend.api_client import ApiError
from frontend.pages import compare
from frontend.pages.components import fmt, progress_bar, status_badge
from frontend.pages.study_record import study_summary
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal

MAX_BEST_LOOKUPS = 50
SORTS = {
    "newest": ("created_at", True),
    "oldest": ("created_at", False),
    "name": ("name", False),
    "progress": ("fraction", True),
    "best": ("best_overall", True),
}


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
                        debounce=False,
                        style={"width": "360px", "padding": "4px 8px"},
                    ),
                    dcc.Dropdown(
                        id="studies-status",
                        options=["running", "pending", "done", "failed", "cancelled"],
                        placeholder="any status",
                        multi=True,
                        style={"width": "280px"},
                    ),
                    html.Label("sort"),
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
            html.Div(id="studies-table", className="panel"),
        ]
    )


def _matches(summary: dict, text: str) -> bool:
    haystack = " ".join(
        str(x)
        for x in (
            summary["name"],
            summary["model"],
            summary["dataset"],
            summary["created_by"],
            *summary["variants"],
        )
    ).lower()
    return all(word in haystack for word in text.lower().split())


def render_table(studies: list[dict], text: str | None, statuses: list[str] | None, sort: str) -> html.Div:
    rows = [study_summary(s) for s in studies]
    if text:
        rows = [r for r in rows if _matches(r, text)]
    if statuses:
        rows = [r for r in rows if r["status"] in statuses]
    for r in rows:
        r["fraction"] = r["done"] / r["planned"] if r["planned"] else 0.0
        r["best_overall"] = max((v for v in r["best"].values() if isinstance(v, int | float)), default=-1.0)
    key, reverse = SORTS.get(sort or "newest", SORTS["newest"])
    rows.sort(key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0), reverse=reverse)
    if not rows:
        return html.P("No study matches." if studies else "No studies yet. Start one or import a CSV.")
    header = html.Tr(
        [html.Th("compare", title="tick studies, then 'Compare selected'")]
        + [
            html.Th(h)
            for h in ("study", "model", "dataset", "variants", "status", "progress", "best top-1 per variant")
        ]
        + [html.Th("created by")]
    )
    body = []
    for r in rows:
        best = [
            html.Span(
                [html.B(name), f" {fmt(r['best'].get(name))}"],
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
                    html.Td(progress_bar(r["done"], r["planned"]), style={"minWidth": "200px"}),
                    html.Td(best or "—"),
                    html.Td(r["created_by"]),
                ],
                className="study-row",
            )
        )
    table = html.Table([html.Thead(header), html.Tbody(body)], className="plain", id="studies-list")
    return html.Div([compare.selected_link(), table])


def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output("studies-data", "data"), Input("studies-poll", "n_intervals"), Input(TOKEN_STORE, "data")
    )
    async def load_studies(_n, token):
        client = client_factory(token)
        try:
            studies = await client.list_studies()
        except ApiError as exc:
            return {"error": str(exc), "status": exc.status, "detail": str(exc.detail)}
        # The list has no accuracies; /compare has each variant's best (only studies with results).
        with_results = [s for s in studies[:MAX_BEST_LOOKUPS] if (s.get("progress") or {}).get("succeeded")]
        answers = await asyncio.gather(
            *(client.compare(s["id"]) for s in with_results), return_exceptions=True
        )
        for s, answer in zip(with_results, answers, strict=True):
            if isinstance(answer, dict):
                s["best"] = {row["name"]: row.get("best_top1") for row in answer.get("variants", [])}
        return {"studies": studies}

    @app.callback(
        Output("studies-table", "children"),
        Input("studies-data", "data"),
        Input("studies-filter", "value"),
        Input("studies-status", "value"),
        Input("studies-sort", "value"),
    )
    def show_studies(data, text, statuses, sort):
        if not data:
            return html.P("Loading…", className="muted")
        if "error" in data:
            refused = read_refusal(data.get("status"), data.get("detail"))
            return refused or html.P(f"Could not load studies: {data['error']}", className="error")
        return render_table(data["studies"], text, statuses, sort)
