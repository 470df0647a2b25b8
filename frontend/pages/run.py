"""`/runs/<id>`: one run's hyperparameters, status, attempts, worker, error, epoch curves, artefacts
and what its kind did (a measure run what it measured, a prune run its pruned model, every run its
wall time); retrying a failed or cancelled run. Polls while the run is active, never once it has
ended. An id that names no run is a not-found page with nothing to act on."""

from __future__ import annotations

import time
from datetime import datetime

from dash import MATCH, Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from backend.run_states import ENDED, RETRYABLE
from frontend.api_client import API_PREFIX, ApiError, parse_id
from frontend.figures import epoch_curves_figure
from frontend.pages.components import (
    figure_card,
    fmt,
    fmt_acc,
    fmt_hyper,
    not_found,
    rows_to_csv,
    status_badge,
)
from frontend.pages.messages import error_text
from frontend.pages.token import STORE_ID as TOKEN_STORE
from frontend.pages.token import read_refusal, refusal

POLL_MS = 3000
HIDDEN = {"display": "none"}
CSV = "run-csv"
DIVERGED_NOTE = (
    "Diverged is this grid point's result (the loss blew up at this learning rate and weight decay), "
    "not an error: the API retries only failed or cancelled runs."
)
EPOCH_COLUMNS = ["epoch", "train_loss", "train_top1", "val_loss", "top1", "top5", "lr", "seconds"]
# A prune run's result: the figures worth a row (the rest are per-layer tables shown on the study page).
PRUNE_FIGURES = (
    ("flops_ratio", "kept FLOPs ratio"),
    ("base_flops", "base FLOPs"),
    ("flops", "FLOPs after pruning"),
    ("base_params", "base params"),
    ("params", "params after pruning"),
    ("sparsity", "sparsity (zero weights)"),
    ("zero_weights", "zero weights"),
    ("uniform_fraction", "filters removed per layer"),
)
MEASURE_FIGURES = (
    ("params", "params"),
    ("params_nonzero", "non-zero params"),
    ("flops", "FLOPs (batch 1)"),
    ("size_bytes", "size on disk (bytes)"),
)


def layout(run_id: str) -> html.Div:
    return html.Div(
        [
            dcc.Store(id="run-id", data=run_id),
            dcc.Store(id="run-data"),
            # Enabled by load_run only while the run is active.
            dcc.Interval(id="run-poll", interval=POLL_MS, disabled=True),
            dcc.Store(id="run-refresh"),  # a retry changed the run: read it again now
            html.Div(id="run-header"),
            html.Div(
                [
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
                            figure_card("epoch-curves", "Epoch curves", csv=CSV),
                        ],
                        className="grid-2",
                    ),
                    html.Div(id="run-kind-panel", className="panel"),
                    html.Div(id="run-artefacts", className="panel"),
                ],
                id="run-body",
                style=HIDDEN,
            ),
        ]
    )


def _row(label: str, value) -> html.Tr:
    return html.Tr([html.Th(label), html.Td(value)])


def _epochs(run: dict) -> list[dict]:
    epochs = run.get("epochs") or []
    return epochs if isinstance(epochs, list) else []


