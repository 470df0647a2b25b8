"""`/runs/<id>`: one run's hyperparameters, status, attempts, worker, error, epoch curves, artefacts;
retrying a failed or cancelled run. Polls while the run is active, never once it has ended."""

from __future__ import annotations

import time

from dash import Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from backend.run_states import ENDED, RETRYABLE
from frontend.api_client import API_PREFIX, ApiError
from frontend.figures import epoch_curves_figure
from frontend.pages.components import figure_card, fmt, status_badge
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal, refusal

POLL_MS = 3000
HIDDEN = {"display": "none"}
DIVERGED_NOTE = (
    "Diverged is this grid point's result (the loss blew up at this learning rate and weight decay), "
    "not an error: the API retries only failed or cancelled runs."
)


def layout(run_id: str) -> html.Div:
    return html.Div(
        [
            dcc.Store(id="run-id", data=run_id),
            # Enabled by load_run only while the run is active.
            dcc.Interval(id="run-poll", interval=POLL_MS, disabled=True),
            dcc.Store(id="run-refresh"),  # a retry changed the run: read it again now
            html.Div(id="run-header"),
            html.Div(
                [
                    html.Button("Retry run", id="run-retry", className="primary", style=HIDDEN),
                    html.Span(id="run-retry-result"),
                    html.Span(id="run-retry-note", className="muted"),
                ],
                className="actions",
            ),
            html.Div(
                [
                    html.Div(id="run-details", className="panel"),
                    figure_card("epoch-curves", "Epoch curves"),
                ],
                className="grid-2",
            ),
            html.Div(id="run-artefacts", className="panel"),
        ]
    )


def _row(label: str, value) -> html.Tr:
    return html.Tr([html.Th(label), html.Td(value)])


def _epochs(run: dict) -> list[dict]:
    epochs = run.get("epochs") or run.get("metrics") or run.get("history") or []
    return epochs if isinstance(epochs, list) else []


def render(run: dict) -> tuple:
    run_id = run.get("id")
    study_id = run.get("study_id")
    title = [html.H1(f"Run {run_id}")]
    subtitle = [status_badge(run.get("status"))]
    if study_id is not None:
        subtitle += [" of ", dcc.Link(f"study {study_id}", href=f"/studies/{study_id}")]
    subtitle += [f" · variant {run.get('variant', '—')} · {run.get('kind', 'train')}"]
    header = html.Div([*title, html.P(subtitle)])
    hyper = run.get("hyperparameters") or {}
    result = run.get("result") if isinstance(run.get("result"), dict) else {}
    lr = run.get("lr", hyper.get("lr"))
    wd = run.get("wd", run.get("weight_decay", hyper.get("weight_decay")))
    rows = [
        _row("learning rate", fmt(lr, 4)),
        _row("weight decay", fmt(wd, 6)),
        _row("seed", fmt(run.get("seed", hyper.get("seed")))),
        _row("grid index (i, j)", f"{fmt(run.get('grid_i'))}, {fmt(run.get('grid_j'))}"),
        _row("top-1 (%)", fmt(run.get("top1"))),
        _row("top-5 (%)", fmt(run.get("top5"))),
        _row("epochs done", fmt(run.get("epochs_done", len(_epochs(run)) or None))),
        _row("attempts", fmt(run.get("attempts"))),
        _row("worker", run.get("worker") or "—"),
        _row("device", run.get("device") or result.get("device") or "—"),
        _row("started", run.get("started_at") or "—"),
        _row("finished", run.get("finished_at") or "—"),
        _row("seconds", fmt(run.get("seconds", result.get("seconds")), 1)),
    ]
    recipe = run.get("recipe") or result.get("recipe") or hyper
    if recipe:
        rows.append(
            _row(
                "recipe",
                html.Code(
                    ", ".join(f"{k}={v}" for k, v in recipe.items() if k not in ("lr", "weight_decay"))
                ),
            )
        )
    fast = result.get("fast_path")
    if isinstance(fast, dict) and fast:
        on = [k for k, v in fast.items() if v is True] + [
            f"{k}={v}" for k, v in fast.items() if isinstance(v, str)
        ]
        rows.append(_row("fast path in effect", html.Code(", ".join(on) or "none")))
    if group := group_text(result):
        rows.append(_row("fused group", group))
    error = run.get("error")
    details = [html.H3("Hyperparameters and status"), html.Table(html.Tbody(rows), className="plain")]
    if error:
        details.append(html.Pre(str(error), className="error", style={"whiteSpace": "pre-wrap"}))
    artefacts = run.get("artifacts") or run.get("artefacts") or []
    links = []
    for item in artefacts:
        if isinstance(item, str):
            item = {"name": item}
        name = item.get("name") or item.get("kind") or "artefact"
        href = item.get("url") or item.get("href") or f"{API_PREFIX}/runs/{run_id}/artifacts/{name}"
        size = item.get("size_bytes", item.get("bytes"))
        links.append(
            html.Li([html.A(name, href=href, download=name), f" ({fmt(size / 1e6, 2)} MB)" if size else ""])
        )
    artefact_panel = [
        html.H3("Artefacts"),
        html.Ul(links) if links else html.P("none stored", className="muted"),
    ]
    curves = epoch_curves_figure(_epochs(run), empty_text=no_epochs_text(run))
    return header, details, curves, artefact_panel


