"""`/compare?studies=1,2`: studies side by side (issue 16 item 3).

The tables (best point, ROI sizes, ellipse length / width / angle, centre shift with its test,
risk) have one row per (study, variant), read out of GET /api/v1/compare?studies=...
(`StudiesCompare`, docs/api.md); the chosen studies' landscapes stand next to each other, each on
its own colour scale or on the comparison's shared one. The ids in the address are checked to be
2..8 distinct whole numbers the API could hold before any request is made.

The studies list's "compare selected" (checkboxes and a link) is built here too
(`pick_cell`, `selected_link`) and registered with the page.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any
from urllib.parse import parse_qs

from dash import ALL, Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from frontend.api_client import ID_MAX, ApiError, parse_id
from frontend.figures import landscape_figure
from frontend.pages.components import data_table, figure_card, fmt, fmt_p
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal

MIN_STUDIES, MAX_STUDIES = 2, 8
MAX_QUERY_CHARS = 1000  # 8 ids of 10 digits and their commas fit many times over
METRICS = ("top1", "top5")
SCALES = ("own", "shared")


def layout() -> html.Div:
    return html.Div(
        [
            dcc.Store(id="compare-ready", data=True),  # exists only on this page: its callbacks start here
            dcc.Store(id="compare-data"),
            html.H1("Studies side by side"),
            html.Div(
                [
                    html.Label("metric"),
                    dcc.RadioItems(
                        id="compare-metric",
                        options=[{"label": " top-1", "value": "top1"}, {"label": " top-5", "value": "top5"}],
                        value="top1",
                        inline=True,
                        inputStyle={"marginLeft": "8px"},
                    ),
                    html.Label("colour scale"),
                    dcc.RadioItems(
                        id="compare-scale",
                        options=[
                            {"label": " each study its own", "value": "own"},
                            {"label": " one shared by all", "value": "shared"},
                        ],
                        value="own",
                        inline=True,
                        inputStyle={"marginLeft": "8px"},
                    ),
                ],
                className="controls panel",
            ),
            html.Div(id="compare-message"),
            html.Div(id="compare-tables"),
            html.H2("Landscapes"),
            html.P(id="compare-scale-note", className="note"),
            html.Div(id="compare-landscapes"),
        ]
    )


# --- the address -------------------------------------------------------------------------------
def parse_studies(search: Any) -> tuple[list[int], str | None]:
    """(ids, None) from the query string `?studies=1,2`, or ([], why not) naming the field."""
    if not isinstance(search, str) or len(search) > MAX_QUERY_CHARS:
        return [], "studies: the address is not a list of study ids"
    values = parse_qs(search.lstrip("?"), keep_blank_values=True).get("studies")
    if not values:
        return [], "studies: name the studies to compare, e.g. /compare?studies=1,2"
    parts = [part.strip() for value in values for part in value.split(",")]
    ids = []
    for part in parts:
        number = parse_id(part)
        if number is None:
            return [], f"studies: {part[:20]!r} is not a study id (a whole number from 1 to {ID_MAX})"
        if number not in ids:
            ids.append(number)
    if not MIN_STUDIES <= len(ids) <= MAX_STUDIES:
        return [], f"studies: choose {MIN_STUDIES} to {MAX_STUDIES} different studies (got {len(ids)})"
    return ids, None


def compare_href(ids: list[int]) -> str:
    return "/compare?studies=" + ",".join(str(i) for i in ids)


# --- readers of StudiesCompare -------------------------------------------------------------------
def _levels(compare: dict) -> list[str]:
    return [repr(float(level)) for level in compare.get("roi_levels") or []]


def best_rows(compare: dict) -> list[dict]:
    rows = []
    for row in compare.get("rows") or []:
        best = row.get("best") or {}
        noise = row.get("noise") or {}
        rows.append(
            {
                "study": row["study_name"],
                "study_id": row["study_id"],
                "variant": row["variant"],
                "kind": row["kind"],
                "n_runs": row["n_runs"],
                "best": best.get("value"),
                "std": best.get("std"),
                "seeds": best.get("n"),
                "ci_low": best.get("ci_low"),
                "ci_high": best.get("ci_high"),
                "lr": best.get("lr"),
                "wd": best.get("wd"),
                "noise": noise.get("std"),
                "noise_source": ("fit (estimate)" if noise.get("estimate") else noise.get("source"))
                if noise
                else None,
            }
        )
    return rows


def roi_rows(compare: dict) -> list[dict]:
    """ROI sizes and ellipse length / width / angle per level; a level without an ellipse says why."""
    rows = []
    for row in compare.get("rows") or []:
        out = {"study": row["study_name"], "study_id": row["study_id"], "variant": row["variant"]}
        for level in _levels(compare):
            ellipse = (row.get("ellipse") or {}).get(level) or {}
            out[f"roi_{level}"] = (row.get("roi") or {}).get(level)
            out[f"length_{level}"] = ellipse.get("length")
            out[f"width_{level}"] = ellipse.get("width")
            out[f"angle_{level}"] = ellipse.get("angle_deg")
            out[f"why_{level}"] = (
                "" if ellipse else ((row.get("ellipse_reason") or {}).get(level) or "no ellipse")
            )
        rows.append(out)
    return rows


def shift_text(test: dict | None, is_base: bool) -> str:
    if is_base:
        return "(the reference)"
    if not test:
        return "not tested"
    if not test.get("tested"):
        return f"not tested ({test.get('reason') or 'too few points'})"
    delta = test.get("delta") or [None, None]
    p_value = test.get("p_value")
    p = "—" if p_value is None else ("p < 0.001" if p_value < 1e-3 else f"p = {fmt_p(p_value)}")
    return f"{test.get('verdict')} (Δ log10 wd {fmt(delta[0], 3)}, Δ log10 lr {fmt(delta[1], 3)}; {p})"


def shift_rows(compare: dict) -> list[dict]:
    rows = []
    for row in compare.get("rows") or []:
        out = {"study": row["study_name"], "study_id": row["study_id"], "variant": row["variant"]}
        for level in _levels(compare):
            out[f"shift_{level}"] = shift_text((row.get("shift") or {}).get(level), row["is_base"])
        rows.append(out)
    return rows


def risk_rows(compare: dict) -> list[dict]:
    rows = []
    for row in compare.get("rows") or []:
        risk = row.get("risk") or {}
        rel_mean, rel_std = risk.get("rel_mean"), risk.get("rel_std")
        rows.append(
            {
                "study": row["study_name"],
                "study_id": row["study_id"],
                "variant": row["variant"],
                "risk_mean": risk.get("mean"),
                "risk_std": risk.get("std"),
                "risk_rel_mean": rel_mean * 100 if rel_mean is not None else None,
                "risk_rel_std": rel_std * 100 if rel_std is not None else None,
                "risk_n": risk.get("n"),
                "risk_missing": risk.get("missing"),
                "note": risk.get("reason") or "",
            }
        )
    return rows


NUM = {"type": "numeric", "format": {"specifier": ".3~f"}}
KEYS = [
    {"name": "study", "id": "study"},
    {"name": "id", "id": "study_id"},
    {"name": "variant", "id": "variant"},
]


def best_columns() -> list[dict]:
    return KEYS + [
        {"name": "kind", "id": "kind"},
        {"name": "runs", "id": "n_runs"},
        {"name": "best (%)", "id": "best", **NUM},
        {"name": "± std", "id": "std", **NUM},
        {"name": "seeds", "id": "seeds"},
        {"name": "CI low", "id": "ci_low", **NUM},
        {"name": "CI high", "id": "ci_high", **NUM},
        {"name": "at lr", "id": "lr", "type": "numeric", "format": {"specifier": ".3~g"}},
        {"name": "at wd", "id": "wd", "type": "numeric", "format": {"specifier": ".3~g"}},
        {"name": "noise std (pp)", "id": "noise", **NUM},
        {"name": "noise source", "id": "noise_source"},
    ]


def roi_columns(compare: dict) -> list[dict]:
    columns = list(KEYS)
    for level in _levels(compare):
        columns += [
            {"name": f"{level}-ROI points", "id": f"roi_{level}"},
            {"name": f"{level} length (log10)", "id": f"length_{level}", **NUM},
            {"name": f"{level} width (log10)", "id": f"width_{level}", **NUM},
            {"name": f"{level} angle (deg)", "id": f"angle_{level}", **NUM},
            {"name": f"{level} note", "id": f"why_{level}"},
        ]
    return columns


def shift_columns(compare: dict) -> list[dict]:
    return KEYS + [
        {"name": f"{level}-ROI centre shift vs the base", "id": f"shift_{level}"}
        for level in _levels(compare)
    ]


def risk_columns() -> list[dict]:
    return KEYS + [
        {"name": "mean d (pp)", "id": "risk_mean", **NUM},
        {"name": "std d (pp)", "id": "risk_std", **NUM},
        {"name": "mean d/f* (%)", "id": "risk_rel_mean", **NUM},
        {"name": "std d/f* (%)", "id": "risk_rel_std", **NUM},
        {"name": "points", "id": "risk_n"},
        {"name": "no result", "id": "risk_missing"},
        {"name": "note", "id": "note"},
    ]


def tables(compare: dict) -> list:
    return [
        html.H2("Best point"),
        data_table("compare-best", best_rows(compare), best_columns()),
        html.H2("ROI sizes and ellipses"),
        data_table("compare-roi", roi_rows(compare), roi_columns(compare)),
        html.H2("Did the optimum move? (centre shift vs each study's base)"),
        data_table("compare-shift", shift_rows(compare), shift_columns(compare)),
        html.H2("Performance risk of not retuning"),
        data_table("compare-risk", risk_rows(compare), risk_columns()),
    ]


def on_scale(analysis: dict, scale: dict | None) -> dict:
    """The analysis drawn on `scale` (the shared colour scale) instead of its own."""
    if not scale:
        return analysis
    drawn = copy.copy(analysis)
    drawn["colour_scale"] = scale
    return drawn


def landscapes(data: dict, scale_choice: str) -> tuple[list, str]:
    compare = data["compare"]
    shared = compare.get("shared_colour_scale") if scale_choice == "shared" else None
    blocks = []
    for entry in compare.get("studies") or []:
        study_id = entry["study_id"]
        heading = html.H3(
            [
                dcc.Link(entry["name"], href=f"/studies/{study_id}"),
                f" (study {study_id}, {entry.get('model') or 'imported'})",
            ]
        )
        analysis = (data.get("analyses") or {}).get(str(study_id))
        if not entry.get("analysed") or not analysis:
            blocks.append(
                html.Div([heading, html.P(entry.get("reason") or "no analysis yet", className="muted")])
            )
            continue
        drawn = on_scale(analysis, shared)
        cards = [
            figure_card(f"cmp-{study_id}-{variant}", variant, landscape_figure(drawn, variant, height=380))
            for variant in entry.get("variants") or []
        ]
        own = entry.get("colour_scale") or {}
        scale_text = (
            f"own colour scale {fmt(own.get('min'))} – {fmt(own.get('max'))} %"
            if shared is None
            else f"shared colour scale {fmt(shared.get('min'))} – {fmt(shared.get('max'))} %"
        )
        blocks.append(
            html.Div(
                [heading, html.P(scale_text, className="note"), html.Div(cards, className="grid-cards")],
                className="panel compare-study",
                id={"type": "compare-study", "study": study_id},
            )
        )
    if shared is not None:
        note = (
            f"One colour scale for every study: {fmt(shared.get('min'))} – {fmt(shared.get('max'))} % "
            "(the colour floor rule over the observations of all the chosen studies)."
        )
    else:
        note = "Each study on its own colour scale (its own floor and top), so colours do not compare across studies."
    return blocks, note


# --- the studies list's "compare selected" -----------------------------------------------------
def pick_cell(study_id: int) -> html.Td:
    """A row's checkbox; it keeps its state while the list re-renders on each poll."""
    return html.Td(
        dcc.Checklist(
            id={"type": "compare-pick", "study": study_id},
            options=[{"label": "", "value": study_id}],
            value=[],
            persistence=True,
            persistence_type="memory",
        ),
        title="compare this study with others",
    )


