"""The top bar's "API token" control: each user's own token, kept in their browser.

In team mode (`PRUNESCAPE_AUTH=writes`, or `1`) every write needs a bearer token made by `prunescape
token create NAME`; with `PRUNESCAPE_AUTH=all` every read does too. The dashboard has none of its
own: the user pastes theirs here, it is kept in the browser's local storage
(`dcc.Store(storage_type="local")`, id `api-token`), and the pages send it with that user's reads
and writes (a reader with a token also sees a failed run's full error; without one, tracebacks and
server paths are left out). It is never written into the page: the control says whether a token is
set, not what it is.
"""

from __future__ import annotations

from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from frontend.api_client import ApiError
from frontend.pages.messages import error_text

STORE_ID = "api-token"
TOKEN_COMMAND = "prunescape token create NAME"


def store() -> dcc.Store:
    return dcc.Store(id=STORE_ID, storage_type="local")


def control() -> html.Div:
    return html.Div(
        [
            html.Label("API token", htmlFor="token-input"),
            dcc.Input(
                id="token-input",
                type="password",
                placeholder="paste your token",
                autoComplete="off",
                debounce=False,
                n_submit=0,
            ),
            html.Button("save", id="token-save", className="small"),
            html.Button("forget", id="token-forget", className="small"),
            html.Span(id="token-status", className="token-status"),
        ],
        className="token-box",
        title=(
            "Needed for writes when the server requires tokens (and for reads when it requires them "
            f"for everything); create one with '{TOKEN_COMMAND}'."
        ),
    )


def clean_token(text: Any) -> tuple[str | None, str | None]:
    """(token, problem): the pasted text without surrounding blanks, or why it cannot be a token."""
    token = str(text or "").strip()
    if not token:
        return None, "paste a token first"
    if any(ch.isspace() for ch in token) or not token.isprintable():
        return None, "a token is one word, without spaces"
    return token, None


REJECTED_TOKEN = "unknown or revoked token"  # the API's 403 detail for a token it does not accept


def token_rejected(exc: ApiError) -> bool:
    """A 403 for the token itself (not a refusal of one action, e.g. someone else's study)."""
    return exc.status == 403 and str(exc.detail).startswith(REJECTED_TOKEN)


def refused_message(exc: ApiError, action: str = "for writes") -> list | None:
    """What to tell the user when a request was refused for want of a (valid) token; None otherwise.
    `action` completes "This server requires an API token ..." ("for writes", "to read")."""
    if exc.status == 401:
        return [
            f"This server requires an API token {action}: create one with ",
            html.Code(TOKEN_COMMAND),
            " and paste it in the top bar.",
        ]
    if token_rejected(exc):
        return [
            "Token rejected: the server does not know the token in the top bar, or it was revoked. "
            "Paste a valid one (",
            html.Code(TOKEN_COMMAND),
            ").",
        ]
    return None


def read_refusal(status: int, detail: Any) -> html.P | None:
    """The page's message when the API refused to show it for want of a (valid) token, or None:
    the server requires a token to read (401), or does not take the one in the top bar (403)."""
    refused = refused_message(ApiError(status, detail, ""), action="to read")
    return html.P(refused, className="error read-refused") if refused is not None else None


def refusal(prefix: str, exc: ApiError) -> html.Span:
    """A refused write for people: '<prefix>. ' and the token message for 401/403, else
    '<prefix>: ' and the API's own reason (a 409's detail, a 404, an unreachable API)."""
    refused = refused_message(exc)
    if refused is not None:
        return html.Span([f"{prefix}. ", *refused], className="error")
    return html.Span(f"{prefix}: {error_text(exc.detail)}", className="error")


AUTH_WORDS = {
    "off": "auth off: no token needed",
    "writes": "no token: reads only",
    "all": "no token: this server needs one to read",
}


def token_status(token: Any, mode: str | None) -> str:
    """What the top bar says: whether a token is set, and without one, what the server's auth mode
    (GET /auth) lets this browser do; an unknown mode says only that no token is set."""
    if token:
        return "token set" + (" (auth off: not needed)" if mode == "off" else "")
    return AUTH_WORDS.get(mode or "", "no token")


def register(app: Dash, client_factory=None) -> None:
    @app.callback(
        Output(STORE_ID, "data"),
        Output("token-input", "value"),
        Output("token-status", "children", allow_duplicate=True),
        Input("token-save", "n_clicks"),
        Input("token-input", "n_submit"),
        Input("token-forget", "n_clicks"),
        State("token-input", "value"),
        prevent_initial_call=True,
    )
    def save_or_forget(_save, _submit, _forget, pasted):
        if not ctx.triggered or not ctx.triggered[0]["value"]:
            raise PreventUpdate
        if ctx.triggered_id == "token-forget":
            return None, "", no_update  # show_status follows the store
        token, problem = clean_token(pasted)
        if problem:
            return no_update, "", problem
        return token, "", no_update

    @app.callback(
        Output("token-status", "children"),
        Input(STORE_ID, "modified_timestamp"),
        State(STORE_ID, "data"),
    )
    async def show_status(_modified, token):
        mode = None
        if client_factory is not None:
            try:
                mode = (await client_factory(None).auth_mode()).get("mode")
            except ApiError:
                mode = None  # an API that cannot say: claim nothing about it
        return token_status(token, mode)
