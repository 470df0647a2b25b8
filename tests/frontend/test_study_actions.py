"""The dashboard's writes on the study and run pages, against a real running server: cancelling and
deleting a study, retrying a run. Each goes through the REST API; the API's answer is what we check."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.frontend.live import live_server
from tests.frontend.worker_standin import claim_run, end_run, fail_a_run, finish_study

API = "/api/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("prunescape-actions")
    with live_server(data_dir) as base:
        yield {"url": base, "db": data_dir / "prunescape.db"}


def _create(url: str, name: str, variants: list[dict] | None = None) -> dict:
    spec = {
        "name": name,
        "dataset": {"name": "digits"},
        "model": {"name": "digits_cnn"},
        "recipe": {"epochs": 1, "batch_size": 64},
        "grid": {"lr_centre": 0.1, "wd_centre": 1e-4, "step": 0.4, "size": 3},
        "variants": variants or [{"name": "base", "kind": "base"}],
    }
    created = httpx.post(f"{url}{API}/studies", json=spec, timeout=60)
    assert created.status_code == 201, created.text
    return created.json()


def _get(url: str, path: str) -> httpx.Response:
    return httpx.get(f"{url}{API}{path}", timeout=30)


def _runs(url: str, study_id: int) -> list[dict]:
    return _get(url, f"/studies/{study_id}/runs?limit=1000").json()["items"]


@pytest.mark.slow
@pytest.mark.browser
def test_cancel_a_running_study_from_its_page(server, page):
    url, db = server["url"], server["db"]
    study = _create(url, "cancel me")
    running_id = claim_run(db, study["id"])  # a worker is on one run: the study is running
    assert _get(url, f"/studies/{study['id']}").json()["status"] == "running"
    page.goto(f"{url}/studies/{study['id']}")
    page.locator("#study-header .status", has_text="running").wait_for()

    # the confirm step: dismissing it changes nothing
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#study-cancel")
    page.wait_for_timeout(1_000)
    assert _get(url, f"/studies/{study['id']}").json()["status"] == "running"

    questions: list[str] = []

    def accept(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#study-cancel")
    page.locator("#study-action-result .ok", has_text="waiting runs cancelled").wait_for()
    assert "'cancel me'" in questions[0] and "running ones stop at their next epoch" in questions[0]
    assert "1 running stop at their next epoch" in page.locator("#study-action-result").inner_text()
    page.locator("#study-header .status", has_text="cancelled").wait_for()
    page.locator("#study-cancel").wait_for(state="hidden")

    # through the API: every waiting run is cancelled, the running one is asked to stop
    runs = _runs(url, study["id"])
    assert _get(url, f"/studies/{study['id']}").json()["status"] == "cancelled"
    assert {r["status"] for r in runs if r["id"] != running_id} == {"cancelled"}
    (running,) = [r for r in runs if r["id"] == running_id]
    assert running["status"] == "running" and running["cancel_requested"]

    # the page keeps reading while that run is going, and sees it stop at its epoch boundary
    total = study["progress"]["total"]
    end_run(db, running_id, "cancelled")
    page.locator("#study-progress", has_text=f"{total} / {total} runs").wait_for(timeout=20_000)
    assert {r["status"] for r in _runs(url, study["id"])} == {"cancelled"}
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_retry_a_failed_run_from_its_page(server, page):
    url, db = server["url"], server["db"]
    study = _create(
        url,
        "retry me",
        [{"name": "base", "kind": "base"}, {"name": "u50", "kind": "structured", "flops_ratio": 0.5}],
    )
    run_id = fail_a_run(db, study["id"], "RuntimeError: CUDA error: an illegal memory access was encountered")
    page.goto(f"{url}/runs/{run_id}")
    page.locator("#run-header .status", has_text="failed").wait_for()
    assert "illegal memory access" in page.locator("#run-details").inner_text()
    page.click("#run-retry")
    page.locator("#run-retry-result .ok", has_text=f"Retried: run {run_id} is pending").wait_for()
    page.locator("#run-header .status", has_text="pending").wait_for()
    page.locator("#run-retry").wait_for(state="hidden")
    retried = _get(url, f"/runs/{run_id}").json()
    assert retried["status"] in ("pending", "queued") and retried["error"] is None
    assert retried["attempts"] == 0

    # the API refuses a retry whose dependency was cancelled: the page says why (its 409 detail)
    assert httpx.post(f"{url}{API}/studies/{study['id']}/cancel", timeout=30).status_code == 200
    waiting = [r for r in _runs(url, study["id"]) if r["variant"] == "u50" and r["kind"] == "train"]
    page.goto(f"{url}/runs/{waiting[0]['id']}")
    page.locator("#run-header .status", has_text="cancelled").wait_for()
    page.click("#run-retry")
    refused = page.locator("#run-retry-result .error")
    refused.wait_for()
    assert re.search(
        r"Not retried: run \d+ depends on run \d+, which is cancelled; retry that run first",
        refused.inner_text(),
    )
    assert _get(url, f"/runs/{waiting[0]['id']}").json()["status"] == "cancelled"
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_delete_a_study_from_its_page(server, page):
    url = server["url"]
    keep = _create(url, "keep me")
    doomed = _create(url, "delete me")
    page.goto(f"{url}/studies/{doomed['id']}")
    page.locator("#study-header", has_text="delete me").wait_for()
    questions: list[str] = []

    def accept(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#study-delete")
    page.wait_for_url(re.compile(r".*/$"))
    page.locator("#studies-list a", has_text="keep me").wait_for()
    assert "delete me" not in page.locator("#studies-list").inner_text()
    assert f"'delete me' (id {doomed['id']})" in questions[0] and "cannot be undone" in questions[0]
    assert _get(url, f"/studies/{doomed['id']}").status_code == 404
    assert _get(url, f"/studies/{keep['id']}").status_code == 200
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_extending_a_finished_study_turns_polling_back_on(server, page):
    url, db = server["url"], server["db"]
    study = _create(url, "extend a finished study")
    finish_study(db, study["id"])
    total = study["progress"]["total"]
    assert _get(url, f"/studies/{study['id']}").json()["status"] == "succeeded"
    page.goto(f"{url}/studies/{study['id']}")
    page.locator("#study-extension", has_text="Proposed").wait_for()
    page.locator("#study-progress", has_text=f"{total} / {total} runs").wait_for()
    questions: list[str] = []

    def accept(dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.click("#study-extend")
    page.locator("#study-extend-result .ok", has_text="Extended").wait_for()
    # it asked first, naming what it adds by value, and then said what it added, by value too
    assert questions and "Add a row of higher learning rates at 0.631" in questions[0]
    added = page.locator("#study-extend-result").inner_text()
    assert "learning rates 0.631" in added and "[" not in added, added
    extended = _get(url, f"/studies/{study['id']}").json()["progress"]["total"]
    assert extended > total
    page.locator("#study-progress", has_text=f"{total} / {extended} runs").wait_for()
    # the new runs end while the page is open: it polls again and shows them
    finish_study(db, study["id"])
    page.locator("#study-progress", has_text=f"{extended} / {extended} runs").wait_for(timeout=20_000)
    assert not page.errors
