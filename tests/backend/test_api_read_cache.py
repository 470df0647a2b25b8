"""Cached reads (landscape, analysis, run pages) never outlive the data under them, on SQLite and
Postgres. Results are written the way a worker writes them: claim + finish through
backend.db.lifecycle on an engine of its own (another process, as far as the API's cache
can tell), never through the API, so nothing but the study's data version tells the API."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from backend.db import lifecycle
from backend.db.models import Run, Variant
from backend.db.session import make_engine
from tests.backend.conftest import DEMO_SPEC

API = "/api/v1"


@pytest.fixture
def worker_db(settings):
    """Sessions on an engine of their own, as a Celery worker process has."""
    engine = make_engine(str(settings.database_url))
    yield sessionmaker(bind=engine, expire_on_commit=False)
    engine.dispose()


def _create(client) -> int:
    response = client.post(f"{API}/studies", json=copy.deepcopy(DEMO_SPEC))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _base_train_runs(make: sessionmaker[Session], study_id: int) -> list[Run]:
    with make() as session:
        return list(
            session.scalars(
                sa.select(Run)
                .join(Variant, Variant.id == Run.variant_id)
                .where(Run.study_id == study_id, Variant.name == "base", Run.kind == "train")
                .order_by(Run.id)
            )
        )


def _finish(make: sessionmaker[Session], run_id: int, top1: float) -> None:
    with make() as session:
        assert lifecycle.claim_run(session, run_id, "w", max_attempts=3, stale_after_s=600).claimed
        assert (
            lifecycle.finish_run(session, run_id, "w", status="succeeded", top1=top1, top5=99.0) is not None
        )


def _point(landscape: dict, i: int, j: int) -> dict:
    return next(p for p in landscape["points"] if (p["grid_i"], p["grid_j"]) == (i, j))


def test_landscape_read_after_a_run_finishes_shows_the_new_value(client, worker_db):
    sid = _create(client)
    url = f"{API}/studies/{sid}/landscape"
    runs = _base_train_runs(worker_db, sid)
    prior = [r for r in runs if (r.grid_i, r.grid_j) == (0, 0)]
    assert len(prior) == 2  # two seeds

    first = client.get(url, params={"variant": "base"})
    assert first.status_code == 200
    assert _point(first.json(), 0, 0) == {**_point(first.json(), 0, 0), "status": "running", "n": 0}
    assert client.get(url, params={"variant": "base"}).json() == first.json()  # served from the cache

    _finish(worker_db, prior[0].id, 80.0)
    second = client.get(url, params={"variant": "base"})
    point = _point(second.json(), 0, 0)
    assert (point["status"], point["value"], point["n"]) == ("finished", 80.0, 1)
    assert second.headers["etag"] != first.headers["etag"]

    _finish(worker_db, prior[1].id, 90.0)
    point = _point(client.get(url, params={"variant": "base"}).json(), 0, 0)
    assert (point["value"], point["n"]) == (85.0, 2)
    assert client.get(url, params={"variant": "base", "metric": "top5"}).json()["best"]["value"] == 99.0


def test_etag_and_if_none_match(client, worker_db):
    sid = _create(client)
    url = f"{API}/studies/{sid}/landscape"
    body = client.get(url)
    etag = body.headers["etag"]
    assert body.headers["cache-control"] == "no-cache"
    unchanged = client.get(url, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    # gzip when asked for (a different representation, so a different ETag), identity otherwise;
    # a 3 x 3 landscape is too small to bother, a 9 x 9 one is not
    wide = client.post(f"{API}/studies", json={**DEMO_SPEC, "grid": {**DEMO_SPEC["grid"], "size": 9}})
    url = f"{API}/studies/{wide.json()['id']}/landscape"
    assert "content-encoding" not in client.get(f"{API}/studies/{sid}/landscape").headers
    gzipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert gzipped.headers["content-encoding"] == "gzip" and "content-encoding" not in plain.headers
    assert gzipped.json() == plain.json() and gzipped.headers["etag"] != plain.headers["etag"]
    assert client.get(url, headers={"Accept-Encoding": "gzip;q=0"}).headers.get("content-encoding") is None
    for tag in (gzipped.headers["etag"], plain.headers["etag"]):
        assert client.get(url, headers={"If-None-Match": tag}).status_code == 304

    url = f"{API}/studies/{sid}/landscape"
    _finish(worker_db, _base_train_runs(worker_db, sid)[0].id, 70.0)
    changed = client.get(url, headers={"If-None-Match": etag})  # the client's copy is now stale
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert any(p["value"] == 70.0 for p in changed.json()["points"])


def test_analysis_follows_finished_runs(client, worker_db):
    sid = _create(client)
    url = f"{API}/studies/{sid}/analysis"
    assert client.get(url).status_code == 409  # nothing finished yet (and no error is cached)
    runs = _base_train_runs(worker_db, sid)
    for k, run in enumerate(runs[:-1]):
        _finish(worker_db, run.id, 60.0 + k)
    before = client.get(url)
    assert before.status_code == 200, before.text
    best_before = before.json()["results"]["base"]["best"]
    assert client.get(url).json() == before.json()

    last = runs[-1]
    _finish(worker_db, last.id, 99.5)
    after = client.get(url)
    assert after.headers["etag"] != before.headers["etag"]
    best_after = after.json()["results"]["base"]["best"]
    assert best_after != best_before
    assert last.id in best_after["run_ids"]  # the new run's point leads now
    assert best_after["value"] > best_before["value"]
    assert client.get(url, headers={"If-None-Match": before.headers["etag"]}).status_code == 200


def test_run_page_follows_a_retry_and_extension_shows_new_points(client, worker_db):
    sid = _create(client)
    runs = _base_train_runs(worker_db, sid)
    page_url = f"{API}/studies/{sid}/runs"
    params = {"variant": "base", "kind": "train", "limit": 100}
    for run in runs[1:]:
        _finish(worker_db, run.id, 75.0)
    failing = runs[0]
    with worker_db() as session:
        assert lifecycle.claim_run(session, failing.id, "w", max_attempts=3, stale_after_s=600).claimed
        lifecycle.fail_run(session, failing.id, "w", "boom")
    page = client.get(page_url, params=params).json()  # every run on it ended: cached
    assert page["total"] == len(runs)
    assert {r["status"] for r in page["items"]} == {"succeeded", "failed"}
    assert client.get(page_url, params=params).json() == page

    assert client.post(f"{API}/runs/{failing.id}/retry").status_code == 200
    again = client.get(page_url, params=params).json()
    assert next(r for r in again["items"] if r["id"] == failing.id)["status"] == "pending"

    # deep pages through the cached id list agree with the runs in the database
    all_runs = client.get(page_url, params={"limit": 1000}).json()
    second_page = client.get(page_url, params={"limit": 5, "offset": 5}).json()
    assert [r["id"] for r in second_page["items"]] == [r["id"] for r in all_runs["items"][5:10]]
    assert second_page["total"] == all_runs["total"]

    land_url = f"{API}/studies/{sid}/landscape"
    assert len(client.get(land_url).json()["lr_values"]) == 3
    assert client.post(f"{API}/studies/{sid}/extend", json={"lr_high": 1}).status_code == 200
    extended = client.get(land_url).json()
    assert len(extended["lr_values"]) == 4 and len(extended["points"]) == 12
    assert client.get(page_url, params={"limit": 1000}).json()["total"] == all_runs["total"] + 18


def test_settled_study_view_follows_a_retry(client, worker_db):
    sid = _create(client)
    url = f"{API}/studies/{sid}"
    assert client.post(f"{url}/cancel").status_code == 200
    settled = client.get(url).json()  # no run active: kept for this data version
    assert settled["status"] == "cancelled"
    assert settled["progress"]["cancelled"] == settled["progress"]["total"] == 58
    assert client.get(url).json() == settled
    assert settled["created_at"].endswith("Z") and settled["updated_at"].endswith("Z")

    run_id = _base_train_runs(worker_db, sid)[0].id
    assert client.post(f"{API}/runs/{run_id}/retry").status_code == 200
    reopened = client.get(url).json()
    assert reopened["status"] == "running" and reopened["progress"]["pending"] == 1  # 57 ended: started


def test_list_shows_current_statuses_with_and_without_a_filter(client, worker_db):
    def start_one_run(study_id: int) -> None:
        with worker_db() as session:  # a worker claims a run; the study row still says pending
            run_id = _base_train_runs(worker_db, study_id)[0].id
            assert lifecycle.claim_run(session, run_id, "w", max_attempts=3, stale_after_s=600).claimed

    first, second = _create(client), _create(client)
    start_one_run(first)
    running = client.get(f"{API}/studies", params={"status": "running"}).json()
    assert [s["id"] for s in running["items"]] == [first] and running["total"] == 1
    start_one_run(second)
    listed = {s["id"]: s["status"] for s in client.get(f"{API}/studies").json()["items"]}
    assert listed == {first: "running", second: "running"}
    assert client.get(f"{API}/studies", params={"status": "pending"}).json()["total"] == 0
