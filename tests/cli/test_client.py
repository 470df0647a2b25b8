"""`prunescape submit | studies | status | cancel | extend | export` against a real served study:
the real app under uvicorn on a free port, runs ended by a stand-in worker through the real
lifecycle functions. The client runs in-process through `backend.cli.main.main` (capsys), and as
a real subprocess where the entry point itself is the thing under test."""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from backend.cli.main import main
from tests.cli.live import serve_in_thread
from tests.cli.standin import StandinWorker, top1_at

API = "/api/v1"
REPO = Path(__file__).resolve().parents[2]
SPEC = {
    "name": "cli digits",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 1, "batch_size": 64},
    "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
    "repeats": 1,
    "variants": [{"name": "base", "kind": "base"}, {"name": "q8", "kind": "int8", "source": "base"}],
}


def _spec_file(tmp_path: Path, **changes) -> Path:
    spec = copy.deepcopy(SPEC)
    spec.update(changes)
    path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.json"
    path.write_text(json.dumps(spec))
    return path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `prunescape ARGV` in-process; returns (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _api(server, path: str, **params) -> dict:
    response = httpx.get(f"{server.url}{API}{path}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _create(server, **changes) -> dict:
    spec = copy.deepcopy(SPEC)
    spec.update(changes)
    response = httpx.post(f"{server.url}{API}/studies", json=spec, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def _finished(server, study_id: int) -> dict:
    """Every run of the study ended by the stand-in worker; returns the study as the API shows it."""
    StandinWorker(str(server.settings.database_url), study_id=study_id).run_now()
    study = _api(server, f"/studies/{study_id}")
    assert study["status"] == "succeeded"
    return study


# --- submit, status ---------------------------------------------------------------------------------
def test_submit_then_status_shows_the_runs_by_status(server, tmp_path, capsys):
    code, out, err = _cli(capsys, "submit", str(_spec_file(tmp_path)), "--server", server.url)
    assert (code, err) == (0, "")
    assert "study 1 'cli digits' submitted: 20 runs" in out
    stored = _api(server, "/studies/1")
    assert stored["name"] == "cli digits" and stored["progress"]["total"] == 20

    code, out, _ = _cli(capsys, "status", "1", "--server", server.url)
    assert code == 0
    assert "study 1 'cli digits' (native): pending" in out
    assert "model digits_cnn; dataset digits; variants base, q8" in out
    assert "runs: 0 of 20 finished" in out
    lines = out.splitlines()
    # ended and active runs apart: the 9 base train runs wait; the base measure run, the 9 int8
    # runs and q8's measure run are blocked on them
    ended, active = lines.index("  ended:"), lines.index("  active:")
    assert ended < active
    assert [line.split() for line in lines[ended + 1 : active]] == [
        ["succeeded", "0"],
        ["failed", "0"],
        ["diverged", "0"],
        ["cancelled", "0"],
    ]
    assert dict(line.split() for line in lines[active + 1 :]) == {
        "running": "0",
        "queued": "0",
        "pending": str(stored["progress"]["pending"]),
        "blocked": str(stored["progress"]["blocked"]),
    }
    assert (stored["progress"]["pending"], stored["progress"]["blocked"]) == (9, 11)

    code, out, _ = _cli(capsys, "status", "1", "--json", "--server", server.url)
    assert code == 0 and json.loads(out)["progress"] == stored["progress"]


def test_status_after_a_failure_counts_failed_and_cancelled_apart(server, capsys):
    study = _create(server)
    StandinWorker(str(server.settings.database_url), study_id=study["id"], fail_first_base_run=True).run_now()
    progress = _api(server, f"/studies/{study['id']}")["progress"]
    assert progress["failed"] == 1 and progress["cancelled"] >= 1  # the failed run's int8 run

    code, out, _ = _cli(capsys, "status", str(study["id"]), "--server", server.url)
    assert code == 0
    assert "(native): failed" in out
    counts = {
        parts[0]: int(parts[1]) for parts in (line.split() for line in out.splitlines()) if len(parts) == 2
    }
    assert counts["failed"] == 1 and counts["cancelled"] == progress["cancelled"]
    assert counts["succeeded"] == progress["succeeded"] == 20 - 1 - progress["cancelled"]
    assert "runs: 20 of 20 finished" in out


def test_submit_wait_shows_progress_and_ends_when_the_study_succeeded(server, tmp_path, capsys):
    worker = StandinWorker(str(server.settings.database_url), delay_s=0.02).start()
    code, out, err = _cli(
        capsys,
        "submit",
        str(_spec_file(tmp_path)),
        "--wait",
        "--json",
        "--interval",
        "0.05",
        "--server",
        server.url,
    )
    worker.join()
    assert code == 0, err
    final = json.loads(out)  # stdout holds only the final study
    assert final["status"] == "succeeded"
    assert final["progress"]["finished"] == final["progress"]["total"] == 20
    assert len(worker.ended) == 20
    assert "study 1 submitted; waiting for its runs" in err
    assert "20/20" in err  # the bar's last state: runs finished / total
    assert "0/20" in err  # ... and where it started


def test_submit_wait_exits_1_when_the_study_failed(server, tmp_path, capsys):
    worker = StandinWorker(str(server.settings.database_url), fail_first_base_run=True).start()
    code, out, err = _cli(
        capsys, "submit", str(_spec_file(tmp_path)), "--wait", "--interval", "0.05", "--server", server.url
    )
    worker.join()
    assert code == 1, err
    assert "study 1 'cli digits' (native): failed" in out
    assert "runs: 20 of 20 finished" in out


def _study_appears(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{url}{API}/studies", timeout=30).json()["total"] == 0:
        assert time.monotonic() < deadline, "the client never submitted"
        time.sleep(0.05)


def test_submit_wait_rides_out_a_server_restart(server_settings, tmp_path, capsys):
    port = _closed_port()
    first = serve_in_thread(server_settings, port=port)
    url = first.__enter__().url
    client_done = threading.Event()
    problems: list[BaseException] = []

    def restart_then_work() -> None:
        try:
            _study_appears(url)
            time.sleep(0.3)
            first.__exit__(None, None, None)  # the server goes away while the client waits
            time.sleep(1.0)
            with serve_in_thread(server_settings, port=port):
                StandinWorker(str(server_settings.database_url), study_id=1).run_now()
                client_done.wait(60)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test below
            problems.append(exc)

    operator = threading.Thread(target=restart_then_work)
    operator.start()
    try:
        code, out, err = _cli(
            capsys,
            "submit",
            str(_spec_file(tmp_path)),
            "--wait",
            "--json",
            "--interval",
            "0.1",
            "--server",
            url,
        )
    finally:
        client_done.set()
        operator.join(60)
    assert not problems, problems
    assert code == 0, err
    assert "the server is not answering, still trying" in err
    assert json.loads(out)["status"] == "succeeded"


def test_submit_wait_gives_up_on_a_server_gone_for_good(server_settings, tmp_path, capsys, monkeypatch):
    import backend.cli.client as client

    monkeypatch.setattr(client, "WAIT_OUTAGE_S", 1.0)
    first = serve_in_thread(server_settings)
    url = first.__enter__().url

    def stop_once_submitted() -> None:
        _study_appears(url)
        first.__exit__(None, None, None)

    stopper = threading.Thread(target=stop_once_submitted)
    stopper.start()
    try:
        code, out, err = _cli(
            capsys, "submit", str(_spec_file(tmp_path)), "--wait", "--interval", "0.1", "--server", url
        )
    finally:
        stopper.join(60)
        first.__exit__(None, None, None)
    assert code == 3 and out == ""
    assert f"cannot reach the server at {url}" in err.splitlines()[-1]


# --- studies -------------------------------------------------------------------------------------------
def test_studies_table_pages_and_filters(server, capsys):
    ids = [_create(server, name=f"study {k}")["id"] for k in range(3)]
    _finished(server, ids[0])

    code, out, _ = _cli(capsys, "studies", "--server", server.url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "PROGRESS", "CREATED"]
    rows = [line.split() for line in lines[1:-1]]
    # newest first; id, name (two words here), status, finished/total, created date and time
    assert [(r[0], r[1] + " " + r[2], r[3], r[4]) for r in rows] == [
        ("3", "study 2", "pending", "0/20"),
        ("2", "study 1", "pending", "0/20"),
        ("1", "study 0", "succeeded", "20/20"),
    ]
    assert all(r[7] == "UTC" for r in rows)
    assert lines[-1] == "3 of 3 studies"

    code, out, _ = _cli(capsys, "studies", "--limit", "2", "--server", server.url)
    assert code == 0
    assert out.splitlines()[-1] == "2 of 3 studies; --offset 2 for more"
    code, out, _ = _cli(capsys, "studies", "--limit", "2", "--offset", "2", "--server", server.url)
    assert out.splitlines()[1].split()[0] == "1"
    assert out.splitlines()[-1] == "1 of 3 studies (from offset 2)"

    code, out, _ = _cli(capsys, "studies", "--status", "succeeded", "--json", "--server", server.url)
    page = json.loads(out)
    assert code == 0 and page["total"] == 1 and [s["id"] for s in page["items"]] == [1]


def test_studies_with_a_limit_the_api_refuses_prints_its_message(server, capsys):
    code, out, err = _cli(capsys, "studies", "--limit", "500", "--server", server.url)
    assert code == 1 and out == ""
    assert "HTTP 422" in err
    assert "  limit: Input should be less than or equal to 200" in err.splitlines()
    code, _, err = _cli(capsys, "studies", "--status", "sleeping", "--server", server.url)
    assert code == 1 and "status: Input should be" in err


# --- cancel, extend -----------------------------------------------------------------------------------
def test_cancel_stops_a_study(server, capsys):
    study = _create(server)
    code, out, err = _cli(capsys, "cancel", str(study["id"]), "--server", server.url)
    assert (code, err) == (0, "")
    assert out.strip() == (
        f"study {study['id']}: 20 run(s) that had not started cancelled, "
        "0 running run(s) asked to stop at their next epoch; status cancelled"
    )
    after = _api(server, f"/studies/{study['id']}")
    assert after["status"] == "cancelled" and after["progress"]["cancelled"] == 20

    code, _, err = _cli(capsys, "cancel", "999", "--server", server.url)
    assert code == 1 and "study 999 not found" in err


def test_extend_with_the_analysis_proposal_and_with_explicit_sides(server, capsys):
    study = _create(server)
    # nothing finished yet: the API has no analysis to propose from, and says so
    code, _, err = _cli(capsys, "extend", str(study["id"]), "--server", server.url)
    assert code == 1 and "HTTP 409" in err

    _finished(server, study["id"])
    # top-1 rises towards (high lr, high wd), so the 1.0-ROI touches those two edges
    code, out, err = _cli(capsys, "extend", str(study["id"]), "--json", "--server", server.url)
    assert code == 0, err
    proposal = json.loads(out)
    assert proposal["lr_range"] == [-1, 2] and proposal["wd_range"] == [-1, 2]
    assert proposal["added_points"] == 16 - 9 and proposal["added_runs"] > 0
    after = _api(server, f"/studies/{study['id']}")
    assert after["progress"]["total"] == 20 + proposal["added_runs"]
    assert after["status"] == "running"  # the new runs wait; the old ones are done

    code, out, err = _cli(
        capsys, "extend", str(study["id"]), "--lr-low", "1", "--wd-low", "2", "--server", server.url
    )
    assert code == 0, err
    after = _api(server, f"/studies/{study['id']}")
    assert after["spec"]["grid"]["lr_range"] == [-2, 2] and after["spec"]["grid"]["wd_range"] == [-3, 2]
    # 5 x 6 grid now, 4 x 4 before
    assert out.startswith(f"study {study['id']} extended: 14 new grid point(s), ")
    assert "(5 values)" in out and "(6 values)" in out

    code, _, err = _cli(capsys, "extend", str(study["id"]), "--lr-high", "99", "--server", server.url)
    assert code == 1 and "lr_high: Input should be less than or equal to 40" in err


# --- export --------------------------------------------------------------------------------------------
def test_export_csv_and_json_to_files_and_stdout(server, tmp_path, capsys):
    study = _finished(server, _create(server)["id"])
    sid = str(study["id"])

    target = tmp_path / "results.csv"
    code, out, err = _cli(capsys, "export", sid, "--format", "csv", "-o", str(target), "--server", server.url)
    assert code == 0 and out == ""
    assert f"to {target}" in err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 18  # one row per train / quantise run (measure runs have no grid point)
    base = [r for r in rows if r["variant"] == "base" and r["kind"] == "train"]
    assert len(base) == 9
    assert {float(r["top1"]) for r in base} == {top1_at(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)}

    target = tmp_path / "results.json"
    code, _, _ = _cli(capsys, "export", sid, "--format", "json", "-o", str(target), "--server", server.url)
    exported = json.loads(target.read_text())
    assert code == 0 and exported["study"]["id"] == study["id"] and len(exported["rows"]) == 18

    code, out, _ = _cli(capsys, "export", sid, "--server", server.url)  # csv to stdout by default
    assert code == 0 and out == (tmp_path / "results.csv").read_text()
    assert not list(tmp_path.glob(".*.part"))  # no temporary file left beside the exports


def test_export_of_an_unknown_study_leaves_the_file_alone(server, tmp_path, capsys):
    target = tmp_path / "keep.csv"
    target.write_text("old contents\n")
    code, _, err = _cli(capsys, "export", "42", "-o", str(target), "--server", server.url)
    assert code == 1 and "study 42 not found" in err
    assert target.read_text() == "old contents\n"
    code, _, err = _cli(capsys, "export", "1", "-o", str(tmp_path / "no" / "x.csv"), "--server", server.url)
    assert code == 2 and "does not exist" in err


# --- bad input -------------------------------------------------------------------------------------------
def test_a_bad_spec_prints_the_field_messages_and_stores_nothing(server, tmp_path, capsys):
    spec = _spec_file(tmp_path, grid={"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 4}, repeats=0)
    code, out, err = _cli(capsys, "submit", str(spec), "--server", server.url)
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "prunescape submit: the server refused (HTTP 422):"
    assert any(line.startswith("  grid.size: ") and "size must be odd" in line for line in lines)
    assert any(line.startswith("  repeats: ") for line in lines)
    assert "Traceback" not in err
    assert _api(server, "/studies")["total"] == 0


def test_a_spec_file_that_is_not_json_is_a_usage_error(server, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",\n  "grid": }')
    code, _, err = _cli(capsys, "submit", str(broken), "--server", server.url)
    assert code == 2
    assert f"spec file {broken} is not JSON: Expecting value at line 2 column 11" in err
    code, _, err = _cli(capsys, "submit", str(tmp_path / "missing.json"), "--server", server.url)
    assert code == 2 and "does not exist" in err
    assert _api(server, "/studies")["total"] == 0


# --- auth ----------------------------------------------------------------------------------------------
def test_auth_refuses_writes_without_a_valid_token_and_reads_stay_open(
    team_server, tmp_path, capsys, monkeypatch
):
    url, spec = team_server.url, str(_spec_file(tmp_path))
    monkeypatch.delenv("PRUNESCAPE_TOKEN", raising=False)

    code, out, err = _cli(capsys, "submit", spec, "--server", url)
    assert code == 1 and out == ""
    assert "HTTP 401" in err and "missing Authorization header" in err and "--token" in err

    for refused in (team_server.revoked, "psk_not_a_token_of_this_server"):
        code, out, err = _cli(capsys, "submit", spec, "--server", url, "--token", refused)
        assert code == 1 and out == ""
        assert "HTTP 403" in err and "unknown or revoked token" in err
        assert refused not in err

    monkeypatch.setenv("PRUNESCAPE_TOKEN", team_server.token)
    code, out, err = _cli(capsys, "submit", spec, "--json", "--server", url)
    assert code == 0, err
    assert json.loads(out)["created_by"] == "alice"
    assert team_server.token not in out + err

    monkeypatch.delenv("PRUNESCAPE_TOKEN")
    code, out, _ = _cli(capsys, "studies", "--server", url)  # a read needs no token
    assert code == 0 and out.splitlines()[-1] == "1 of 1 studies"
    code, out, _ = _cli(capsys, "status", "1", "--server", url)
    assert code == 0 and "pending" in out
    code, _, err = _cli(capsys, "cancel", "1", "--server", url)
    assert code == 1 and "HTTP 401" in err
    assert _api(team_server, "/studies/1")["status"] == "pending"


def test_a_token_that_cannot_be_a_header_is_refused_without_showing_it(server, capsys):
    secret = "psk_top secret\n"
    code, out, err = _cli(capsys, "cancel", "1", "--server", server.url, "--token", secret)
    assert code == 2 and out == ""
    assert "is not a token" in err and "top secret" not in err


# --- server -------------------------------------------------------------------------------------------------
def test_an_unreachable_server_is_named_with_exit_3(capsys, monkeypatch):
    port = _closed_port()
    code, out, err = _cli(capsys, "studies", "--server", f"127.0.0.1:{port}")
    assert code == 3 and out == ""
    assert err.startswith(f"prunescape studies: error: cannot reach the server at http://127.0.0.1:{port} ")
    assert "Traceback" not in err

    monkeypatch.setenv("PRUNESCAPE_SERVER", f"http://127.0.0.1:{port}/api/v1/")
    code, _, err = _cli(capsys, "status", "1")
    assert code == 3 and f"http://127.0.0.1:{port} " in err

    code, _, err = _cli(capsys, "status", "1", "--server", "ftp://example.org")
    assert code == 2 and "must be an http(s) URL" in err


def test_server_from_the_environment(server, capsys, monkeypatch):
    _create(server)
    monkeypatch.setenv("PRUNESCAPE_SERVER", server.url + "/")
    code, out, _ = _cli(capsys, "status", "1", "--json")
    assert code == 0 and json.loads(out)["id"] == 1


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


# --- the entry point as a real process -------------------------------------------------------------------
def test_entry_point_submit_wait_then_ctrl_c_stops_waiting_and_the_study_keeps_going(server, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PRUNESCAPE_SERVER": server.url}
    env.pop("PRUNESCAPE_TOKEN", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend.cli.main",
            "submit",
            str(_spec_file(tmp_path)),
            "--wait",
            "--interval",
            "0.2",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while _api(server, "/studies")["total"] == 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the client never submitted"
            time.sleep(0.1)
        time.sleep(1.0)  # it is polling now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopped waiting: study 1 keeps running on the server" in err
    assert "Traceback" not in err and out == ""
    assert _api(server, "/studies/1")["status"] == "pending"  # not cancelled: only the waiting stopped

    finished = subprocess.run(
        [sys.executable, "-m", "backend.cli.main", "status", "1", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["progress"]["total"] == 20


# --- the pure parts: server URLs and the API's error bodies ---------------------------------------------
@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("localhost:8000", "http://localhost:8000"),
        ("http://10.0.0.5:8000/", "http://10.0.0.5:8000"),
        ("http://10.0.0.5:8000/api/v1/", "http://10.0.0.5:8000"),
        ("https://example.org/prunescape/api/v1", "https://example.org/prunescape"),
    ],
)
def test_server_urls_are_normalised(given, used):
    from backend.cli.client import normalise_server

    assert normalise_server(given) == used


@pytest.mark.parametrize("given", ["", "   ", "ftp://example.org", "http://", "x" * 3000])
def test_server_urls_that_cannot_be_used_are_refused(given):
    from backend.cli.client import UsageError, normalise_server

    with pytest.raises(UsageError, match="--server"):
        normalise_server(given)


def test_a_password_in_the_server_url_is_never_printed(capsys):
    code, _, err = _cli(capsys, "studies", "--server", f"http://user:hunter2@127.0.0.1:{_closed_port()}")
    assert code == 3 and "cannot reach the server" in err and "hunter2" not in err


def test_error_bodies_become_one_line_per_field():
    from backend.cli.client import error_lines

    detail = [
        {"loc": ["body", "variants", 1, "structured", "flops_ratio"], "msg": "too big", "type": "x"},
        {"loc": ["query", "limit"], "msg": "Input should be less than or equal to 200", "type": "x"},
        {"loc": ["body"], "msg": "add at least one row", "type": "x"},
    ]
    assert error_lines(422, {"detail": detail}) == [
        "variants.1.structured.flops_ratio: too big",
        "limit: Input should be less than or equal to 200",
        "add at least one row",
    ]
    assert error_lines(404, {"detail": "study 9 not found"}) == ["study 9 not found"]
    assert error_lines(502, None) == ["the server answered HTTP 502"]  # a proxy's HTML page, say
    assert error_lines(409, {"detail": "name \x1b[2J here"}) == ["name ?[2J here"]


def test_study_names_cannot_drive_the_terminal():
    from backend.cli.client import studies_table

    page = {
        "items": [
            {
                "id": 7,
                "name": "evil\x1b]0;owned\x07" + "x" * 60,
                "status": "running",
                "progress": {"finished": 1, "total": 3},
                "created_at": "2026-11-22T13:00:05Z",
            }
        ],
        "total": 1,
        "offset": 0,
    }
    row = studies_table(page)[1]
    assert "\x1b" not in row and "\x07" not in row
    assert row.split()[:4] == ["7", "evil?]0;owned?" + "x" * 23 + "...", "running", "1/3"]
    assert row.endswith("2026-11-22 13:00 UTC")


def test_submit_reads_the_spec_from_stdin(server, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(SPEC).encode())))
    code, out, err = _cli(capsys, "submit", "-", "--json", "--server", server.url)
    assert code == 0, err
    assert json.loads(out)["name"] == "cli digits"
    assert _api(server, "/studies/1")["progress"]["total"] == 20
