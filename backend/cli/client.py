"""The command-line client over the REST API: `prunescape submit | studies | status | cancel |
extend | export`. It talks HTTP only (never the database), so it works against any prunescape
server: `--server` or PRUNESCAPE_SERVER (default the local `prunescape serve`), and for writes a
token from `--token` or PRUNESCAPE_TOKEN.

Exit codes, the same for every command:
    0  done (for `submit --wait`: the study succeeded)
    1  the API refused or failed the request (4xx / 5xx; its message is printed), or the study
       waited for ended failed or cancelled
    2  usage error (bad argument, unreadable spec file): nothing was sent
    3  no usable answer: the server is unreachable, timed out, or is not a prunescape API
  130  Ctrl-C (while waiting, the study keeps running on the server)

Text output goes to stdout, progress and messages to stderr; `--json` prints the API's JSON on
stdout. The token is sent with writes only and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import httpx

API_PREFIX = "/api/v1"
DEFAULT_SERVER = "http://127.0.0.1:8000"  # where `prunescape serve` listens by default
SERVER_ENV = "PRUNESCAPE_SERVER"
TOKEN_ENV = "PRUNESCAPE_TOKEN"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

MAX_SPEC_BYTES = 1024 * 1024  # a spec is a few KB; refuse to read (and send) anything huge
MAX_URL_CHARS = 2000
MAX_TOKEN_CHARS = 512
HTTP_TIMEOUT_S = 30.0
WAIT_INTERVAL_S = 2.0
WAIT_OUTAGE_S = 300.0  # how long `submit --wait` keeps polling a server that does not answer
NAME_COLUMN_MAX = 40
# Progress keys in the order a reader wants them: how runs ended, then what is still active.
ENDED_STATUSES = ("succeeded", "failed", "diverged", "cancelled")
ACTIVE_STATUSES = ("running", "queued", "pending", "blocked")


# --- errors ------------------------------------------------------------------------------------------
class UsageError(Exception):
    """A bad argument or input file, found before anything was sent (exit 2)."""


class ApiRefused(Exception):
    """The API answered with an error status (exit 1); `lines` are its messages, one per field."""

    def __init__(self, status: int, lines: list[str]) -> None:
        super().__init__(f"HTTP {status}: {'; '.join(lines)}")
        self.status = status
        self.lines = lines


class ServerUnreachable(Exception):
    """No usable answer from the server (exit 3)."""


def format_loc(loc: list[Any]) -> str:
    """`["body", "grid", "size"]` -> `grid.size`: the field as the user wrote it, without where
    in the request FastAPI found it."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    return ".".join(parts)


def error_lines(status: int, body: Any) -> list[str]:
    """The API's message(s) of an error answer: one `field: message` line per 422 field error,
    else the `detail` sentence. Falls back to the status when the body is not the API's shape."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list) and detail:
        lines = []
        for item in detail:
            if isinstance(item, dict):
                field = format_loc(item.get("loc") or [])
                message = clean(str(item.get("msg", "invalid value")))
                lines.append(f"{field}: {message}" if field else message)
            else:
                lines.append(clean(str(item)))
        return lines
    if isinstance(detail, str) and detail:
        return [clean(detail)]
    return [f"the server answered HTTP {status}"]


def clean(text: str) -> str:
    """Text from the server made safe for a terminal: control characters (escape sequences in a
    study name, say) are shown as '?' instead of being interpreted."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


