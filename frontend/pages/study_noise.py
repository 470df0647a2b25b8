"""Seed noise on the study page (issue 16 item 2): the landscape's views besides the mean (spread,
seeds per point, ROI membership frequency), the best point's confidence interval, and next to the
ROI table the noise of each variant, its source, and a warning where an ROI level is below twice
the noise. Every number is the analysis record's (backend/analysis/noise.py, records.py)."""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from frontend.figures import record as rec
from frontend.figures.common import finite
from frontend.figures.noise import VIEW_WORDS, VIEWS, point_map_figure
from frontend.pages.components import data_table, figure_card, fmt

POINT_VIEWS = VIEWS[1:]  # the views drawn by point_map_figure; "mean" is the landscape itself
FIT_WORDS = (
    "an estimate from the residuals of a local quadratic fit around the best point (one seed per point)"
)


def view_control() -> html.Div:
    """The landscape view toggle (mean | spread | seeds | ROI membership) and the ROI level."""
    return html.Div(
        [
            html.Label("show per point", htmlFor="landscape-view"),
            dcc.RadioItems(
                id="landscape-view",
                options=[{"label": f" {VIEW_WORDS[v]}", "value": v} for v in VIEWS],
                value="mean",
                inline=True,
                inputStyle={"marginLeft": "8px"},
            ),
            html.Label("ROI level (pp)", htmlFor="landscape-level"),
            dcc.RadioItems(id="landscape-level", options=[], inline=True, inputStyle={"marginLeft": "8px"}),
        ],
        className="controls panel",
        id="landscape-view-controls",
    )


def section() -> html.Div:
    """The noise panel next to the ROI table (a list entry of the study page's layout)."""
    return html.Div(id="study-noise", className="panel")


# --- readers -----------------------------------------------------------------------------------
def has_seeds(analysis: dict) -> bool:
    """Some point of some variant has two or more seeds (the record then has spread and membership)."""
    return any(
        (p["seeds"] or 0) >= 2 for v in rec.variant_names(analysis) for p in rec.landscape_points(analysis, v)
    )


def view_options(analysis: dict) -> list[dict]:
    """The toggle's options; spread and membership are off with one seed per point (nothing to show)."""
    seeds = has_seeds(analysis)
    return [
        {"label": f" {VIEW_WORDS[v]}", "value": v, "disabled": v in ("spread", "membership") and not seeds}
        for v in VIEWS
    ]


def level_options(analysis: dict) -> list[dict]:
    # the record's level keys as values: a number would come back from the browser as 1, not 1.0
    return [{"label": f" {level!r}", "value": rec.level_key(level)} for level in rec.roi_levels(analysis)]


def chosen_level(analysis: dict, value: object) -> float | None:
    """The ROI level the radio names (a level key), else the first level (a forged value too)."""
    levels = rec.roi_levels(analysis)
    by_key = {rec.level_key(level): level for level in levels}
    if isinstance(value, str) and value in by_key:
        return by_key[value]
    return levels[0] if levels else None


def best_ci_text(analysis: dict, variant: str) -> str:
    """'best 91.79 ± 0.21 (3 seeds), 95 % CI 91.60 – 91.95 (bootstrap over seeds)', or why no CI."""
    best = rec.best_point(analysis, variant)
    if best is None:
        return f"{variant}: no best point yet"
    text = f"{variant}: best {rec.seed_summary(best)}"
    if finite(best["ci_low"]) and finite(best["ci_high"]):
        level = rec.result(analysis, variant)["best"].get("ci_level") or 0.95
        return (
            text + f", {level:.0%} CI {fmt(best['ci_low'])} – {fmt(best['ci_high'])} (bootstrap over seeds)"
        )
    return text + ", no confidence interval (one seed at the best point)"


def noise_rows(analysis: dict) -> list[dict]:
    """One table row per variant: noise std, its source, 2 x std, and per ROI level whether the
    level is within noise (below 2 x std)."""
    rows = []
    for variant in rec.variant_names(analysis):
        noise = rec.noise(analysis, variant)
        best = rec.best_point(analysis, variant) or {}
        row = {
            "variant": variant,
            "noise_std": noise["std"] if noise else None,
            "source": ("fit (estimate)" if noise["estimate"] else noise["source"]) if noise else None,
            "within_noise_below": noise["within_noise_below"] if noise else None,
            "best": best.get("value"),
            "best_ci_low": best.get("ci_low"),
            "best_ci_high": best.get("ci_high"),
        }
        for level in rec.roi_levels(analysis):
            verdict = (noise or {}).get("roi_within_noise", {}).get(rec.level_key(level))
            row[f"within_{rec.level_key(level)}"] = "—" if verdict is None else ("yes" if verdict else "no")
        row["note"] = (noise or {}).get("reason") or ""
        rows.append(row)
    return rows


