"""The study page's compression experiments (issue 17): each sensitivity scan drawn (one curve per
global scan; per-layer curves for layer scans, the view that tells which layers are fragile), the
scans' CSV export, and each iteratively pruned variant's accuracy per round (after pruning and
after retraining). Read out of GET /studies/{id}/variants (VariantOut.scan / .iterations)."""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, html
from dash.exceptions import PreventUpdate

from frontend.api_client import API_PREFIX, parse_id
from frontend.figures import sensitivity_figure
from frontend.figures.compression import iteration_figure
from frontend.pages.components import data_table, figure_card, fmt

METRICS = ("top1", "top5")


def section() -> html.Div:
    """The section's layout (a list entry of the study page's layout)."""
    return html.Div(id="study-compression")


# --- readers -----------------------------------------------------------------------------------
def _variants(data: dict) -> list[dict]:
    return (data.get("extras") or {}).get("variants") or []


def _metric(data: dict) -> str:
    metric = (data.get("analysis") or {}).get("metric")
    return metric if metric in METRICS else "top1"


def scan_charts(data: dict) -> list[dict]:
    """One chart per layer scan (a curve per layer) and one for all global scans (a curve per
    scan), each {'name', 'title', 'curves': [{'label', 'fractions', 'accuracy'}], 'scan'}."""
    metric = _metric(data)
    global_curves: list[dict] = []
    charts: list[dict] = []
    for variant in _variants(data):
        for scan in variant.get("scan") or []:
            by_layer: dict[Any, list[tuple[float, float]]] = {}
            for row in scan["rows"]:
                by_layer.setdefault(row["layer"], []).append((row["fraction"], row[metric]))
            curves = []
            for layer, pairs in by_layer.items():
                pairs.sort(key=lambda pair: pair[0])
                label = layer if scan["scope"] == "layer" else f"{variant['name']} · {scan['kind']}"
                curves.append(
                    {
                        "label": str(label),
                        "fractions": [p[0] for p in pairs],
                        "accuracy": [p[1] for p in pairs],
                    }
                )
            if scan["scope"] == "layer":
                charts.append(
                    {
                        "name": f"scan-{variant['name']}-{scan['index']}",
                        "title": f"{variant['name']}: {scan['kind']} pruning of one layer at a time (no retraining)",
                        "curves": curves,
                        "scan": scan,
                        "variant": variant["name"],
                    }
                )
            else:
                global_curves += curves
    if global_curves:
        charts.insert(
            0,
            {
                "name": "scan-global",
                "title": "Whole-model pruning without retraining (one curve per scan)",
                "curves": global_curves,
                "scan": None,
                "variant": None,
            },
        )
    return charts


def fragile_layers(curves: list[dict]) -> list[tuple[str, float, float]]:
    """(layer, fraction, accuracy lost in pp) at each layer's largest fraction, the most fragile
    first: the loss is against the layer's fraction-0 point (the unpruned model)."""
    losses = []
    for curve in curves:
        pairs = dict(zip(curve["fractions"], curve["accuracy"], strict=True))
        if 0.0 not in pairs or len(pairs) < 2:
            continue
        largest = max(pairs)
        if pairs[largest] is None or pairs[0.0] is None:
            continue
        losses.append((curve["label"], largest, pairs[0.0] - pairs[largest]))
    return sorted(losses, key=lambda item: -item[2])


def fragile_text(curves: list[dict]) -> str:
    losses = fragile_layers(curves)
    if not losses:
        return ""
    parts = [f"{layer} −{fmt(loss, 1)} pp at {fraction:.0%}" for layer, fraction, loss in losses]
    return "Most fragile first (accuracy lost when only that layer is pruned): " + ", ".join(parts) + "."


def iteration_steps(variant: dict, metric: str = "top1") -> list[dict]:
    """A variant's pruning rounds (VariantOut.iterations) as the figure and table read them."""
    steps = []
    for step in variant.get("iterations") or []:
        reached = (
            f"FLOPs ratio {fmt(step['flops_ratio'], 3)}"
            if step["flops_ratio"] is not None
            else f"sparsity {fmt(step['sparsity'], 3)}"
        )
        steps.append(
            {
                "step": step["step"],
                "target": step["target"],
                "reached": reached,
                "flops_ratio": step["flops_ratio"],
                "sparsity": step["sparsity"],
                "params_nonzero": step["params_nonzero"],
                "after_pruning": step[f"pruned_{metric}"],
                "after_retraining": step[metric],
                "epochs": step["epochs"],
                "status": step["status"],
            }
        )
    return steps