def selected_link() -> html.Div:
    return html.Div(
        [dcc.Link("Compare selected", id="compare-selected", href="/compare", className="button")],
        id="compare-selected-box",
        style={"display": "none"},
        className="actions",
    )


def picked_ids(values: list) -> list[int]:
    ids: list[int] = []
    for value in values or []:
        for item in value if isinstance(value, list) else []:
            number = parse_id(item)
            if number is not None and number not in ids:
                ids.append(number)
    return ids


# --- callbacks ---------------------------------------------------------------------------------
def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output("compare-selected", "href"),
        Output("compare-selected", "children"),
        Output("compare-selected-box", "style"),
        Input({"type": "compare-pick", "study": ALL}, "value"),
    )
    def show_selected(values):
        ids = picked_ids(values)
        if len(ids) < MIN_STUDIES:
            text = "Compare selected (tick two or more studies)"
            return "/compare", text, {"display": "flex"} if ids else {"display": "none"}
        shown = ids[:MAX_STUDIES]
        return compare_href(shown), f"Compare selected ({len(shown)} studies)", {"display": "flex"}

    @app.callback(
        Output("compare-data", "data"),
        Input("compare-ready", "data"),
        Input("compare-metric", "value"),
        Input(TOKEN_STORE, "data"),
        State("url", "search"),
    )
    async def load_compare(_ready, metric, token, search):
        ids, problem = parse_studies(search)
        if problem:
            return {"error": problem, "status": 422}
        metric = metric if metric in METRICS else "top1"
        client = client_factory(token)
        try:
            compare = await client.compare_studies(ids, metric)
        except ApiError as exc:
            return {"error": _detail_text(exc.detail), "status": exc.status}
        analysed = [entry["study_id"] for entry in compare.get("studies") or [] if entry.get("analysed")]
        answers = await asyncio.gather(
            *(client.get_analysis(i, metric) for i in analysed), return_exceptions=True
        )
        analyses = {str(i): a for i, a in zip(analysed, answers, strict=True) if isinstance(a, dict)}
        return {"compare": compare, "analyses": analyses}

    @app.callback(
        Output("compare-message", "children"),
        Output("compare-tables", "children"),
        Input("compare-data", "data"),
    )
    def show_tables(data):
        if not data:
            raise PreventUpdate
        if "error" in data:
            refused = read_refusal(data.get("status"), data["error"])
            if refused is not None:
                return refused, []
            prefix = "Not found: " if data.get("status") == 404 else "Cannot compare: "
            return html.P(prefix + data["error"], className="error compare-error"), []
        compare = data["compare"]
        names = ", ".join(f"{s['name']} ({s['study_id']})" for s in compare.get("studies") or [])
        return html.P(f"Comparing {names} on {compare.get('metric')}.", className="meta"), tables(compare)

    @app.callback(
        Output("compare-landscapes", "children"),
        Output("compare-scale-note", "children"),
        Input("compare-data", "data"),
        Input("compare-scale", "value"),
    )
    def show_landscapes(data, scale):
        if not data or "error" in data:
            return [], ""
        return landscapes(data, scale if scale in SCALES else "own")


def _detail_text(detail: Any) -> str:
    """The API's error detail in words (a 422 list names the field; a 404 names the study)."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []) if p not in ("query",))
                parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return "; ".join(parts) or str(detail)
    if isinstance(detail, dict):
        return str(detail.get("message") or detail)
    return str(detail)