def noise_columns(analysis: dict) -> list[dict]:
    number = {"type": "numeric", "format": {"specifier": ".3f"}}
    columns = [
        {"name": "variant", "id": "variant"},
        {"name": "noise std (pp)", "id": "noise_std", **number},
        {"name": "noise source", "id": "source"},
        {"name": "2 x noise (pp)", "id": "within_noise_below", **number},
    ]
    columns += [
        {"name": f"{level!r}-ROI within noise", "id": f"within_{rec.level_key(level)}"}
        for level in rec.roi_levels(analysis)
    ]
    columns += [
        {"name": "best (%)", "id": "best", **number},
        {"name": "best CI low", "id": "best_ci_low", **number},
        {"name": "best CI high", "id": "best_ci_high", **number},
        {"name": "note", "id": "note"},
    ]
    return columns


def within_noise_warnings(analysis: dict) -> list[str]:
    """One sentence per (variant, level) whose ROI level is below twice the noise."""
    sentences = []
    for variant in rec.variant_names(analysis):
        noise = rec.noise(analysis, variant)
        if not noise:
            continue
        for level in rec.roi_levels(analysis):
            if noise["roi_within_noise"].get(rec.level_key(level)) is True:
                estimate = " (the noise is an estimate: one seed)" if noise["estimate"] else ""
                sentences.append(
                    f"{variant}: the {level!r}-ROI is within noise: its level ({level!r} pp) is below twice the "
                    f"noise (2 × {fmt(noise['std'], 3)} = {fmt(noise['within_noise_below'], 3)} pp){estimate}, so "
                    "its points cannot be told apart from the best by these results."
                )
    return sentences


def estimate_notes(analysis: dict) -> list[str]:
    """Variants whose noise is estimated from a fit rather than measured over seeds, and those
    with no estimate at all (the record's reason: too few points for the fit)."""
    notes = []
    for variant in rec.variant_names(analysis):
        noise = rec.noise(analysis, variant)
        if not noise or not noise["estimate"]:
            continue
        if finite(noise["std"]):
            notes.append(
                f"{variant}: the noise ({fmt(noise['std'], 3)} pp) is {FIT_WORDS}, from {noise['n_points_used']} points."
            )
        else:
            notes.append(
                f"{variant}: no noise estimate yet ({noise['reason'] or 'too few points for the fit'})."
            )
    return notes


def resampling_notes(analysis: dict) -> list[str]:
    """What each variant's shift-test intervals resampled."""
    notes = []
    for variant in rec.variant_names(analysis)[1:]:
        kinds = {kind for kind in rec.shift_resampling(analysis, variant).values() if kind}
        if "seeds" in kinds:
            notes.append(
                f"{variant}: the shift test resampled seeds per point and recomputed the ROI each time."
            )
        elif kinds:
            notes.append(f"{variant}: the shift test resampled the ROI's points (one seed per point).")
    return notes


def view_note(analysis: dict, view: str, level_value: object) -> str:
    level = chosen_level(analysis, level_value)
    if view == "spread":
        return "Colour: the standard deviation of each point's seeds (pp; n - 1). Hover: mean ± std (seeds)."
    if view == "count":
        return "Colour: how many seeds each point has a result for. Hover: mean ± std (seeds)."
    return (
        f"Colour: the fraction of seed resamples (bootstrap over each point's seeds, the ROI recomputed each "
        f"time) in which the point is in the {level!r}-ROI. Dashed: the {level!r}-ROI ellipse of the means."
    )


def view_cards(analysis: dict, view: str, level_value: object) -> list:
    level = chosen_level(analysis, level_value)
    return [
        figure_card(
            f"noise-{view}-{variant}",
            f"{variant}: {VIEW_WORDS[view]}" + (f" ({level!r}-ROI)" if view == "membership" else ""),
            point_map_figure(analysis, variant, view, level=level),
            note=best_ci_text(analysis, variant),
        )
        for variant in rec.variant_names(analysis)
    ]


def noise_panel(analysis: dict) -> list:
    if "unavailable" in analysis or not rec.variant_names(analysis):
        return [html.P("No noise estimate yet: it needs finished runs.", className="muted")]
    warnings = within_noise_warnings(analysis)
    items = [html.H3("Seed noise and the ROI levels")]
    items += [html.P(["⚠ ", text], className="within-noise-warning") for text in warnings]
    items += [html.P(text, className="noise-estimate") for text in estimate_notes(analysis)]
    items.append(data_table("noise", noise_rows(analysis), noise_columns(analysis)))
    items += [html.P(text, className="note") for text in resampling_notes(analysis)]
    items.append(
        html.P(
            "An ROI level below twice the noise is within noise. With two or more seeds the noise is the "
            "median over grid points of the std over their seeds, and the best point's interval a bootstrap "
            "over the seeds (docs/spec.md section 7); with one seed it is " + FIT_WORDS + ".",
            className="note",
        )
    )
    return items


def register(app: Dash) -> None:
    @app.callback(
        Output("landscape-view", "options"),
        Output("landscape-level", "options"),
        Output("landscape-level", "value"),
        Output("study-noise", "children"),
        Input("study-data", "data"),
        State("landscape-level", "value"),
    )
    def show_noise(data, level):
        if not data or "error" in data:
            raise PreventUpdate
        analysis = data["analysis"]
        chosen = chosen_level(analysis, level)
        key = rec.level_key(chosen) if chosen is not None else None
        return view_options(analysis), level_options(analysis), key, noise_panel(analysis)
