"""Run errors as a reader without a token may see them: no traceback, no server path.

A failed run stores what the worker saw: a traceback (file names of the installation, the lines
that ran) and messages naming directories of the server (the artefact store, a data set's path).
That helps whoever runs the server and tells anyone else where things live. With auth on, readers
without a token get the error's own message lines with paths replaced; token holders (and
everybody when auth is off) get the stored text (`backend.api.deps.Caller.sees_details`).
"""

from __future__ import annotations

import json
import re
from typing import Any

HIDDEN_NOTE = "(traceback and server paths hidden: send an API token to see the full error)"
PATH_MARK = "<server path>"
# Absolute POSIX paths (not the // of a URL, not a fraction like 1/2) and Windows drive paths.
SERVER_PATH = re.compile(r"(?<![\w.:/~-])(?:/[^\s'\"/:,;()\[\]<>]+)+/?|\b[A-Za-z]:\\[^\s'\"]+")
TRACEBACK_HEAD = "Traceback (most recent call last):"
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


def public_error(text: str | None) -> str | None:
    """`text` without traceback frames and with every server path replaced by PATH_MARK; the
    exception lines (`FileNotFoundError: ...`) and any message before them are kept."""
    if not text:
        return text
    kept: list[str] = []
    in_frames = False
    for line in text.splitlines():
        if TRACEBACK_HEAD in line:
            line, in_frames = line.split(TRACEBACK_HEAD, 1)[0], True
            if line.strip():
                kept.append(SERVER_PATH.sub(PATH_MARK, line.rstrip()))
            continue
        if in_frames and (line.startswith((" ", "\t")) or not line.strip()):
            continue  # a frame, its source line, or a caret line
        in_frames = False
        if line.startswith(CHAINED) or not line.strip():
            continue
        kept.append(SERVER_PATH.sub(PATH_MARK, line))
    redacted = "\n".join(kept)
    return f"{redacted}\n{HIDDEN_NOTE}" if redacted != text else text


def public_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (runs, export rows) with their `error` made public."""
    return [{**row, "error": public_error(row.get("error"))} if row.get("error") else row for row in rows]


def public_runs_page(body: bytes) -> bytes:
    """A RunList JSON body with every run's error made public (as is when no run has one)."""
    if b'"error":"' not in body and b'"error": "' not in body:
        return body
    page = json.loads(body)
    page["items"] = public_rows(page.get("items") or [])
    return json.dumps(page, separators=(",", ":")).encode()
