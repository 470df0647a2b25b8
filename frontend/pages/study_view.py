"""How the study page's landscapes are viewed: the metric, the colour scale (one for every
variant, or each its own) and the floor, kept in the page's URL (`?metric=top5&scale=variant&floor=91.5`:
a link shows what its sender saw, and a reload keeps it), said in words, and drawn as one card per
variant on the study's shared axes."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs, urlencode

from frontend.figures import landscape_figure
from frontend.figures import record as rec
from frontend.pages import study_data as sd
from frontend.pages.components import figure_card, fmt, fmt_acc, fmt_hyper
from frontend.pages.study_downloads import CSV_TYPE as CSV

METRICS = ("top1", "top5")
METRIC_LABELS = {"top1": " top-1", "top5": " top-5"}
SCALES = {"shared": " one scale for every variant", "variant": " each variant its own scale"}
FLOOR_MIN, FLOOR_MAX = 0.0, 100.0
SPEC_URL = "/docs/spec.md"


# --- the view in the URL -----------------------------------------------------------------------------
def view_from_query(search: str | None) -> dict[str, Any]:
    """metric, scale and floor from the page's query string, each checked (the URL is anyone's):
    an unknown word or a floor that is not a finite accuracy is ignored."""
    query = parse_qs((search or "").lstrip("?"), max_num_fields=10)
    metric = (query.get("metric") or ["top1"])[0]
    scale = (query.get("scale") or ["shared"])[0]
    floor = None
    try:
        value = float((query.get("floor") or [""])[0][:20])
        floor = value if math.isfinite(value) and FLOOR_MIN <= value <= FLOOR_MAX else None
    except ValueError:
        pass
    return {
        "metric": metric if metric in METRICS else "top1",
        "scale": scale if scale in SCALES else "shared",
        "floor": floor,
    }


def query_string(metric: Any, scale: Any, floor: Any, default_floor: float | None = None) -> str:
    """The query string of a view (what `view_from_query` reads back), holding only what differs
    from the defaults (top-1, one shared scale, the default floor): "" for the default view, so
    opening a study adds no history entry of its own."""
    params = {}
    if metric in METRICS and metric != "top1":
        params["metric"] = metric
    if scale in SCALES and scale != "shared":
        params["scale"] = scale
    shown_floor = isinstance(floor, int | float) and math.isfinite(floor) and scale != "variant"
    if shown_floor and (default_floor is None or round(float(floor), 1) != round(float(default_floor), 1)):
        params["floor"] = f"{floor:.1f}"
    return "?" + urlencode(params) if params else ""


# --- landscapes -------------------------------------------------------------------------------------
def landscape_cards(data: dict, floor: float | None, scale: str = "shared") -> list:
    """One card per variant, every one on the study's axes; the shared colour scale (with `floor`)
    or, with scale "variant", each on its own."""
    analysis = data.get("analysis") or {}
    points = sd.grid_points(data)
    ranges = rec.study_axis_ranges(analysis, points)
    names = rec.variant_names(analysis) or [str(v) for v in (data.get("study") or {}).get("variants") or []]
    cards = []
    for variant in names:
        zrange = rec.variant_colour_range(analysis, variant) if scale == "variant" else None
        fig = landscape_figure(
            analysis, variant, floor=floor, grid_points=points.get(variant), axis_ranges=ranges, zrange=zrange
        )
        best = rec.best_point(analysis, variant)
        notes = []
        if best:
            notes.append(
                f"best {fmt_acc(best['value'])} % at lr {fmt_hyper(best['lr'])}, wd {fmt_hyper(best['wd'])}"
            )
        if zrange is not None:
            notes.append(f"colour scale of this variant: {fmt_acc(zrange[0])} – {fmt_acc(zrange[1])} %")
        notes += rec.degenerate_notes(analysis, variant)
        cards.append(
            figure_card(f"landscape-{variant}", variant, fig, note=" · ".join(notes) or None, csv=CSV)
        )
    return cards


LEGEND = (
    "Solid red: 0.5-ROI ellipse, dashed black: 1.0-ROI ellipse (k = 2 standard deviations, ≥ 5 points; "
    "width 0: a marked segment). Star: best point; ✕: diverged; grey square: no result yet (waiting "
    "or running); crossed grey square: failed or cancelled, no result (retry it from the runs table). "
    "Click a point to open its run."
)


def scale_note(analysis: dict, floor: float | None, scale: str) -> str:
    """Which colour scale is in use, in words, and the legend."""
    if scale == "variant":
        return (
            "Colour scale in use: each variant its own, from its lowest to its highest grid-point mean "
            "(shown under each map; colours do not compare across maps). " + LEGEND
        )
    zmin, zmax = rec.colour_range(analysis, floor)
    colour = analysis.get("colour_scale") or {}
    return (
        f"Colour scale in use: one for every variant, {fmt_acc(zmin)} – {fmt_acc(zmax)} % (default floor = "
        f"{fmt(colour.get('percentile', 85), 0)}th percentile of all observed accuracies; points below the "
        "floor take the lowest colour; if a map is one colour, try each variant its own scale). " + LEGEND
    )


def metric_options(analysis: dict) -> list[dict]:
    """The metric choices, one the results do not hold disabled (an import without top-5)."""
    available = analysis.get("metrics_available")
    return [
        {
            "label": label + ("" if available is None or key in available else " (not in these results)"),
            "value": key,
            "disabled": available is not None and key not in available,
        }
        for key, label in METRIC_LABELS.items()
    ]
