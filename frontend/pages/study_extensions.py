"""The study's grid extensions on its page (issue 16 item 1): where the auto-extension stands and
every extension and verdict, oldest first (when, which sides, why, stopped because ...).

Read out of StudyOut's `auto_extension` and `extensions` (docs/api.md, "Auto-extension"); a study
without either (an API without them, or a study never extended) shows nothing.
"""

from __future__ import annotations

from dash import Dash, Input, Output, html
from dash.exceptions import PreventUpdate

from frontend.pages.components import data_table

SIDE_WORDS = {
    "lr_low": "lower lr",
    "lr_high": "higher lr",
    "wd_low": "lower wd",
    "wd_high": "higher wd",
}
KIND_WORDS = {"auto": "automatic", "manual": "by hand", "stop": "stopped"}
STATE_WORDS = {
    "watching": "watching the grid's edges while runs finish",
    "deciding": "deciding (no run active): the next pass extends the grid or stops",
    "stopped": "stopped",
}


def section() -> html.Div:
    """The panel's layout (a list entry of the study page's layout)."""
    return html.Div(id="study-extensions")


def sides_text(sides: list[str] | None) -> str:
    return ", ".join(SIDE_WORDS.get(side, side) for side in sides or []) or "—"


def _by_variant(mapping: dict | None) -> str:
    """{variant: [sides]} -> 'base: higher lr, lower wd; u50: higher lr'."""
    return "; ".join(f"{variant}: {sides_text(sides)}" for variant, sides in (mapping or {}).items())


def extension_rows(study: dict) -> list[dict]:
    """One row per extension record: when, kind, sides added, points and runs, the ranges after
    it, why, which variant wanted which side, what was left out and why it stopped."""
    rows = []
    for record in study.get("extensions") or []:
        left_out = "; ".join(
            f"{SIDE_WORDS.get(s, s)}: {why}" for s, why in (record.get("left_out") or {}).items()
        )
        rows.append(
            {
                "at": str(record["at"]).replace("T", " ")[:19],
                "kind": KIND_WORDS.get(record["kind"], record["kind"]),
                "sides": sides_text(record.get("sides")) if record["kind"] != "stop" else "—",
                "added_points": record.get("added_points"),
                "added_runs": record.get("added_runs"),
                "lr_range": "[{}, {}]".format(*record["lr_range"]),
                "wd_range": "[{}, {}]".format(*record["wd_range"]),
                "why": record["why"],
                "triggered_by": _by_variant(record.get("triggered_by") or record.get("wanted")),
                "left_out": left_out,
                "stopped": record.get("stopped") or "",
            }
        )
    return rows


COLUMNS = [
    {"name": "when (UTC)", "id": "at"},
    {"name": "extension", "id": "kind"},
    {"name": "sides added", "id": "sides"},
    {"name": "grid points added", "id": "added_points"},
    {"name": "runs added", "id": "added_runs"},
    {"name": "lr index range", "id": "lr_range"},
    {"name": "wd index range", "id": "wd_range"},
    {"name": "why", "id": "why"},
    {"name": "sides wanted, per variant", "id": "triggered_by"},
    {"name": "left out (limit)", "id": "left_out"},
    {"name": "stopped because", "id": "stopped"},
]


def auto_extension_text(study: dict) -> str:
    """Where the auto-extension stands, in a sentence ('' when the study has none)."""
    auto = study.get("auto_extension")
    if not auto:
        return ""
    state = STATE_WORDS.get(auto["state"], auto["state"])
    if auto["state"] == "stopped" and auto.get("stopped"):
        state = f"stopped: {auto['stopped']}" + (f" ({auto['why']})" if auto.get("why") else "")
    return (
        f"Auto-extension at the {auto['level']!r}-ROI: {state}. {auto['extensions']} automatic "
        f"extension{'s' if auto['extensions'] != 1 else ''}, {auto['points_used']} of {auto['max_points']} "
        f"grid points per variant used ({auto['points_left']} left)."
    )


def extensions_view(study: dict) -> list:
    rows = extension_rows(study)
    status = auto_extension_text(study)
    if not rows and not status:
        return []
    items: list = [html.H3("Extensions of this study's grid")]
    if status:
        items.append(html.P(status, id="auto-extension-state"))
    if rows:
        items.append(data_table("extensions", rows, COLUMNS))
    else:
        items.append(html.P("No extension yet.", className="muted"))
    return [html.Div(items, className="panel")]


def register(app: Dash) -> None:
    @app.callback(Output("study-extensions", "children"), Input("study-data", "data"))
    def show_extensions(data):
        if not data or "error" in data:
            raise PreventUpdate
        return extensions_view(data.get("study") or {})
