"""The dashboard against a server with auth on (team mode): each browser user reads and writes with
the token they paste into the top bar, kept in the browser's local storage and never shown in the
page. Without a token a failed run's traceback and server paths are not shown; with
PRUNESCAPE_AUTH=all the pages say a token is needed to read them."""

from __future__ import annotations

import re

import httpx
import pytest

from backend.db.session import dispose_engines, session_scope
from backend.services.tokens import create_token, revoke_token
from backend.settings import Settings
from tests.frontend.live import live_server
from tests.frontend.worker_standin import claim_run, end_run

API = "/api/v1"


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("prunescape-team")
    with live_server(data_dir, auth=True) as base:
        # tokens as `prunescape token create NAME` makes them, in the server's own database
        settings = Settings(data_dir=data_dir)
        with session_scope(settings) as session:
            alice = create_token(session, "alice")
            revoked = create_token(session, "mallory")
            revoke_token(session, "mallory")
        dispose_engines()
        yield {
            "url": base,
            "alice": alice,
            "revoked": revoked,
            "log": data_dir / "server.log",
            "db": data_dir / "prunescape.db",
        }


def _studies(url: str) -> int:
    return httpx.get(f"{url}{API}/studies", timeout=30).json()["total"]


def _paste_token(page, token: str) -> None:
    page.fill("#token-input", token)
    page.click("#token-save")
    # "token set" may already show for the previous token: wait until this one is the stored one
    # (the save callback empties the input in the same response that stores the token)
    page.wait_for_function(
        """(t) => document.querySelector('#token-input').value === ''
                  && (localStorage.getItem('api-token') || '').includes(t)""",
        arg=token,
    )
    page.locator("#token-status", has_text="token set").wait_for()


def _submit_error(page) -> str:
    """Text of the form's general error line, once it has some."""
    page.wait_for_function(
        """() => { const e = [...document.querySelectorAll('.error')].find(d => d.id.includes('"field":"_"'));
                  return e && e.innerText.length > 0; }"""
    )
    return page.locator('.error[id*=\'"field":"_"\']').inner_text()


@pytest.mark.slow
@pytest.mark.browser
def test_new_study_needs_the_users_token(team, page):
    url, alice, revoked = team["url"], team["alice"], team["revoked"]
    page.goto(url + "/new")
    page.locator("#token-status", has_text="no token").wait_for()
    page.fill("#new-name", "team study")
    # the plan preview is a dry run: it works without a token
    page.wait_for_selector("text=This will plan 21 runs")

    page.click("#new-submit")
    message = _submit_error(page)
    assert "requires an API token for writes" in message
    assert "prunescape token create NAME" in message and "top bar" in message
    assert page.url.endswith("/new") and _studies(url) == 0

    _paste_token(page, revoked)
    page.click("#new-submit")
    page.wait_for_function(
        """() => [...document.querySelectorAll('.error')].some(d => d.innerText.includes('Token rejected'))"""
    )
    assert page.url.endswith("/new") and _studies(url) == 0

    _paste_token(page, alice)
    assert page.input_value("#token-input") == ""  # the box is emptied once the token is kept
    page.click("#new-submit")
    page.wait_for_url(re.compile(r".*/studies/\d+$"))
    study_id = page.url.rsplit("/", 1)[1]
    study = httpx.get(f"{url}{API}/studies/{study_id}", timeout=30).json()
    assert study["name"] == "team study" and study["created_by"] == "alice"
    assert _studies(url) == 1
    page.locator("#study-header", has_text="team study").wait_for()

    # kept in this browser's local storage across reloads, never written into the page or the log
    assert page.evaluate("JSON.parse(localStorage.getItem('api-token'))") == alice
    page.reload()
    page.locator("#token-status", has_text="token set").wait_for()
    for secret in (alice, revoked):
        assert secret not in page.content()
        assert secret not in team["log"].read_text()
    page.click("#token-forget")
    page.locator("#token-status", has_text="no token").wait_for()
    assert page.evaluate("localStorage.getItem('api-token')") in (None, "null")
    assert not page.errors


def _finish_base_runs(db_path, study_id: int) -> None:
    """Stand in for the workers: every base train run succeeded, the best at the grid's corner
    (i = j = 1), so the analysis proposes extending the grid there."""
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        runs = conn.execute(
            "select id, grid_i, grid_j from runs where study_id = ? and kind = 'train'", (study_id,)
        ).fetchall()
        for run_id, i, j in runs:
            conn.execute(
                "update runs set status = 'succeeded', top1 = ?, epochs_done = 1, attempts = 1, "
                "finished_at = CURRENT_TIMESTAMP where id = ?",
                (80.0 + 3 * (i + j), run_id),
            )


