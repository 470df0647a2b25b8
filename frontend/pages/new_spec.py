"""The new-study form's pure part: the spec a form's values make (only the fields a variant's kind
takes), the plan preview for people, and the API's messages placed next to the fields they are
about. No Dash callbacks here (`frontend.pages.new` has them), so all of it is tested directly."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dash import html

from frontend.pages.components import fmt_hyper
from frontend.pages.messages import field_label, field_messages

KINDS = ["base", "structured", "unstructured", "int8", "mixed", "fp16"]
QUANTISED = {"int8", "mixed", "fp16"}
PRUNED = {"structured", "unstructured"}
METHODS = {"structured": ["uniform", "nonuniform"], "unstructured": ["layer", "global"]}
RATIO_LABELS = {"structured": "FLOPs ratio kept (0–1]", "unstructured": "amount pruned [0–1)"}
METHOD_LABELS = {"structured": "method", "unstructured": "scope"}
EPOCH_LABELS = {"finetune": "finetune epochs", "rewind": "rewind epoch"}
NEW_VARIANT = {"name": "", "kind": "structured", "method": "uniform", "ratio": 0.5}
DEFAULT_VARIANTS = [
    {"name": "base", "kind": "base"},
    {"name": "u50", "kind": "structured", "method": "uniform", "ratio": 0.5},
]
DEFAULT_FRACTIONS = "0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9"
# The fields each variant row can show, and the spec fields whose messages go under each.
VARIANT_CELLS = {
    "ratio": ("flops_ratio", "amount"),
    "method": ("method", "scope"),
    "source": ("source",),
    "retrain": ("retrain",),
    "epochs": ("finetune_epochs", "rewind_epoch"),
    "iterations": ("iterations",),
}
CELLS_OF_KIND = {
    "base": (),
    "structured": ("ratio", "method", "retrain", "iterations"),
    "unstructured": ("ratio", "method", "retrain", "iterations"),
    **{kind: ("source",) for kind in QUANTISED},
}
NAME_NEEDED = "a study needs a name: it is how you find it in the list"


# --- the spec of the form ------------------------------------------------------------------------------
def variant_spec(
    name: str,
    kind: str,
    ratio: Any,
    method: Any,
    source: Any,
    retrain: Any,
    epochs: Any,
    iterations: Any = None,
) -> dict:
    """One variant's spec: only the fields its kind takes (a hidden field's value is never sent)."""
    spec: dict[str, Any] = {"name": (name or "").strip(), "kind": kind}
    if kind == "structured":
        spec["flops_ratio"] = ratio
        if method in ("uniform", "nonuniform"):
            spec["method"] = method
    elif kind == "unstructured":
        spec["amount"] = ratio
        if method in ("layer", "global"):
            spec["scope"] = method
    elif kind in QUANTISED:
        spec["source"] = (source or "").strip()
    if kind in PRUNED:
        if retrain:
            spec["retrain"] = retrain
            if retrain == "finetune":
                spec["finetune_epochs"] = epochs
            elif retrain == "rewind":
                spec["rewind_epoch"] = epochs
        if iterations not in (None, "", 1):
            spec["iterations"] = iterations
    return spec


def parse_fractions(text: Any) -> list[Any]:
    """A scan's fractions typed as "0, 0.1 0.2": numbers where they are numbers; anything else
    is sent as typed, and the API says which entry it cannot take."""
    out: list[Any] = []
    for part in re.split(r"[,;\s]+", str(text or "").strip()):
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError:
            out.append(part)
    return out


def scan_spec(kind: Any, scope: Any, fractions: Any, on: Any) -> dict:
    return {"kind": kind, "scope": scope, "fractions": parse_fractions(fractions), "on": on}


def build_spec(values: dict, variants: list[dict], scans: list[dict] | None = None) -> dict:
    dataset: dict[str, Any] = {"name": values["dataset"]}
    if values.get("path"):
        dataset["path"] = values["path"].strip()
    recipe = {"epochs": values["epochs"], "batch_size": values["batch"]}
    if values.get("momentum") is not None:
        recipe["momentum"] = values["momentum"]
    spec = {
        "name": (values.get("name") or "").strip(),
        "dataset": dataset,
        "model": {"name": values["model"]},
        "recipe": recipe,
        "grid": {
            "lr_centre": values["lr"],
            "wd_centre": values["wd"],
            "step": values["step"],
            "size": values["size"],
        },
        "repeats": values["repeats"],
        "variants": variants,
    }
    if scans:
        spec["scans"] = scans
    if "on" in (values.get("auto") or []):
        spec["grid"]["auto_extend"] = {
            "max_points": values.get("auto_points"),
            "level": values.get("auto_level"),
        }
    return spec


FORM_FIELDS = {
    "name": "new-name",
    "dataset": "new-dataset",
    "path": "new-dataset-path",
    "model": "new-model",
    "epochs": "new-epochs",
    "batch": "new-batch",
    "momentum": "new-momentum",
    "lr": "new-lr",
    "wd": "new-wd",
    "step": "new-step",
    "size": "new-size",
    "repeats": "new-repeats",
    "auto": "new-auto",  # grid.auto_extend: on (a checklist), its budget and its ROI level
    "auto_points": "new-auto-points",
    "auto_level": "new-auto-level",
}
VARIANT_FIELDS = (
    "v-name",
    "v-kind",
    "v-ratio",
    "v-method",
    "v-source",
    "v-retrain",
    "v-epochs",
    "v-iterations",
)
SCAN_FIELDS = ("s-kind", "s-scope", "s-fractions", "s-on")


def spec_from_form(
    form_values: Sequence[Any], variant_columns: Sequence[list], scan_columns: Sequence[list] = ()
) -> dict:
    """The spec of the form: its values in FORM_FIELDS order, one list per VARIANT_FIELDS column
    (and per SCAN_FIELDS column)."""
    values = dict(zip(FORM_FIELDS, form_values, strict=True))
    variants = [variant_spec(*row) for row in zip(*variant_columns, strict=True)]
    scans = [scan_spec(*row) for row in zip(*scan_columns, strict=True)] if scan_columns else []
    return build_spec(values, variants, scans)


def auto_extension_line(plan: dict, auto_extend: dict | None) -> html.P | None:
    """What the auto-extension may add on top of the plan: at most `max_points` grid points per
    variant, each with every variant's runs at it (the plan has none of them yet)."""
    if not auto_extend or not isinstance(auto_extend.get("max_points"), int):
        return None
    points = plan.get("grid_points") or 0
    per_point = (
        sum(v.get("train", 0) + v.get("quantise", 0) for v in plan["variants"]) / points if points else 0
    )
    most = int(round(auto_extend["max_points"] * per_point))
    return html.P(
        f"Auto-extension on: where a trained variant's {auto_extend.get('level')!r}-ROI touches the grid's edge, "
        f"up to {auto_extend['max_points']:,} more grid points per variant, i.e. up to {most:,} more runs "
        "(not counted above: they are planned only if the ROI gets there).",
        id="new-plan-auto",
    )