def wall_seconds(run: dict) -> float | None:
    """The run's seconds: what its job recorded, else finished minus started (every kind has it)."""
    result = run.get("result") if isinstance(run.get("result"), dict) else {}
    seconds = result.get("seconds")
    if isinstance(seconds, int | float):
        return float(seconds)
    try:
        started = datetime.fromisoformat(str(run["started_at"]))
        finished = datetime.fromisoformat(str(run["finished_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (finished - started).total_seconds())


def render(run: dict, variant: dict | None = None) -> tuple:
    """(header, details, epoch figure, artefacts) of a RunDetail; `variant` is its VariantOut
    (a prune run's model, a measure run's latency), when read."""
    run_id = run.get("id")
    study_id = run.get("study_id")
    title = [html.H1(f"Run {run_id}")]
    subtitle = [status_badge(run.get("status"))]
    if study_id is not None:
        subtitle += [" of ", dcc.Link(f"study {study_id}", href=f"/studies/{study_id}")]
    subtitle += [f" · variant {run.get('variant', '—')} · {run.get('kind', 'train')}"]
    header = html.Div([*title, html.P(subtitle)])
    result = run.get("result") if isinstance(run.get("result"), dict) else {}
    rows = [
        _row("learning rate", fmt_hyper(run.get("lr"))),
        _row("weight decay", fmt_hyper(run.get("wd"))),
        _row("seed", fmt(run.get("seed"))),
        _row("grid index (i, j)", f"{fmt(run.get('grid_i'))}, {fmt(run.get('grid_j'))}"),
        _row("top-1 (%)", fmt_acc(run.get("top1"))),
        _row("top-5 (%)", fmt_acc(run.get("top5"))),
        _row("epochs done", fmt(run.get("epochs_done", len(_epochs(run)) or None))),
        _row("attempts", fmt(run.get("attempts"))),
        _row("worker", run.get("worker") or "—"),
        _row("device", run.get("device") or result.get("device") or "—"),
        _row("started", run.get("started_at") or "—"),
        _row("finished", run.get("finished_at") or "—"),
        _row("seconds", fmt(wall_seconds(run), 1)),
    ]
    recipe = result.get("recipe")
    if isinstance(recipe, dict) and recipe:
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
    links = [artefact_link(item) for item in run.get("artefacts") or [] if isinstance(item, dict)]
    artefact_panel = [
        html.H3("Artefacts"),
        html.Ul(links) if links else html.P("none stored", className="muted"),
    ]
    curves = epoch_curves_figure(_epochs(run), empty_text=no_epochs_text(run))
    return header, details, curves, artefact_panel


def artefact_link(item: dict) -> html.Li:
    """A download named as the API names it (study, run, variant, kind)."""
    name = str(item.get("filename") or item.get("kind") or "artefact")
    href = item.get("url") or f"{API_PREFIX}/artefacts/{item.get('id')}"
    size = item.get("bytes")
    return html.Li(
        [
            html.A(name, href=href, download=name, className="artefact-link"),
            f" ({item.get('kind')}, {fmt(size / 1e6, 2)} MB)" if isinstance(size, int | float) else "",
        ]
    )


def kind_panel(run: dict, variant: dict | None) -> list:
    """What this kind of run did: a measure run's figures and latency per runtime, a prune run's
    figures and its pruned model, a quantise run's runtime and source; [] for a train run."""
    kind = run.get("kind")
    result = run.get("result") if isinstance(run.get("result"), dict) else {}
    if kind == "measure":
        rows = [_row(label, fmt(result.get(key))) for key, label in MEASURE_FIGURES if key in result]
        latency = (variant or {}).get("latency") or {}
        timed = []
        for runtime, record in latency.items():
            if not isinstance(record, dict):
                continue
            if not record.get("supported", True):
                timed.append(html.Li(f"{runtime}: not timed ({record.get('reason') or 'unsupported'})"))
                continue
            batches = record.get("by_batch") or {}
            parts = [
                f"batch {batch}: {fmt(timing.get('median_ms'), 3)} ms"
                for batch, timing in batches.items()
                if isinstance(timing, dict)
            ]
            timed.append(html.Li(f"{runtime} ({record.get('precision') or '—'}): " + ", ".join(parts)))
        if not rows and not timed:
            return [html.H3("What it measured"), html.P(_waiting(run, "measured"), className="muted")]
        return [
            html.H3("What it measured"),
            html.Table(html.Tbody(rows), className="plain") if rows else None,
            html.P("Latency (median of the timed runs):", className="note") if timed else None,
            html.Ul(timed, id="run-latency") if timed else None,
        ]
    if kind == "prune":
        rows = [_row(label, fmt(result.get(key))) for key, label in PRUNE_FIGURES if key in result]
        model = (variant or {}).get("model_artefact_id")
        name = f"study-{run.get('study_id')}-{run.get('variant')}-model.pt"
        link = (
            html.P(
                [
                    "Pruned model: ",
                    html.A(
                        name, href=f"{API_PREFIX}/artefacts/{model}", download=name, id="run-pruned-model"
                    ),
                ]
            )  # fmt: skip
            if model
            else html.P(_waiting(run, "a pruned model"), className="muted")
        )
        return [
            html.H3("What it pruned"),
            html.Table(html.Tbody(rows), className="plain") if rows else None,
            link,
        ]
    if kind == "quantise":
        rows = [
            _row("format", fmt(result.get("kind"))),
            _row("evaluated on", fmt(result.get("runtime"))),
            _row("calibration batches", fmt(result.get("calibration_batches"))),
            _row("seconds", fmt(wall_seconds(run), 1)),
        ]
        return [html.H3("What it quantised"), html.Table(html.Tbody(rows), className="plain")]
    return []


def _waiting(run: dict, what: str) -> str:
    if run.get("status") in ENDED:
        return f"Nothing {what}: the run ended {run.get('status')}."
    return f"Waiting: {what} appears when the run has finished."


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


def epochs_csv(run: dict) -> tuple[str, str]:
    """(CSV, file name) of a run's epochs: study-<id>-run-<id>-epochs.csv."""
    name = f"study-{run.get('study_id')}-run-{run.get('id')}-epochs.csv"
    return rows_to_csv(_epochs(run), EPOCH_COLUMNS), name


async def _variant_of(client, run: dict) -> dict | None:
    """The run's VariantOut, read only for the kinds whose page shows it."""
    if run.get("kind") not in ("measure", "prune") or parse_id(run.get("study_id")) is None:
        return None
    try:
        body = await client.variants(run["study_id"])
    except ApiError:
        return None
    return next((v for v in body.get("items") or [] if v.get("name") == run.get("variant")), None)


def register(app: Dash, client_factory) -> None:
    @app.callback(
        Output("run-header", "children"),
        Output("run-details", "children"),
        Output({"type": "fig", "name": "epoch-curves"}, "figure"),
        Output("run-artefacts", "children"),
        Output("run-kind-panel", "children"),
        Output("run-kind-panel", "style"),
        Output("run-body", "style"),
        Output("run-data", "data"),
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
        client = client_factory(token)
        try:
            run = await client.get_run(run_id)  # 404 without a request unless an id
        except ApiError as exc:
            if exc.status == 404:
                message = not_found("run", run_id, "There is no such run: its study may have been deleted.")
            else:
                message = read_refusal(exc.status, exc.detail) or html.P(
                    f"Run: {error_text(exc.detail)}", className="error"
                )
            # not found, or refused for want of a token: nothing to poll for until the user acts
            blank = (None, {}, None, None, HIDDEN, HIDDEN, None)
            return (message, *blank, exc.status in (401, 403, 404), HIDDEN, None)
        variant = await _variant_of(client, run)
        header, details, figure, artefacts = render(run, variant)
        kind = kind_panel(run, variant)
        status = run.get("status")
        retry_style = None if status in RETRYABLE else HIDDEN
        note = DIVERGED_NOTE if status == "diverged" else None
        stored = {"id": run.get("id"), "study_id": run.get("study_id"), "epochs": _epochs(run)}
        return (
            header,
            details,
            figure,
            artefacts,
            kind,
            None if kind else HIDDEN,
            None,
            stored,
            status in ENDED,
            retry_style,
            note,
        )

    @app.callback(
        Output({"type": f"{CSV}-dl", "name": MATCH}, "data"),
        Input({"type": f"{CSV}-btn", "name": MATCH}, "n_clicks"),
        State("run-data", "data"),
        prevent_initial_call=True,
    )
    def download_epochs(n_clicks, run):
        if not n_clicks or not isinstance(run, dict):
            raise PreventUpdate
        content, name = epochs_csv(run)
        return dcc.send_string(content, name)

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
