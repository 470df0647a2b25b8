"""`/new`: a study form (dataset, model, recipe, grid, variants, repeats) and a CSV import.

The API validates; its 422 messages are shown next to the fields they name. Before submitting, the
form shows what the API's planner would make of it (`POST /studies/plan`, a dry run). Writes carry
the token from the top bar (`frontend.pages.token`); a refusal for want of one says so.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from frontend.api_client import ApiError
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal, refused_message

# Suggestions for the dropdowns; the API's catalog decides what is valid (unknown -> 422 here).
DATASETS = ["digits", "cifar10", "fashionmnist", "imagefolder", "synthetic"]
MODELS = [
    "digits_cnn",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "mobilenetv2_cifar",
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "shufflenet_v2_x1_0",
    "alexnet",
]
KINDS = ["base", "structured", "unstructured", "int8", "mixed", "fp16"]
QUANTISED = {"int8", "mixed", "fp16"}
PRUNED = {"structured", "unstructured"}
DEFAULT_VARIANTS = [
    {"name": "base", "kind": "base"},
    {"name": "u50", "kind": "structured", "method": "uniform", "ratio": 0.5},
]


def _field(label: str, component: Any, field: str, hint: str | None = None) -> list:
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
                html.Div(hint, className="note") if hint else None,
                html.Div(id={"type": "err", "field": field}, className="error"),
            ]
        ),
    ]


def _num(id_: str, value: Any, step: Any = "any", width: str = "150px") -> dcc.Input:
    return dcc.Input(id=id_, type="number", value=value, step=step, debounce=False, style={"width": width})


def variant_row(index: int, v: dict) -> html.Div:
    def cell(label: str, component: Any) -> html.Div:
        return html.Div([html.Span(label, className="field-label"), component])

    return html.Div(
        [
            cell(
                "name",
                dcc.Input(
                    id={"type": "v-name", "index": index}, value=v.get("name", ""), style={"width": "110px"}
                ),
            ),
            cell(
                "kind",
                dcc.Dropdown(
                    id={"type": "v-kind", "index": index},
                    options=KINDS,
                    value=v.get("kind", "structured"),
                    clearable=False,
                    style={"width": "140px"},
                ),
            ),
            cell(
                "FLOPs ratio / amount",
                dcc.Input(
                    id={"type": "v-ratio", "index": index},
                    type="number",
                    value=v.get("ratio"),
                    step="any",
                    style={"width": "110px"},
                ),
            ),
            cell(
                "method / scope",
                dcc.Dropdown(
                    id={"type": "v-method", "index": index},
                    options=["uniform", "nonuniform", "layer", "global"],
                    value=v.get("method"),
                    style={"width": "130px"},
                ),
            ),
            cell(
                "source (quantised)",
                dcc.Input(
                    id={"type": "v-source", "index": index},
                    value=v.get("source", ""),
                    style={"width": "100px"},
                ),
            ),
            cell(
                "retrain",
                dcc.Dropdown(
                    id={"type": "v-retrain", "index": index},
                    options=["scratch", "finetune", "rewind"],
                    value=v.get("retrain"),
                    style={"width": "120px"},
                ),
            ),
            cell(
                "finetune / rewind epoch",
                dcc.Input(
                    id={"type": "v-epochs", "index": index},
                    type="number",
                    value=v.get("epochs"),
                    style={"width": "90px"},
                ),
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


def layout() -> html.Div:
    form = html.Div(
        [
            *_field(
                "name",
                dcc.Input(
                    id="new-name", value="", placeholder="e.g. digits pruning", style={"width": "360px"}
                ),
                "name",
            ),
            *_field(
                "dataset",
                html.Div(
                    [
                        dcc.Dropdown(
                            id="new-dataset",
                            options=DATASETS,
                            value="digits",
                            clearable=False,
                            style={"width": "200px"},
                        ),
                        dcc.Input(
                            id="new-dataset-path",
                            placeholder="path (cifar10, fashionmnist, imagefolder)",
                            style={"width": "360px"},
                        ),
                    ],
                    className="field-row",
                ),
                "dataset",
            ),
            *_field(
                "model",
                dcc.Dropdown(
                    id="new-model",
                    options=MODELS,
                    value="digits_cnn",
                    clearable=False,
                    style={"width": "240px"},
                ),
                "model",
            ),
            *_field(
                "recipe",
                html.Div(
                    [
                        html.Div(
                            [html.Span("epochs", className="field-label"), _num("new-epochs", 3, 1, "90px")]
                        ),
                        html.Div(
                            [
                                html.Span("batch size", className="field-label"),
                                _num("new-batch", 64, 1, "90px"),
                            ]
                        ),
                        html.Div(
                            [
                                html.Span("momentum", className="field-label"),
                                _num("new-momentum", 0.9, "any", "90px"),
                            ]
                        ),
                    ],
                    className="field-row",
                ),
                "recipe",
                "SGD, step schedule /10 at 50 % and 75 % of the epochs, He init (the study's recipe).",
            ),
            html.Label("grid"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Div(
                                [
                                    html.Span("lr centre", className="field-label"),
                                    _num("new-lr", 0.1),
                                    html.Div(
                                        id={"type": "err", "field": "grid.lr_centre"}, className="error"
                                    ),
                                ]
                            ),
                            html.Div(
                                [
                                    html.Span("wd centre", className="field-label"),
                                    _num("new-wd", 1e-4),
                                    html.Div(
                                        id={"type": "err", "field": "grid.wd_centre"}, className="error"
                                    ),
                                ]
                            ),
                            html.Div(
                                [
                                    html.Span("step (log10)", className="field-label"),
                                    _num("new-step", 0.4),
                                    html.Div(id={"type": "err", "field": "grid.step"}, className="error"),
                                ]
                            ),
                            html.Div(
                                [
                                    html.Span("size (points per axis, odd)", className="field-label"),
                                    _num("new-size", 3, 1),
                                    html.Div(id={"type": "err", "field": "grid.size"}, className="error"),
                                ]
                            ),
                        ],
                        className="field-row",
                    ),
                    html.Div(id={"type": "err", "field": "grid"}, className="error"),
                ]
            ),
            *_field("repeats (seeds)", _num("new-repeats", 1, 1, "90px"), "repeats"),
            html.Label("variants"),
            html.Div(
                [
                    html.Div([variant_row(i, v) for i, v in enumerate(DEFAULT_VARIANTS)], id="new-variants"),
                    html.Button(
                        "add variant", id="new-add-variant", className="small", style={"marginTop": "8px"}
                    ),
                    html.Div(id={"type": "err", "field": "variants"}, className="error"),
                ]
            ),
            html.Span(),
            html.Div(
                [
                    html.Div(id="new-plan", className="plan"),
                    html.Button("Create study", id="new-submit", className="primary"),
                    html.Div(id={"type": "err", "field": "_"}, className="error"),
                ]
            ),
        ],
        className="form-grid",
    )
    upload = html.Div(
        [
            html.H2("Import results from elsewhere"),
            html.P(
                [
                    "A CSV with columns ",
                    html.Code("variant,lr,wd,seed,top1[,top5][,status]"),
                    " becomes a finished study you can analyse like any other.",
                ]
            ),
            dcc.Input(
                id="import-name",
                placeholder="study name (optional)",
                style={"width": "300px", "marginBottom": "8px"},
            ),
            dcc.Upload(
                id="import-upload",
                children=html.Div(["Drop a CSV here or ", html.A("choose a file")]),
                className="upload",
            ),
            html.Div(id="import-result", className="error"),
        ],
        className="panel",
    )
    return html.Div([html.H1("New study"), html.Div(form, className="panel"), upload])


def variant_spec(
    name: str, kind: str, ratio: Any, method: Any, source: Any, retrain: Any, epochs: Any
) -> dict:
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
    if kind in PRUNED and retrain:
        spec["retrain"] = retrain
        if retrain == "finetune":
            spec["finetune_epochs"] = epochs
        elif retrain == "rewind":
            spec["rewind_epoch"] = epochs
    return spec


def build_spec(values: dict, variants: list[dict]) -> dict:
    dataset: dict[str, Any] = {"name": values["dataset"]}
    if values.get("path"):
        dataset["path"] = values["path"].strip()
    recipe = {"epochs": values["epochs"], "batch_size": values["batch"]}
    if values.get("momentum") is not None:
        recipe["momentum"] = values["momentum"]
    return {
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
}
VARIANT_FIELDS = ("v-name", "v-kind", "v-ratio", "v-method", "v-source", "v-retrain", "v-epochs")


def spec_from_form(form_values: Sequence[Any], variant_columns: Sequence[list]) -> dict:
    """The spec of the form: its values in FORM_FIELDS order, one list per VARIANT_FIELDS column."""
    values = dict(zip(FORM_FIELDS, form_values, strict=True))
    variants = [variant_spec(*row) for row in zip(*variant_columns, strict=True)]
    return build_spec(values, variants)


def plan_view(plan: dict) -> list:
    """The dry run's answer for people: totals, runs per variant, and the grid's lr / wd values."""
    counts = plan["run_counts"]
    sentence = (
        f"This will plan {counts['total']:,} runs: {counts['train']:,} training, {counts['prune']:,} pruning, "
        f"{counts['quantise']:,} quantisation, {counts['measure']:,} measurement."
    )
    numbers = ("train", "prune", "quantise", "measure", "total")
    head = html.Tr([html.Th("variant"), html.Th("kind")] + [html.Th(k, className="num") for k in numbers])
    body = [
        html.Tr(
            [html.Td(v["name"]), html.Td(v["kind"])]
            + [html.Td(f"{v[k]:,}", className="num") for k in numbers]
        )
        for v in plan["variants"]
    ]
    table = html.Table([html.Thead(head), html.Tbody(body)], className="plain", id="new-plan-table")
    n_lr, n_wd = len(plan["lr_values"]), len(plan["wd_values"])
    seeds = plan["repeats"]
    grid = html.Div(
        [
            html.Div(f"grid: {n_lr} x {n_wd} points x {seeds} seed{'s' if seeds != 1 else ''}"),
            html.Div(["lr: ", html.Span(", ".join(f"{v:.3g}" for v in plan["lr_values"]), id="new-plan-lr")]),
            html.Div(["wd: ", html.Span(", ".join(f"{v:.3g}" for v in plan["wd_values"]), id="new-plan-wd")]),
        ],
        className="note",
    )
    return [html.P(sentence, id="new-plan-total"), table, grid]


def plan_problem(field_errors: dict[str, str]) -> str:
    listed = "; ".join(f"{loc}: {msg}" if loc != "_" else msg for loc, msg in field_errors.items())
    return f"No plan yet: fix the spec first ({listed})."


def route_errors(field_errors: dict[str, str], error_ids: list[dict]) -> list[str]:
    """Place each API error under the most specific field the page shows; the rest go to '_'."""
    shown = [e["field"] for e in error_ids]
    placed: dict[str, list[str]] = {f: [] for f in shown}
    for loc, message in field_errors.items():
        parts = loc.split(".")
        target = next(
            (".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in placed), "_"
        )
        rest = loc[len(target) :].lstrip(".") if target != "_" else ("" if loc == "_" else loc)
        placed.setdefault(target, []).append(f"{rest}: {message}" if rest else message)
    return ["; ".join(placed.get(f, [])) for f in shown]


def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output("new-variants", "children"),
        Input("new-add-variant", "n_clicks"),
        Input({"type": "v-remove", "index": ALL}, "n_clicks"),
        State("new-variants", "children"),
        prevent_initial_call=True,
    )
    def edit_variants(_add, _removes, rows):
        trigger = ctx.triggered_id
        rows = rows or []
        if trigger == "new-add-variant":
            used = [row["props"]["id"]["index"] for row in rows]
            index = max(used, default=-1) + 1
            return rows + [
                variant_row(
                    index, {"name": f"v{index}", "kind": "structured", "method": "uniform", "ratio": 0.5}
                )
            ]
        if isinstance(trigger, dict) and trigger.get("type") == "v-remove":
            if not ctx.triggered[0]["value"]:
                raise PreventUpdate
            return [row for row in rows if row["props"]["id"]["index"] != trigger["index"]]
        raise PreventUpdate

    form_states = [State(component, "value") for component in FORM_FIELDS.values()]
    variant_states = [State({"type": t, "index": ALL}, "value") for t in VARIANT_FIELDS]

    @app.callback(
        Output("new-plan", "children"),
        *[Input(component, "value") for component in FORM_FIELDS.values()],
        *[Input({"type": t, "index": ALL}, "value") for t in VARIANT_FIELDS],
        State(TOKEN_STORE, "data"),
    )
    async def show_plan(*values):
        *values, token = values
        form, columns = values[: len(FORM_FIELDS)], values[len(FORM_FIELDS) :]
        spec = spec_from_form(form, columns)
        spec["name"] = spec["name"] or "preview"  # a name is needed to submit, not to plan
        try:
            plan = await client_factory(token).plan_study(spec)
        except ApiError as exc:
            if exc.status == 422:
                return html.P(plan_problem(exc.field_errors()), className="muted")
            return read_refusal(exc.status, exc.detail) or html.P(f"No plan: {exc}", className="muted")
        return plan_view(plan)

    @app.callback(
        Output({"type": "err", "field": ALL}, "children"),
        Output("url", "pathname", allow_duplicate=True),
        Input("new-submit", "n_clicks"),
        *form_states,
        *variant_states,
        State({"type": "v-row", "index": ALL}, "id"),
        State({"type": "err", "field": ALL}, "id"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def submit(n_clicks, *values):
        if not n_clicks:
            raise PreventUpdate
        n_form, n_variant = len(FORM_FIELDS), len(VARIANT_FIELDS)
        form, columns = values[:n_form], values[n_form : n_form + n_variant]
        v_ids, error_ids, token = values[n_form + n_variant :]
        # API errors name variants by their position in the list; the rows carry their own index.
        positions = {str(i): str(row_id["index"]) for i, row_id in enumerate(v_ids)}
        try:
            study = await client_factory(token).create_study(spec_from_form(form, columns))
        except ApiError as exc:
            refused = refused_message(exc)
            if refused is not None:
                return [refused if e["field"] == "_" else "" for e in error_ids], no_update
            errors = {}
            for loc, message in exc.field_errors().items():
                parts = loc.split(".")
                if len(parts) > 1 and parts[0] == "variants" and parts[1] in positions:
                    parts[1] = positions[parts[1]]
                errors[".".join(parts)] = message
            if exc.status != 422:
                errors = {"_": f"{exc.status}: {exc.detail}"}
            return route_errors(errors, error_ids), no_update
        return ["" for _ in error_ids], f"/studies/{study['id']}"

    @app.callback(
        Output("import-result", "children"),
        Output("url", "pathname", allow_duplicate=True),
        Input("import-upload", "contents"),
        State("import-upload", "filename"),
        State("import-name", "value"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def import_csv(contents, filename, name, token):
        if not contents:
            raise PreventUpdate
        payload = base64.b64decode(contents.split(",", 1)[1])
        try:
            study = await client_factory(token).import_csv(
                filename or "results.csv", payload, name=name or None
            )
        except ApiError as exc:
            refused = refused_message(exc)
            if refused is not None:
                return ["Not imported. ", *refused], no_update
            messages = exc.field_errors()
            return "Import failed: " + "; ".join(messages.values()), no_update
        return "", f"/studies/{study['id']}"