def iterative_variants(data: dict) -> list[dict]:
    """Variants with recorded pruning rounds, and those whose spec asks for rounds still to come."""
    return [
        v
        for v in _variants(data)
        if v.get("iterations") or ((v.get("spec") or {}).get("iterations") or 1) > 1
    ]


def asks_for_scans(data: dict) -> bool:
    return bool(((data.get("study") or {}).get("spec") or {}).get("scans"))


def scans_csv_href(data: dict) -> str | None:
    study_id = parse_id((data.get("study") or {}).get("id"))
    return f"{API_PREFIX}/studies/{study_id}/scans.csv" if study_id is not None else None


STEP_COLUMNS = [
    {"name": "round", "id": "step"},
    {"name": "target", "id": "target", "type": "numeric", "format": {"specifier": ".3f"}},
    {"name": "reached", "id": "reached"},
    {"name": "non-zero params", "id": "params_nonzero", "type": "numeric", "format": {"specifier": ","}},
    {"name": "after pruning (%)", "id": "after_pruning", "type": "numeric", "format": {"specifier": ".2f"}},
    {
        "name": "after retraining (%)",
        "id": "after_retraining",
        "type": "numeric",
        "format": {"specifier": ".2f"},
    },
    {"name": "epochs", "id": "epochs"},
    {"name": "status", "id": "status"},
]


# --- the section's view ------------------------------------------------------------------------
def scans_view(data: dict) -> list:
    charts = scan_charts(data)
    if not charts and not asks_for_scans(data):
        return []
    metric = _metric(data)
    items: list = [html.H2("Sensitivity scans")]
    href = scans_csv_href(data)
    if href and asks_for_scans(data):
        items.append(
            html.P(
                [
                    html.A(
                        "All scans as CSV", href=href, id="scans-csv", download="scans.csv", target="_blank"
                    ),
                    " (one row per scan row: variant, scan, kind, scope, layer, fraction, top-1, top-5, "
                    "sparsity, FLOPs ratio)",
                ],
                className="note",
            )
        )
    if not charts:
        items.append(
            html.P("Waiting for the scan runs: the curves appear when they finish.", className="wait-note")
        )
        return items
    cards = []
    for chart in charts:
        note = fragile_text(chart["curves"]) if chart["scan"] is not None else None
        figure = sensitivity_figure(chart["curves"], metric=metric)
        figure.update_layout(showlegend=True)  # a single curve is named too: which scan it is
        cards.append(figure_card(chart["name"], chart["title"], figure, note=note))
    items.append(html.Div(cards, className="grid-2", id="scan-cards"))
    return items


def iterations_view(data: dict) -> list:
    variants = iterative_variants(data)
    if not variants:
        return []
    metric = _metric(data)
    items: list = [html.H2("Iterative pruning, round by round")]
    cards = []
    for variant in variants:
        steps = iteration_steps(variant, metric)
        rounds = (variant.get("spec") or {}).get("iterations")
        title = f"{variant['name']}: {rounds or len(steps)} rounds of pruning and retraining"
        if not steps:
            cards.append(html.P(f"{variant['name']}: waiting for its prune run.", className="wait-note"))
            continue
        cards.append(
            html.Div(
                [
                    figure_card(
                        f"iterations-{variant['name']}",
                        title,
                        iteration_figure(variant["name"], steps, metric=metric),
                    ),
                    data_table(f"iterations-{variant['name']}", steps, STEP_COLUMNS),
                ],
                className="iteration-card",
            )
        )
    items.append(html.Div(cards, className="grid-2", id="iteration-cards"))
    return items


def register(app: Dash) -> None:
    @app.callback(Output("study-compression", "children"), Input("study-data", "data"))
    def show_compression(data):
        if not data or "error" in data:
            raise PreventUpdate
        return scans_view(data) + iterations_view(data)