def plan_view(plan: dict, auto_extend: dict | None = None) -> list:
    """The dry run's answer for people: totals, runs per variant, the grid's lr / wd values, and
    what an auto-extension (`grid.auto_extend` of the spec) may add."""
    counts = plan["run_counts"]
    sentence = (
        f"This will plan {counts['total']:,} runs: {counts['train']:,} training, {counts['prune']:,} pruning, "
        f"{counts['quantise']:,} quantisation, {counts['measure']:,} measurement"
        + (f", {counts['scan']:,} sensitivity scan" if counts.get("scan") else "")
        + "."
    )
    numbers = ("train", "prune", "quantise", "measure", "scan", "total")
    head = html.Tr(
        [html.Th("variant"), html.Th("kind")]
        + [html.Th(k, className="num") for k in numbers]
        + [html.Th("iterations", className="num"), html.Th("prune epochs", className="num")]
    )
    body = [
        html.Tr(
            [html.Td(v["name"]), html.Td(v["kind"])]
            + [html.Td(f"{v.get(k, 0):,}", className="num") for k in numbers]
            + [
                html.Td("—" if v.get("iterations") is None else str(v["iterations"]), className="num"),
                html.Td(f"{v.get('prune_epochs', 0):,}" if v.get("iterations") else "—", className="num"),
            ]
        )
        for v in plan["variants"]
    ]
    table = html.Table([html.Thead(head), html.Tbody(body)], className="plain", id="new-plan-table")
    auto = auto_extension_line(plan, auto_extend)
    n_lr, n_wd = len(plan["lr_values"]), len(plan["wd_values"])
    seeds = plan["repeats"]
    grid = html.Div(
        [
            html.Div(f"grid: {n_lr} x {n_wd} points x {seeds} seed{'s' if seeds != 1 else ''}"),
            html.Div(
                ["lr: ", html.Span(", ".join(fmt_hyper(v) for v in plan["lr_values"]), id="new-plan-lr")]
            ),
            html.Div(
                ["wd: ", html.Span(", ".join(fmt_hyper(v) for v in plan["wd_values"]), id="new-plan-wd")]
            ),
        ],
        className="note",
    )
    return [html.P(sentence, id="new-plan-total"), table, grid, auto]


