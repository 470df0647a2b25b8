"""Dash's FastAPI backend as the dashboard serves it: HTTP callbacks only, and a 4xx (never a 500)
for requests no browser of ours sends.

Dash answers whatever it cannot handle with a 500: an unknown file under /_dash-component-suites/
(it raises while looking the file up), and a `/_dash-update-component` body that is not what its
renderer sends (missing keys, another callback's inputs, a value a callback cannot take). A forged
request is the client's error; the answer says so without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dash import Dash
from dash.backends import get_backend
from dash.exceptions import DependencyException, PreventUpdate
from fastapi import Request
from fastapi.responses import JSONResponse, Response

log = logging.getLogger(__name__)

NOT_FOUND = {"detail": "Not Found"}
UNHANDLED = "the callback could not handle the values sent"


def _is_pattern(component_id: Any) -> bool:
    return isinstance(component_id, str) and component_id.startswith("{")


def _entry_problem(sent: Any, expected: dict, where: str) -> str | None:
    """Why one sent input/state does not fit the callback's declared one, or None."""
    if _is_pattern(expected["id"]):
        items = sent if isinstance(sent, list) else [sent]
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("id"), dict):
                return f"{where}: a pattern-matching entry needs dict ids"
            if item.get("property") != expected["property"]:
                return f"{where}: expected property {expected['property']!r}"
        return None
    if not isinstance(sent, dict):
        return f"{where}: expected an object with id, property and value"
    if sent.get("id") != expected["id"] or sent.get("property") != expected["property"]:
        return f"{where}: expected {expected['id']}.{expected['property']}"
    return None


def callback_body_problem(body: Any, callback_map: dict[str, dict]) -> str | None:
    """Why `body` is not a callback request the renderer could have sent, or None when it is:
    an object naming a registered callback, with that callback's inputs and state in order."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        return "'output' names no callback of this dashboard"
    callback = callback_map[output]
    if not isinstance(body.get("outputs", []), dict | list):
        return "'outputs' must be an object or a list"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(item, str) for item in changed):
        return "'changedPropIds' must be a list of strings"
    for key, declared in (("inputs", callback["inputs"]), ("state", callback["state"])):
        sent = body.get(key, [])
        if not isinstance(sent, list) or len(sent) != len(declared):
            return f"'{key}' must list the callback's {len(declared)} {key}"
        for index, (item, expected) in enumerate(zip(sent, declared, strict=True)):
            problem = _entry_problem(item, expected, f"{key}[{index}]")
            if problem:
                return problem
    return None


class HttpCallbackBackend(get_backend("fastapi")):
    """Dash's FastAPI backend without its WebSocket transport, which no callback of ours uses, and
    with 4xx answers for requests that are not the dashboard's own.

    With the WebSocket capability, Dash 4.4's page config names a WebSocket endpoint and the
    renderer opens a SharedWorker and a WebSocket to /_dash-ws-callback on every page load, used or
    not (plotly/dash#3939, fixed upstream by #3941): a connection per tab that never closes, so even
    a finished study's page never goes network-idle. Without it the config names none and callbacks
    stay HTTP."""

    websocket_capability = False

    def serve_component_suites(
        self, dash_app: Dash, package_name: str, fingerprinted_path: str, request: Request
    ) -> Response:
        # Only files Dash registered are served (its own check); anything else is a 404, not the
        # 500 its middleware makes of the DependencyException / KeyError / missing resource.
        try:
            response = super().serve_component_suites(dash_app, package_name, fingerprinted_path, request)
        except (DependencyException, KeyError, OSError, ValueError):
            return JSONResponse(NOT_FOUND, status_code=404)
        if response.status_code == 200 and not response.body:
            return JSONResponse(NOT_FOUND, status_code=404)
        return response

    def serve_callback(self, dash_app: Dash) -> Callable[[Request], Any]:
        dispatch = super().serve_callback(dash_app)

        async def checked_dispatch(request: Request) -> Any:
            body = self.request_adapter().get_json()
            problem = callback_body_problem(body, dash_app.callback_map)
            if problem is not None:
                return JSONResponse({"detail": f"not a callback request of this dashboard: {problem}"}, 400)
            try:
                return await dispatch(request)
            except PreventUpdate:
                raise  # Dash's middleware answers 204: nothing to update
            except Exception:  # noqa: BLE001 - a value the renderer never sends; logged in full here
                log.warning("callback %s failed on the values sent", body["output"], exc_info=True)
                return JSONResponse({"detail": UNHANDLED}, status_code=400)

        return checked_dispatch
