"""`/new`: a study form (dataset, model, recipe, grid, variants with their iterations, sensitivity
scans, repeats) and a CSV import.

The model and data set lists are the API's catalog (GET /catalog), the one list of them. Each
variant row shows only the fields its kind takes (a FLOPs ratio for structured pruning, an amount
for unstructured, a source picked from the study's variants for a quantised one). As the form
changes, the API's planner answers (`POST /studies/plan`, a dry run): the runs it would make, and
any problem in plain words next to the field it is about (an empty name included). Writes carry
the token from the top bar (`frontend.pages.token`); a refusal for want of one says so.
"""

from __future__ import annotations

import base64

from dash import ALL, MATCH, Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from frontend.api_client import ApiError
from frontend.pages.messages import error_text, field_messages
from frontend.pages.new_rows import field_error, field_row, number_input, scan_row, variant_row
from frontend.pages.new_spec import (
    DEFAULT_VARIANTS,
    EPOCH_LABELS,
    FORM_FIELDS,
    METHOD_LABELS,
    METHODS,
    NAME_NEEDED,
    NEW_VARIANT,
    QUANTISED,
    RATIO_LABELS,
    SCAN_FIELDS,
    VARIANT_CELLS,
    VARIANT_FIELDS,
    form_errors,
    plan_problem,
    plan_view,
    route_errors,
    source_choices,
    spec_from_form,
    visible_cells,
)
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal, refused_message


