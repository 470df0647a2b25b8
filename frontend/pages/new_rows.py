"""The rows of the new-study form: one variant (its kind's fields only) and one sensitivity scan,
plus the small field helpers the form is built from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dash import dcc, html

from frontend.pages.new_spec import (
    CELLS_OF_KIND,
    DEFAULT_FRACTIONS,
    EPOCH_LABELS,
    KINDS,
    METHOD_LABELS,
    METHODS,
    RATIO_LABELS,
    VARIANT_CELLS,
)


def field_error(field: str) -> html.Div:
    return html.Div(id={"type": "err", "field": field}, className="error")


def field_row(label: str, component: Any, field: str, hint: Any = None, hint_id: str | None = None) -> list:
    return [
        html.Label(
            label,
            htmlFor=getattr(component, "id", None)
            if isinstance(getattr(component, "id", None), str)
            else None,
        ),
        html.Div(
            [
                component,
                html.Div(hint, className="note", **({"id": hint_id} if hint_id else {}))
                if hint is not None or hint_id
                else None,
                field_error(field),
            ]
        ),
    ]


def number_input(id_: Any, value: Any, step: Any = "any", width: str = "150px") -> dcc.Input:
    return dcc.Input(id=id_, type="number", value=value, step=step, debounce=False, style={"width": width})


def variant_row(index: int, v: dict) -> html.Div:
    """One variant: name and kind, then the cells of its kind (`CELLS_OF_KIND`; the others hidden
    by `show_variant_fields`), each with its error line."""

    def cell(key: str, label: Any, component: Any, errors: Sequence[str]) -> html.Div:
        kind = v.get("kind", "structured")
        shown = key in ("name", "kind") or key in CELLS_OF_KIND.get(kind, ())
        return html.Div(
            [
                html.Span(label, className="field-label", id={"type": f"v-label-{key}", "index": index}),
                component,
                *[field_error(f"variants.{index}.{field}") for field in errors],
            ],
            id={"type": f"v-cell-{key}", "index": index},
            style=None if shown else {"display": "none"},
        )

    kind = v.get("kind", "structured")
    return html.Div(
        [
            cell(
                "name",
                "name",
                dcc.Input(
                    id={"type": "v-name", "index": index}, value=v.get("name", ""), style={"width": "110px"}
                ),
                ("name",),
            ),
            cell(
                "kind",
                "kind",
                dcc.Dropdown(
                    id={"type": "v-kind", "index": index},
                    options=KINDS,
                    value=kind,
                    clearable=False,
                    style={"width": "140px"},
                ),
                ("kind",),
            ),
            cell(
                "ratio",
                RATIO_LABELS.get(kind, "FLOPs ratio kept (0–1]"),
                dcc.Input(
                    id={"type": "v-ratio", "index": index},
                    type="number",
                    value=v.get("ratio"),
                    step="any",
                    style={"width": "110px"},
                ),
                VARIANT_CELLS["ratio"],
            ),
            cell(
                "method",
                METHOD_LABELS.get(kind, "method"),
                dcc.Dropdown(
                    id={"type": "v-method", "index": index},
                    options=METHODS.get(kind, METHODS["structured"]),
                    value=v.get("method"),
                    clearable=False,
                    style={"width": "130px"},
                ),
                VARIANT_CELLS["method"],
            ),
            cell(
                "source",
                "source variant",
                dcc.Dropdown(
                    id={"type": "v-source", "index": index},
                    options=[],
                    value=v.get("source"),
                    placeholder="pick a variant",
                    style={"width": "140px"},
                ),
                VARIANT_CELLS["source"],
            ),
            cell(
                "retrain",
                "retrain",
                dcc.Dropdown(
                    id={"type": "v-retrain", "index": index},
                    options=["scratch", "finetune", "rewind"],
                    value=v.get("retrain"),
                    placeholder="scratch",
                    style={"width": "120px"},
                ),
                VARIANT_CELLS["retrain"],
            ),
            cell(
                "epochs",
                EPOCH_LABELS.get(v.get("retrain"), "epochs"),
                dcc.Input(
                    id={"type": "v-epochs", "index": index},
                    type="number",
                    value=v.get("epochs"),
                    style={"width": "90px"},
                ),
                VARIANT_CELLS["epochs"],
            ),
            cell(
                "iterations",
                "iterations (1–10)",
                dcc.Input(
                    id={"type": "v-iterations", "index": index},
                    type="number",
                    min=1,
                    max=10,
                    step=1,
                    value=v.get("iterations", 1),
                    style={"width": "80px"},
                ),
                VARIANT_CELLS["iterations"],
            ),
            html.Div(
                [
                    html.Span(" ", className="field-label"),
                    html.Button("remove", id={"type": "v-remove", "index": index}, className="small"),
                ]
            ),
            html.Div(
                id={"type": "err", "field": f"variants.{index}"},
                className="error",
                style={"flexBasis": "100%"},
            ),
        ],
        className="variant-row",
        id={"type": "v-row", "index": index},
    )


def scan_row(index: int, scan: dict) -> html.Div:
    """One sensitivity scan: what is pruned, over which scope, at which fractions, of which models."""

    def cell(label: str, component: Any) -> html.Div:
        return html.Div([html.Span(label, className="field-label"), component])

    return html.Div(
        [
            cell(
                "pruning",
                dcc.Dropdown(
                    id={"type": "s-kind", "index": index},
                    options=["structured", "unstructured"],
                    value=scan.get("kind", "unstructured"),
                    clearable=False,
                    style={"width": "140px"},
                ),
            ),
            cell(
                "scope",
                dcc.Dropdown(
                    id={"type": "s-scope", "index": index},
                    options=[
                        {"label": "whole model", "value": "global"},
                        {"label": "each layer alone", "value": "layer"},
                    ],
                    value=scan.get("scope", "global"),
                    clearable=False,
                    style={"width": "160px"},
                ),
            ),
            cell(
                "fractions pruned (comma-separated, each in [0, 1))",
                dcc.Input(
                    id={"type": "s-fractions", "index": index},
                    value=scan.get("fractions", DEFAULT_FRACTIONS),
                    style={"width": "340px"},
                ),
            ),
            cell(
                "models scanned",
                dcc.Dropdown(
                    id={"type": "s-on", "index": index},
                    options=[
                        {"label": "the base model", "value": "base"},
                        {"label": "base and every pruned variant", "value": "all"},
                    ],
                    value=scan.get("on", "base"),
                    clearable=False,
                    style={"width": "230px"},
                ),
            ),
            html.Div(
                [
                    html.Span(" ", className="field-label"),
                    html.Button("remove", id={"type": "s-remove", "index": index}, className="small"),
                ]
            ),
            html.Div(
                [field_error(f"scans.{index}"), field_error(f"scans.{index}.fractions")],
                style={"flexBasis": "100%"},
            ),
        ],
        className="variant-row",
        id={"type": "s-row", "index": index},
    )