def plan_problem(messages: dict[str, str]) -> str:
    """The preview's line when the spec cannot be planned: each problem by the field's name."""
    listed = "; ".join(msg if loc == "_" else f"{field_label(loc)}: {msg}" for loc, msg in messages.items())
    return f"No plan yet: {listed}."


def route_errors(field_errors: dict[str, str], error_ids: list[dict]) -> list[str]:
    """Place each message under the most specific field the page shows; the rest go to '_'. A
    message placed under a parent field names the part it is about ("variant 2: source: ...")."""
    shown = [e["field"] for e in error_ids]
    placed: dict[str, list[str]] = {f: [] for f in shown}
    for loc, message in field_errors.items():
        parts = loc.split(".")
        target = next(
            (".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in placed), "_"
        )
        if target == loc or loc == "_":
            text = message
        elif target == "_":
            text = f"{field_label(loc)}: {message}"
        else:  # e.g. "variants.3" shows "source: ..." for variants.3.source
            text = f"{loc[len(target) :].lstrip('.').replace('_', ' ')}: {message}"
        placed.setdefault(target, []).append(text)
    return ["; ".join(placed.get(f, [])) for f in shown]


def form_errors(detail: Any, variant_ids: list[dict], scan_ids: list[dict]) -> dict[str, str]:
    """A 422 detail as {field path of this page: plain message}: API positions of variants and
    scans turned into the rows' own indices (a removed row leaves a gap)."""
    positions = {
        "variants": {str(i): str(row["index"]) for i, row in enumerate(variant_ids)},
        "scans": {str(i): str(row["index"]) for i, row in enumerate(scan_ids)},
    }
    errors = {}
    for loc, message in field_messages(detail).items():
        parts = loc.split(".")
        if len(parts) > 1 and parts[0] in positions and parts[1] in positions[parts[0]]:
            parts[1] = positions[parts[0]][parts[1]]
        errors[".".join(parts)] = message
    return errors


def visible_cells(kind: Any, retrain: Any) -> dict[str, bool]:
    """Which cells of a variant row apply to its kind (and the epochs cell to its retrain mode)."""
    cells = set(CELLS_OF_KIND.get(kind, ()))
    if kind in PRUNED and retrain in EPOCH_LABELS:
        cells.add("epochs")
    return {key: key in cells for key in VARIANT_CELLS}


def source_choices(names: Sequence[Any], kinds: Sequence[Any]) -> list[str]:
    """What a quantised variant may compress: the form's variants that are not quantised."""
    return [
        str(n).strip()
        for n, k in zip(names, kinds, strict=True)
        if k not in QUANTISED and str(n or "").strip()
    ]