def layout() -> html.Div:
    form = html.Div(
        [
            *field_row(
                "name",
                dcc.Input(
                    id="new-name", value="", placeholder="e.g. digits pruning", style={"width": "360px"}
                ),
                "name",
            ),
            *field_row(
                "dataset",
                html.Div(
                    [
                        dcc.Dropdown(
                            id="new-dataset",
                            options=["digits"],
                            value="digits",
                            clearable=False,
                            style={"width": "240px"},
                        ),  # fmt: skip
                        dcc.Input(
                            id="new-dataset-path",
                            placeholder="path to the data set's files on the server",
                            className="path-input",
                        ),
                    ],
                    className="field-stack",
                ),
                "dataset",
                hint_id="new-dataset-note",
            ),
            *field_row(
                "model",
                dcc.Dropdown(
                    id="new-model",
                    options=["digits_cnn"],
                    value="digits_cnn",
                    clearable=False,
                    style={"width": "240px"},
                ),  # fmt: skip
                "model",
                hint_id="new-model-note",
            ),
            *field_row(
                "recipe",
                html.Div(
                    [
                        html.Div(
                            [
                                html.Span("epochs", className="field-label"),
                                number_input("new-epochs", 3, 1, "90px"),
                            ]
                            + [field_error("recipe.epochs")]
                        ),
                        html.Div(
                            [
                                html.Span("batch size", className="field-label"),
                                number_input("new-batch", 64, 1, "90px"),
                            ]
                            + [field_error("recipe.batch_size")]
                        ),
                        html.Div(
                            [
                                html.Span("momentum", className="field-label"),
                                number_input("new-momentum", 0.9, "any", "90px"),
                                field_error("recipe.momentum"),
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
                                    number_input("new-lr", 0.1),
                                    field_error("grid.lr_centre"),
                                ]  # fmt: skip
                            ),
                            html.Div(
                                [
                                    html.Span("wd centre", className="field-label"),
                                    number_input("new-wd", 1e-4),
                                    field_error("grid.wd_centre"),
                                ]  # fmt: skip
                            ),
                            html.Div(
                                [
                                    html.Span("step (log10)", className="field-label"),
                                    number_input("new-step", 0.4),
                                    field_error("grid.step"),
                                ]  # fmt: skip
                            ),
                            html.Div(
                                [
                                    html.Span("size (points per axis, odd)", className="field-label"),
                                    number_input("new-size", 3, 1),
                                    field_error("grid.size"),
                                ]  # fmt: skip
                            ),
                        ],
                        className="field-row",
                    ),
                    html.Div(
                        [
                            dcc.Checklist(
                                id="new-auto",
                                options=[{"label": " extend the grid automatically", "value": "on"}],
                                value=[],
                            ),
                            html.Div(
                                [
                                    html.Span(
                                        "new grid points per variant, at most", className="field-label"
                                    ),
                                    number_input("new-auto-points", 20, 1, "90px"),
                                ]
                            ),
                            html.Div(
                                [
                                    html.Span("when this ROI touches an edge (pp)", className="field-label"),
                                    number_input("new-auto-level", 1.0, "any", "90px"),
                                ]
                            ),
                        ],
                        className="field-row",
                        style={"marginTop": "8px", "alignItems": "flex-end"},
                    ),
                    field_error("grid.auto_extend"),
                    field_error("grid"),
                ]
            ),
            *field_row("repeats (seeds)", number_input("new-repeats", 1, 1, "90px"), "repeats"),
            html.Label("variants"),
            html.Div(
                [
                    html.Div([variant_row(i, v) for i, v in enumerate(DEFAULT_VARIANTS)], id="new-variants"),
                    html.Button(
                        "add variant", id="new-add-variant", className="small", style={"marginTop": "8px"}
                    ),
                    field_error("variants"),
                ]
            ),
            html.Label("sensitivity scans"),
            html.Div(
                [
                    html.Div(
                        "Optional: the accuracy of a model trained at the prior, pruned by each fraction without "
                        "retraining (one scan run per scanned model).",
                        className="note",
                    ),
                    html.Div([], id="new-scans"),
                    html.Button("add scan", id="new-add-scan", className="small", style={"marginTop": "8px"}),
                    field_error("scans"),
                ]
            ),
            html.Span(),
            html.Div(
                [
                    html.Div(id="new-plan", className="plan"),
                    html.Button("Create study", id="new-submit", className="primary"),
                    field_error("_"),
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
    return html.Div(
        [html.H1("New study"), dcc.Store(id="new-catalog"), html.Div(form, className="panel"), upload]
    )


def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output("new-catalog", "data"),
        Output("new-model", "options"),
        Output("new-dataset", "options"),
        Input(TOKEN_STORE, "data"),
    )
    async def load_catalog(token):
        try:
            catalog = await client_factory(token).catalog()
        except ApiError:
            raise PreventUpdate from None  # the form keeps its one default; the plan says why
        models = [
            {"label": m["name"], "value": m["name"], "title": m["description"]}
            for m in catalog.get("models") or []
        ]
        datasets = [
            {"label": d["name"], "value": d["name"], "title": d["layout"]}
            for d in catalog.get("datasets") or []
        ]
        return catalog, models, datasets

    @app.callback(
        Output("new-dataset-path", "style"),
        Output("new-dataset-note", "children"),
        Input("new-dataset", "value"),
        Input("new-catalog", "data"),
    )
    def show_dataset_path(name, catalog):
        info = next((d for d in (catalog or {}).get("datasets") or [] if d["name"] == name), None)
        if info is None or not info.get("needs_path"):
            return {"display": "none"}, (info or {}).get("layout") and f"{name}: built in, no files needed."
        return None, f"Files on the server: {info['layout']}"

    @app.callback(
        Output("new-model-note", "children"),
        Input("new-model", "value"),
        Input("new-catalog", "data"),
    )
    def show_model_note(name, catalog):
        info = next((m for m in (catalog or {}).get("models") or [] if m["name"] == name), None)
        if info is None:
            return None
        text = f"{info['description']} (input {'x'.join(map(str, info['input_shape']))})"
        if not info.get("structured_pruning"):
            text += f"; structured pruning not offered: {info.get('no_structured_pruning')}"
        return text

    @app.callback(
        Output("new-auto-points", "disabled"),
        Output("new-auto-level", "disabled"),
        Input("new-auto", "value"),
    )
    def auto_fields_apply(on):
        off = "on" not in (on or [])
        return off, off

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
            return rows + [variant_row(index, {**NEW_VARIANT, "name": f"v{index}"})]
        if isinstance(trigger, dict) and trigger.get("type") == "v-remove":
            if not ctx.triggered[0]["value"]:
                raise PreventUpdate
            return [row for row in rows if row["props"]["id"]["index"] != trigger["index"]]
        raise PreventUpdate

    @app.callback(
        Output("new-scans", "children"),
        Input("new-add-scan", "n_clicks"),
        Input({"type": "s-remove", "index": ALL}, "n_clicks"),
        State("new-scans", "children"),
        prevent_initial_call=True,
    )
    def edit_scans(_add, _removes, rows):
        trigger = ctx.triggered_id
        rows = rows or []
        if trigger == "new-add-scan":
            used = [row["props"]["id"]["index"] for row in rows]
            return rows + [scan_row(max(used, default=-1) + 1, {})]
        if isinstance(trigger, dict) and trigger.get("type") == "s-remove":
            if not ctx.triggered[0]["value"]:
                raise PreventUpdate
            return [row for row in rows if row["props"]["id"]["index"] != trigger["index"]]
        raise PreventUpdate

    cell_outputs = [Output({"type": f"v-cell-{key}", "index": MATCH}, "style") for key in VARIANT_CELLS]

    @app.callback(
        *cell_outputs,
        Output({"type": "v-label-ratio", "index": MATCH}, "children"),
        Output({"type": "v-label-method", "index": MATCH}, "children"),
        Output({"type": "v-label-epochs", "index": MATCH}, "children"),
        Output({"type": "v-method", "index": MATCH}, "options"),
        Output({"type": "v-method", "index": MATCH}, "value"),
        Input({"type": "v-kind", "index": MATCH}, "value"),
        Input({"type": "v-retrain", "index": MATCH}, "value"),
        State({"type": "v-method", "index": MATCH}, "value"),
    )
    def show_variant_fields(kind, retrain, method):
        """Only the fields of the row's kind (and of its retrain mode) are shown."""
        shown = visible_cells(kind, retrain)
        methods = METHODS.get(kind, [])
        return (
            *[None if shown[key] else {"display": "none"} for key in VARIANT_CELLS],
            RATIO_LABELS.get(kind, ""),
            METHOD_LABELS.get(kind, "method"),
            EPOCH_LABELS.get(retrain, "epochs"),
            methods,
            method if method in methods else (methods[0] if methods else None),
        )

    @app.callback(
        Output({"type": "v-source", "index": ALL}, "options"),
        Output({"type": "v-source", "index": ALL}, "value"),
        Input({"type": "v-name", "index": ALL}, "value"),
        Input({"type": "v-kind", "index": ALL}, "value"),
        State({"type": "v-source", "index": ALL}, "value"),
    )
    def source_options(names, kinds, sources):
        """A quantised variant's source is picked from the study's own (not quantised) variants."""
        choices = source_choices(names, kinds)
        values = [
            (s if s in choices else (choices[0] if choices else None)) if k in QUANTISED else s
            for s, k in zip(sources, kinds, strict=True)
        ]
        return [choices] * len(names), values

    form_inputs = [Input(component, "value") for component in FORM_FIELDS.values()]
    variant_inputs = [Input({"type": t, "index": ALL}, "value") for t in VARIANT_FIELDS]
    scan_inputs = [Input({"type": t, "index": ALL}, "value") for t in SCAN_FIELDS]

    @app.callback(
        Output("new-plan", "children"),
        Output({"type": "err", "field": ALL}, "children"),
        Output("url", "pathname", allow_duplicate=True),
        Input("new-submit", "n_clicks"),
        *form_inputs,
        *variant_inputs,
        *scan_inputs,
        State({"type": "v-row", "index": ALL}, "id"),
        State({"type": "s-row", "index": ALL}, "id"),
        State({"type": "err", "field": ALL}, "id"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call="initial_duplicate",
    )
    async def plan_or_submit(n_clicks, *values):
        """As the form changes: the API's dry run and every problem next to its field. On "Create
        study": the same spec, stored."""
        n_form, n_variant, n_scan = len(FORM_FIELDS), len(VARIANT_FIELDS), len(SCAN_FIELDS)
        form = values[:n_form]
        variant_columns = values[n_form : n_form + n_variant]
        scan_columns = values[n_form + n_variant : n_form + n_variant + n_scan]
        v_ids, s_ids, error_ids, token = values[n_form + n_variant + n_scan :]
        spec = spec_from_form(form, variant_columns, scan_columns)
        client = client_factory(token)
        if ctx.triggered_id == "new-submit" and n_clicks:
            try:
                study = await client.create_study(spec)
            except ApiError as exc:
                refused = refused_message(exc)
                if refused is not None:
                    return no_update, [refused if e["field"] == "_" else "" for e in error_ids], no_update
                errors = (
                    form_errors(exc.detail, v_ids, s_ids)
                    if exc.status == 422
                    else {"_": error_text(exc.detail)}
                )
                return no_update, route_errors(errors, error_ids), no_update
            return no_update, ["" for _ in error_ids], f"/studies/{study['id']}"
        # the live preview: a name is needed to submit, not to plan; say it is missing, by the field
        missing_name = not spec["name"]
        spec["name"] = spec["name"] or "preview"
        name_errors = {"name": NAME_NEEDED} if missing_name else {}
        try:
            plan = await client.plan_study(spec)
        except ApiError as exc:
            if exc.status == 422:
                errors = {**name_errors, **form_errors(exc.detail, v_ids, s_ids)}
                return (
                    html.P(plan_problem(errors), className="muted"),
                    route_errors(errors, error_ids),
                    no_update,
                )
            problem = read_refusal(exc.status, exc.detail) or html.P(
                f"No plan: {error_text(exc.detail)}", className="muted"
            )
            return problem, route_errors(name_errors, error_ids), no_update
        view = plan_view(plan, spec["grid"].get("auto_extend"))
        if missing_name:
            view.insert(0, html.P(f"Name missing: {NAME_NEEDED}.", className="error", id="new-plan-name"))
        return view, route_errors(name_errors, error_ids), no_update

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
            messages = field_messages(exc.detail)
            return "Import failed: " + "; ".join(messages.values()), no_update
        return "", f"/studies/{study['id']}"