def group_text(result: dict) -> str | None:
    """The fused group a run was trained in (result.group, docs/spec.md section 8), in words."""
    group = result.get("group")
    ids = group.get("run_ids") if isinstance(group, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        return None
    return f"trained fused with runs {', '.join(map(str, ids))} (group of {len(ids)})"


def no_epochs_text(run: dict) -> str:
    """What the epoch-curve panel says when a run has no epochs: waiting, or there will be none."""
    kind = run.get("kind", "train")
    if kind != "train":
        return f"a {kind} run trains no epochs"
    if run.get("status") in ("blocked", "pending", "queued", "running"):
        return "no epochs recorded yet"
    if run.get("attempts"):
        return "this run ended before its first epoch"
    return "no per-epoch metrics: an imported result carries only its final accuracy"


def retry_answer(answer: dict) -> str:
    """POST /runs/{id}/retry's RetryOut in a sentence."""
    run = answer.get("run") or {}
    text = f"Retried: run {run.get('id')} is {run.get('status')}"
    others = int(answer.get("reopened") or 1) - 1
    if others:
        text += f"; {others} run{'s' if others != 1 else ''} cancelled because of it wait on it again"
    return text + "."


def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output("run-header", "children"),
        Output("run-details", "children"),
        Output({"type": "fig", "name": "epoch-curves"}, "figure"),
        Output("run-artefacts", "children"),
        Output("run-poll", "disabled"),
        Output("run-retry", "style"),
        Output("run-retry-note", "children"),
        Input("run-poll", "n_intervals"),
        Input("run-refresh", "data"),
        Input(TOKEN_STORE, "data"),
        State("run-id", "data"),
    )
    async def load_run(_n, _refresh, token, run_id):
        if not run_id:
            raise PreventUpdate
        try:
            run = await client_factory(token).get_run(run_id)  # 404 without a request unless an id
        except ApiError as exc:
            message = read_refusal(exc.status, exc.detail) or html.P(f"Run: {exc.detail}", className="error")
            # not found, or refused for want of a token: nothing to poll for until the user acts
            return message, None, {}, None, exc.status in (401, 403, 404), HIDDEN, None
        header, details, figure, artefacts = render(run)
        status = run.get("status")
        retry_style = None if status in RETRYABLE else HIDDEN
        note = DIVERGED_NOTE if status == "diverged" else None
        return header, details, figure, artefacts, status in ENDED, retry_style, note

    @app.callback(
        Output("run-retry-result", "children"),
        Output("run-refresh", "data"),
        Input("run-retry", "n_clicks"),
        State("run-id", "data"),
        State(TOKEN_STORE, "data"),
        prevent_initial_call=True,
    )
    async def retry(n_clicks, run_id, token):
        if not n_clicks:
            raise PreventUpdate
        try:
            answer = await client_factory(token).retry_run(run_id)
        except ApiError as exc:
            return refusal("Not retried", exc), time.time() if exc.stale_page() else no_update
        # the run is waiting again: load_run reads it now and turns the poll back on
        return html.Span(retry_answer(answer), className="ok"), time.time()