@pytest.mark.slow
@pytest.mark.browser
def test_extending_a_study_needs_the_token_too(team, page):
    """Every write of the dashboard sends the user's token, not only the form: extending a study."""
    spec = {
        "name": "extend me",
        "dataset": {"name": "digits"},
        "model": {"name": "digits_cnn"},
        "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
        "variants": [{"name": "base", "kind": "base"}],
    }
    created = httpx.post(
        f"{team['url']}{API}/studies",
        json=spec,
        headers={"Authorization": f"Bearer {team['alice']}"},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    _finish_base_runs(team["db"], study_id)

    def total_runs() -> int:
        return httpx.get(f"{team['url']}{API}/studies/{study_id}", timeout=30).json()["progress"]["total"]

    before = total_runs()
    page.on("dialog", lambda dialog: dialog.accept())  # "Extend study ...?": yes
    page.goto(f"{team['url']}/studies/{study_id}")
    page.locator("#study-extension", has_text="Proposed").wait_for()
    page.click("#study-extend")
    page.locator("#study-extend-result", has_text="requires an API token for writes").wait_for()
    assert total_runs() == before
    _paste_token(page, team["alice"])
    page.click("#study-extend")
    # not has_text="Extended" alone: Playwright matches it case-blind inside "Not extended"
    page.locator("#study-extend-result .ok", has_text="Extended").wait_for()
    assert total_runs() > before
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_cancelling_a_study_needs_the_token(team, page):
    url = team["url"]
    spec = {
        "name": "cancel needs a token",
        "dataset": {"name": "digits"},
        "model": {"name": "digits_cnn"},
        "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
        "variants": [{"name": "base", "kind": "base"}],
    }
    created = httpx.post(
        f"{url}{API}/studies", json=spec, headers={"Authorization": f"Bearer {team['alice']}"}, timeout=60
    )
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    claim_run(team["db"], study_id)

    def status() -> str:
        return httpx.get(f"{url}{API}/studies/{study_id}", timeout=30).json()["status"]

    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{url}/studies/{study_id}")
    page.locator("#study-header .status", has_text="running").wait_for()
    result = page.locator("#study-action-result")
    page.click("#study-cancel")
    result.locator(".error", has_text="requires an API token for writes").wait_for()
    assert (
        result.inner_text().startswith("Not cancelled.")
        and "prunescape token create NAME" in result.inner_text()
    )
    assert status() == "running"
    assert page.locator("#study-cancel").is_visible()

    _paste_token(page, team["revoked"])
    page.click("#study-cancel")
    result.locator(".error", has_text="Token rejected").wait_for()
    assert status() == "running"

    _paste_token(page, team["alice"])
    page.click("#study-cancel")
    result.locator(".ok", has_text="waiting runs cancelled").wait_for()
    page.locator("#study-header .status", has_text="cancelled").wait_for()
    assert status() == "cancelled"
    assert not page.errors


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/prunescape/workers/tasks.py", line 88, in execute\n'
    "    result = _run_job(inp, db, run_id, beat)\n"
    "FileNotFoundError: [Errno 2] No such file or directory: '/srv/data/cifar10/data_batch_1'\n"
)


@pytest.mark.slow
@pytest.mark.browser
def test_a_failed_runs_traceback_is_shown_only_to_token_holders(team, page):
    created = httpx.post(
        f"{team['url']}{API}/studies",
        json={
            "name": "a failing run",
            "dataset": {"name": "digits"},
            "model": {"name": "digits_cnn"},
            "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
            "variants": [{"name": "base", "kind": "base"}],
        },
        headers={"Authorization": f"Bearer {team['alice']}"},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    run_id = claim_run(team["db"], created.json()["id"])
    end_run(team["db"], run_id, "failed", TRACEBACK)
    page.goto(f"{team['url']}/runs/{run_id}")
    details = page.locator("#run-details pre.error")
    details.wait_for()
    shown = details.inner_text()
    assert "FileNotFoundError: [Errno 2] No such file or directory" in shown
    assert "Traceback" not in shown and "/srv" not in shown and "tasks.py" not in shown
    assert "send an API token to see the full error" in shown
    _paste_token(page, team["alice"])
    page.locator("#run-details pre.error", has_text="Traceback (most recent call last)").wait_for()
    assert "/srv/data/cifar10/data_batch_1" in page.locator("#run-details pre.error").inner_text()
    assert not page.errors


@pytest.fixture(scope="module")
def readers_need_tokens(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("prunescape-all")
    with live_server(data_dir, auth="all") as base:
        settings = Settings(data_dir=data_dir)
        with session_scope(settings) as session:
            alice = create_token(session, "alice")
        dispose_engines()
        created = httpx.post(
            f"{base}{API}/studies",
            json={
                "name": "private study",
                "dataset": {"name": "digits"},
                "model": {"name": "digits_cnn"},
                "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
                "variants": [{"name": "base", "kind": "base"}],
            },
            headers={"Authorization": f"Bearer {alice}"},
            timeout=60,
        )
        assert created.status_code == 201, created.text
        yield {"url": base, "alice": alice, "study_id": created.json()["id"]}


@pytest.mark.slow
@pytest.mark.browser
def test_under_auth_all_the_pages_ask_for_a_token_to_read(readers_need_tokens, page):
    url, alice, study_id = (
        readers_need_tokens["url"],
        readers_need_tokens["alice"],
        readers_need_tokens["study_id"],
    )
    page.goto(url + "/")
    refused = page.locator("#studies-table .read-refused")
    refused.wait_for()
    assert "This server requires an API token to read" in refused.inner_text()
    assert "prunescape token create NAME" in refused.inner_text() and "top bar" in refused.inner_text()
    assert "private study" not in page.content()
    # pasting the token loads the page without a reload
    _paste_token(page, alice)
    page.locator("#studies-list", has_text="private study").wait_for()
    page.goto(f"{url}/studies/{study_id}")
    page.locator("#study-header", has_text="private study").wait_for()
    page.click("#token-forget")
    page.locator("#study-header .read-refused", has_text="requires an API token to read").wait_for()
    page.goto(f"{url}/runs/1")
    page.locator("#run-header .read-refused", has_text="requires an API token to read").wait_for()
    assert not page.errors