# --- the HTTP side ---------------------------------------------------------------------------------------
def normalise_server(raw: str) -> str:
    """`host:8000`, `http://host:8000/`, `http://host:8000/api/v1` -> `http://host:8000`."""
    text = raw.strip()
    if not text or len(text) > MAX_URL_CHARS:
        raise UsageError(
            f"--server / {SERVER_ENV} must be an http(s) URL of at most {MAX_URL_CHARS} characters"
        )
    if "://" not in text:
        text = "http://" + text
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError):
        raise UsageError(f"--server / {SERVER_ENV} is not a URL: {clean(raw)!r}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(f"--server / {SERVER_ENV} must be an http(s) URL with a host, got {clean(raw)!r}")
    path = url.path.rstrip("/")
    path = path.removesuffix(API_PREFIX)
    return str(url.copy_with(path=path or "/", query=None, fragment=None)).rstrip("/")


def display_url(server: str) -> str:
    """The server URL as printed: without a password in it."""
    url = httpx.URL(server)
    return str(url.copy_with(password=None)) if url.password else server


def check_token(token: str | None) -> str | None:
    """A token must be one printable word; the message never echoes it (it is a secret)."""
    if token is None or token == "":
        return None
    if len(token) > MAX_TOKEN_CHARS or not all(33 <= ord(ch) < 127 for ch in token):
        raise UsageError(
            f"--token / {TOKEN_ENV} is not a token (expected one word like psk_..., "
            f"at most {MAX_TOKEN_CHARS} characters); it is not shown here"
        )
    return token


class Api:
    """A synchronous client of the REST API. Every failure becomes ApiRefused or ServerUnreachable."""

    def __init__(self, server: str, *, token: str | None = None, timeout: float = HTTP_TIMEOUT_S) -> None:
        self.server = server
        self._token = token
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=server + API_PREFIX,
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": "prunescape-cli", "Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def get_json(self, path: str, **params: Any) -> Any:
        return self._decode(self.request("GET", path, params=_drop_none(params)))

    def post_json(self, path: str, body: Any | None = None) -> Any:
        return self._decode(self.request("POST", path, json=body, write=True))

    def request(self, method: str, path: str, *, write: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {}
        if write and self._token:  # reads are open; the token travels only where it is needed
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise ServerUnreachable(
                f"the server at {display_url(self.server)} did not answer within {self._timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the server at {display_url(self.server)} ({_reason(exc)}); start it with "
                f"`prunescape serve` or point --server / {SERVER_ENV} at it"
            ) from None
        if response.is_success:
            return response
        raise self._refusal(response)

    def _refusal(self, response: httpx.Response) -> ApiRefused:
        try:
            body = response.json()
        except ValueError:
            body = None
        lines = error_lines(response.status_code, body)
        if response.status_code == 401:
            lines[-1] += f" (give a token with --token or {TOKEN_ENV})"
        elif response.status_code == 503 and response.headers.get("retry-after", "").isdigit():
            lines[-1] += f" (retry after {response.headers['retry-after']} s)"
        elif 300 <= response.status_code < 400:
            lines = [
                f"the server redirected to {clean(response.headers.get('location', '?'))}; use that --server"
            ]
        return ApiRefused(response.status_code, lines)

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ServerUnreachable(
                f"the server at {display_url(self.server)} answered without JSON; is it a prunescape server?"
            ) from None


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip() or type(exc).__name__
    return clean(text.splitlines()[0])[:200]


def _drop_none(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


# --- what the commands print ------------------------------------------------------------------------------
def progress_line(progress: dict[str, Any]) -> str:
    """`8 of 19 runs finished (5 succeeded, 1 failed, 2 cancelled)`."""
    ended = [f"{progress[s]} {s}" for s in ENDED_STATUSES if progress.get(s)]
    tail = f" ({', '.join(ended)})" if ended else ""
    return f"{progress.get('finished', 0)} of {progress.get('total', 0)} runs finished{tail}"


def study_lines(study: dict[str, Any]) -> list[str]:
    """`status ID` as text: who/what the study is, then its runs by status, ended ones apart."""
    lines = [f"study {study['id']} {clean(study['name'])!r} ({study['kind']}): {study['status']}"]
    what = []
    if study.get("model"):
        what.append(f"model {clean(study['model'])}")
    if study.get("dataset"):
        what.append(f"dataset {clean(study['dataset'])}")
    if study.get("variants"):
        what.append("variants " + ", ".join(clean(v) for v in study["variants"]))
    if what:
        lines.append("; ".join(what))
    created = f"created {short_time(study['created_at'])}"
    if study.get("created_by"):
        created += f" by {clean(study['created_by'])}"
    if study.get("finished_at"):
        created += f"; finished {short_time(study['finished_at'])}"
    lines.append(created)
    progress = study["progress"]
    lines.append(f"runs: {progress.get('finished', 0)} of {progress.get('total', 0)} finished")
    width = max(len(s) for s in (*ENDED_STATUSES, *ACTIVE_STATUSES))
    lines.append("  ended:")
    lines.extend(f"    {s:<{width}} {progress.get(s, 0):>7}" for s in ENDED_STATUSES)
    lines.append("  active:")
    lines.extend(f"    {s:<{width}} {progress.get(s, 0):>7}" for s in ACTIVE_STATUSES)
    return lines


def short_time(iso: str | None) -> str:
    """`2026-11-22T13:00:05.123+00:00` -> `2026-11-22 13:00 UTC` (the API sends UTC)."""
    if not iso:
        return "-"
    return clean(iso[:16].replace("T", " ")) + " UTC"


def studies_table(page: dict[str, Any]) -> list[str]:
    """`studies` as an aligned table and an `N of M` line."""
    header = ("ID", "NAME", "STATUS", "PROGRESS", "CREATED")
    rows = []
    for study in page["items"]:
        name = clean(study["name"])
        if len(name) > NAME_COLUMN_MAX:
            name = name[: NAME_COLUMN_MAX - 3] + "..."
        progress = study["progress"]
        rows.append(
            (
                str(study["id"]),
                name,
                study["status"],
                f"{progress.get('finished', 0)}/{progress.get('total', 0)}",
                short_time(study["created_at"]),
            )
        )
    lines = []
    if rows:
        widths = [max(len(row[k]) for row in (header, *rows)) for k in range(len(header))]
        for row in (header, *rows):
            cells = [row[0].rjust(widths[0])] + [
                cell.ljust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
    shown, total, offset = len(rows), page["total"], page["offset"]
    footer = f"{shown} of {total} studies"
    if offset:
        footer += f" (from offset {offset})"
    if offset + shown < total:
        footer += f"; --offset {offset + shown} for more"
    lines.append(footer)
    return lines


def cancel_line(result: dict[str, Any]) -> str:
    return (
        f"study {result['study_id']}: {result['cancelled']} run(s) that had not started cancelled, "
        f"{result['cancel_requested']} running run(s) asked to stop at their next epoch; "
        f"status {result['status']}"
    )


def extend_line(result: dict[str, Any]) -> str:
    lrs, wds = result["lr_values"], result["wd_values"]

    def axis(values: list[float]) -> str:
        return f"{min(values):.3g} .. {max(values):.3g} ({len(values)} values)" if values else "none"

    return (
        f"study {result['study_id']} extended: {result['added_points']} new grid point(s), "
        f"{result['added_runs']} new run(s); learning rates {axis(lrs)}, weight decays {axis(wds)}"
    )


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


# --- commands ---------------------------------------------------------------------------------------------
def read_spec(path_text: str) -> dict[str, Any]:
    """The spec file (or `-` for stdin) as a JSON object, read with a size bound."""
    try:
        if path_text == "-":
            raw = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
        else:
            path = Path(path_text)
            if path.is_dir():
                raise UsageError(f"spec {path_text} is a directory, not a JSON file")
            with path.open("rb") as handle:
                raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"spec file {path_text} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read spec file {path_text}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise UsageError(f"spec file {path_text} is larger than {MAX_SPEC_BYTES} bytes")
    try:
        spec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"spec file {path_text} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"spec file {path_text} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(spec, dict):
        raise UsageError(f"spec file {path_text} must hold a JSON object (the study spec)")
    return spec


def _submit(args: argparse.Namespace, api: Api) -> int:
    spec = read_spec(args.spec)
    study = api.post_json("/studies", spec)
    if not args.wait:
        if args.json:
            print_json(study)
        else:
            print(
                f"study {study['id']} {clean(study['name'])!r} submitted: {study['progress']['total']} runs"
            )
            print(f"follow it with `prunescape status {study['id']}`")
        return EXIT_OK
    print(f"study {study['id']} submitted; waiting for its runs (Ctrl-C stops waiting)", file=sys.stderr)
    try:
        study = wait_for(api, study, interval=args.interval)
    except KeyboardInterrupt:
        print(
            f"\nstopped waiting: study {study['id']} keeps running on the server "
            f"(`prunescape status {study['id']}`; stop it with `prunescape cancel {study['id']}`)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if args.json:
        print_json(study)
    else:
        print("\n".join(study_lines(study)))
    return EXIT_OK if study["status"] == "succeeded" else EXIT_REFUSED


def wait_for(
    api: Api,
    study: dict[str, Any],
    *,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll GET /studies/{id} until no run is active, with a progress bar (runs finished / total)
    on stderr. Returns the last study read.

    A server that stops answering for a while (restarted, database briefly down: unreachable or
    5xx) is polled on for up to WAIT_OUTAGE_S, so an hours-long wait survives a restart; a 4xx (the
    study was deleted) or a longer outage ends the wait with that error."""
    from tqdm import tqdm

    # On a terminal the bar is redrawn each poll (its clock moves); into a log file only when the
    # numbers change, or an hour-long run would write a line every poll.
    every_poll = sys.stderr.isatty()
    shown: tuple[Any, ...] | None = None
    outage_since: float | None = None
    note = ""
    with tqdm(
        total=study["progress"]["total"], unit="run", desc=f"study {study['id']}", file=sys.stderr
    ) as bar:
        while True:
            progress = study["progress"]
            state = (progress["finished"], progress["total"], study["status"], note)
            if every_poll or state != shown:
                bar.total = progress["total"]  # an extension while waiting adds runs
                bar.n = progress["finished"]
                bar.set_postfix_str(study["status"] + note, refresh=False)
                bar.refresh()
                shown = state
            if progress["finished"] >= progress["total"]:
                return study
            sleep(interval)
            try:
                study = api.get_json(f"/studies/{study['id']}")
            except (ServerUnreachable, ApiRefused) as exc:
                if isinstance(exc, ApiRefused) and exc.status < 500:
                    raise
                outage_since = clock() if outage_since is None else outage_since
                if clock() - outage_since > WAIT_OUTAGE_S:
                    raise
                note = "; the server is not answering, still trying"
            else:
                outage_since, note = None, ""


def _studies(args: argparse.Namespace, api: Api) -> int:
    page = api.get_json("/studies", limit=args.limit, offset=args.offset, status=args.status, sort=args.sort)
    if args.json:
        print_json(page)
    else:
        print("\n".join(studies_table(page)))
    return EXIT_OK


def _status(args: argparse.Namespace, api: Api) -> int:
    study = api.get_json(f"/studies/{args.id}")
    if args.json:
        print_json(study)
    else:
        print("\n".join(study_lines(study)))
    return EXIT_OK


def _cancel(args: argparse.Namespace, api: Api) -> int:
    result = api.post_json(f"/studies/{args.id}/cancel")
    if args.json:
        print_json(result)
    else:
        print(cancel_line(result))
    return EXIT_OK


EXTEND_SIDES = ("lr_low", "lr_high", "wd_low", "wd_high")


def extend_body(args: argparse.Namespace) -> dict[str, Any]:
    """Explicit sides when any side flag is given, else the analysis' own proposal."""
    sides = {side: getattr(args, side) for side in EXTEND_SIDES if getattr(args, side) is not None}
    return sides if sides else {"proposal": True}


def _extend(args: argparse.Namespace, api: Api) -> int:
    result = api.post_json(f"/studies/{args.id}/extend", extend_body(args))
    if args.json:
        print_json(result)
    else:
        print(extend_line(result))
    return EXIT_OK


def _export(args: argparse.Namespace, api: Api) -> int:
    if args.output is not None:
        check_output_path(args.output)  # before downloading anything
    response = api.request("GET", f"/studies/{args.id}/export", params={"format": args.format})
    if args.output is None:
        sys.stdout.write(response.text)
        sys.stdout.flush()
        return EXIT_OK
    with _replacing(args.output) as handle:
        handle.write(response.content)
    print(
        f"study {args.id} exported as {args.format} to {args.output} ({len(response.content)} bytes)",
        file=sys.stderr,
    )
    return EXIT_OK


def check_output_path(path: Path) -> Path:
    """The directory an export to `path` is written in; UsageError when it cannot be."""
    if path.is_dir():
        raise UsageError(f"-o {path} is a directory")
    if not path.parent.is_dir():
        raise UsageError(f"-o {path}: directory {path.parent} does not exist")
    return path.parent


@contextmanager
def _replacing(path: Path) -> Iterator[Any]:
    """Write to a temporary file beside `path`, then move it over `path`: an interrupted or failed
    export never leaves half a file, nor clobbers an existing one."""
    import tempfile

    fd, temp_name = tempfile.mkstemp(dir=check_output_path(path), prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# --- parsing and the shared error handling -------------------------------------------------------------
def _run(command: Callable[[argparse.Namespace, Api], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: build the client from the shared options and turn every expected failure
    into one line on stderr and the exit code of the module doc (never a traceback)."""

    def handler(args: argparse.Namespace) -> int:
        name = f"prunescape {args.command}"
        try:
            server = normalise_server(args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER)
            token = check_token(args.token if args.token is not None else os.environ.get(TOKEN_ENV))
            if not (0 < args.timeout <= 3600):
                raise UsageError(f"--timeout must be between 0 and 3600 seconds, got {args.timeout:g}")
            with Api(server, token=token, timeout=args.timeout) as api:
                return command(args, api)
        except UsageError as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ApiRefused as exc:
            print(f"{name}: the server refused (HTTP {exc.status}):", file=sys.stderr)
            for line in exc.lines:
                print(f"  {line}", file=sys.stderr)
            return EXIT_REFUSED
        except ServerUnreachable as exc:
            print(f"{name}: error: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE

    return handler


def _one_line_errors(parser: argparse.ArgumentParser, command: str) -> None:
    """argparse's own errors (missing / malformed arguments) as one line, exit 2."""

    def error(message: str) -> NoReturn:
        print(f"prunescape {command}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    parser.error = error  # type: ignore[method-assign]


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (0.05 <= value <= 3600):
        raise argparse.ArgumentTypeError(f"must be between 0.05 and 3600 seconds, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument(
        "--server", default=None, help=f"the prunescape server (default: ${SERVER_ENV} or {DEFAULT_SERVER})"
    )
    group.add_argument(
        "--token", default=None, help=f"API token for writes when auth is on (default: ${TOKEN_ENV})"
    )
    group.add_argument("--timeout", type=float, default=HTTP_TIMEOUT_S, help="seconds per HTTP request")

    def add(
        name: str, help_text: str, command: Callable[[argparse.Namespace, Api], int]
    ) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help_text, description=help_text, parents=[common])
        _one_line_errors(parser, name)
        parser.set_defaults(func=_run(command))
        return parser

    submit = add("submit", "submit a study spec (JSON file, or - for stdin) to the server", _submit)
    submit.add_argument("spec", metavar="SPEC.json")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="wait until no run is active; exit 0 if the study succeeded, else 1",
    )
    submit.add_argument("--interval", type=_interval, default=WAIT_INTERVAL_S, help="seconds between polls")
    submit.add_argument("--json", action="store_true", help="print the (final) study as JSON")

    studies = add("studies", "list the server's studies", _studies)
    studies.add_argument("--status", default=None, help="only studies with this status (e.g. running)")
    studies.add_argument("--limit", type=int, default=50, help="studies per page (1..200)")
    studies.add_argument("--offset", type=int, default=0, help="skip this many studies")
    studies.add_argument(
        "--sort", default=None, help="created_at, -created_at (default), name, -name, id, -id"
    )
    studies.add_argument("--json", action="store_true", help="print the API's page as JSON")

    status = add("status", "show a study and its runs by status", _status)
    status.add_argument("id", type=int, metavar="ID")
    status.add_argument("--json", action="store_true", help="print the study as JSON")

    cancel = add("cancel", "cancel a study's waiting runs and ask its running runs to stop", _cancel)
    cancel.add_argument("id", type=int, metavar="ID")
    cancel.add_argument("--json", action="store_true")

    extend = add(
        "extend",
        "widen a study's grid: where the analysis proposes (no side flags), or by the sides given",
        _extend,
    )
    extend.add_argument("id", type=int, metavar="ID")
    for side, what in zip(
        EXTEND_SIDES,
        (
            "rows below the lowest",
            "rows above the highest",
            "columns below the lowest",
            "columns above the highest",
        ),
        strict=True,
    ):
        axis = "learning rate" if side.startswith("lr") else "weight decay"
        extend.add_argument(
            f"--{side.replace('_', '-')}",
            dest=side,
            type=int,
            default=None,
            metavar="N",
            help=f"{what} {axis}",
        )
    extend.add_argument("--json", action="store_true")

    export = add("export", "download a study's results (one row per run)", _export)
    export.add_argument("id", type=int, metavar="ID")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument(
        "-o", "--output", type=Path, default=None, metavar="FILE", help="write here (default: stdout)"
    )
