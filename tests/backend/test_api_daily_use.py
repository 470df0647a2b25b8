"""What the dashboard needs to be a daily tool (issue 19), against a real database (SQLite and
Postgres): the study list's text filter over every study, runs sorted by accuracy, the states of
grid points without a result, the study status rule, the auth mode, artefact names that say what
they are, centred grid indices for imports, the docs served from local files. Each with its
hostile requests next to the happy ones."""

from __future__ import annotations

import copy
import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.db.models import Artefact, Run, Variant
from backend.db.session import session_scope
from backend.run_states import study_status
from tests.backend.conftest import DEMO_SPEC
from tests.frontend.synthetic import csv_text

API = "/api/v1"


def _create(client, name: str, variants: list[dict] | None = None, **changes) -> dict:
    spec = copy.deepcopy(DEMO_SPEC)
    spec.update(name=name, **changes)
    if variants is not None:
        spec["variants"] = variants
    response = client.post(f"{API}/studies", json=spec)
    assert response.status_code == 201, response.text
    return response.json()


def _progress(**counts: int) -> dict[str, int]:
    return {s: counts.get(s, 0) for s in ("blocked", "pending", "queued", "running", "succeeded",
                                          "failed", "diverged", "cancelled")}  # fmt: skip


# --- the study status rule -------------------------------------------------------------------------
def test_a_study_that_ended_with_cancelled_runs_is_cancelled_not_succeeded():
    assert study_status("running", _progress(succeeded=58, cancelled=6)) == "cancelled"
    assert study_status("running", _progress(succeeded=5, diverged=1)) == "succeeded"
    assert study_status("running", _progress(succeeded=5, failed=1, cancelled=3)) == "failed"
    # still going: running / pending whatever has ended
    assert study_status("pending", _progress(cancelled=3, running=1)) == "running"
    assert study_status("pending", _progress(blocked=2, pending=4)) == "pending"
    # sticky: a cancel asked for, and a delete waiting for its runs
    assert study_status("cancelled", _progress(succeeded=10)) == "cancelled"
    assert study_status("deleting", _progress(cancelled=10)) == "deleting"
    assert study_status("deleting", _progress(succeeded=10)) == "deleting"


def test_cancel_then_retry_one_run_leaves_the_study_cancelled_not_succeeded(client, settings):
    """The issue's case: after one retry the badge said "succeeded" while runs stayed cancelled."""
    study = _create(client, "cancel and retry", [{"name": "base", "kind": "base"}])
    sid = study["id"]
    assert client.post(f"{API}/studies/{sid}/cancel").json()["status"] == "cancelled"
    with session_scope(settings) as session:
        leaf = session.scalars(
            sa.select(Run).where(Run.study_id == sid, Run.kind == "train", Run.grid_i == 1)
        ).first()
        leaf_id = leaf.id
    assert client.post(f"{API}/runs/{leaf_id}/retry").status_code == 200
    assert client.get(f"{API}/studies/{sid}").json()["status"] in ("pending", "running")
    with session_scope(settings) as session:
        run = session.get(Run, leaf_id)
        run.status, run.top1 = "succeeded", 90.0
    body = client.get(f"{API}/studies/{sid}").json()
    assert (
        body["progress"]["succeeded"] == 1 and body["progress"]["cancelled"] == body["progress"]["total"] - 1
    )
    assert body["status"] == "cancelled"
    listed = client.get(f"{API}/studies", params={"status": "cancelled"}).json()
    assert [s["id"] for s in listed["items"]] == [sid]


# --- the study list: text filter, sort and paging on the server ------------------------------------
def test_the_text_filter_searches_every_study_and_counts_them(client):
    base_only = [{"name": "base", "kind": "base"}]
    ids = {
        "alpha": _create(client, "alpha digits", base_only)["id"],
        "beta": _create(
            client, "beta", [*base_only, {"name": "u50_wide", "kind": "structured", "flops_ratio": 0.5}]
        )["id"],  # fmt: skip
        "gamma": _create(client, "gamma 100% sure", base_only)["id"],
    }
    for n in range(4):
        _create(client, f"filler {n}", base_only)

    def found(**params) -> tuple[int, list[int]]:
        body = client.get(f"{API}/studies", params=params).json()
        return body["total"], [s["id"] for s in body["items"]]

    assert found(q="ALPHA") == (1, [ids["alpha"]])  # case-insensitive, name
    assert found(q="u50_WIDE") == (1, [ids["beta"]])  # a variant's name
    assert found(q="digits_cnn", limit=2)[0] == 7  # the model: all of them, counted past the page
    assert found(q="digits alpha") == (1, [ids["alpha"]])  # every word must match (dataset + name)
    assert found(q="100%") == (1, [ids["gamma"]])  # % is a character, not a wildcard
    assert found(q="%") == (1, [ids["gamma"]])
    assert found(q="r_0") == (0, [])  # _ too: as a wildcard it would match "filler 0"
    assert found(q="nothing holds this") == (0, [])
    assert found(q="'; drop table studies; --") == (0, [])
    assert client.get(f"{API}/studies").json()["total"] == 7
    # oldest first over every study, not within a page: the first page ends where the next begins
    first = found(sort="created_at", limit=4)[1]
    second = found(sort="created_at", limit=4, offset=4)[1]
    assert first[0] == ids["alpha"] and len(first + second) == 7 and not set(first) & set(second)


@pytest.mark.parametrize(
    ("q", "field_text"),
    [
        ("x" * 201, "at most 200 characters"),
        ("a\x00b", "NUL"),
        (" ".join("w" * 2 for _ in range(9)), "at most 8 words"),
        ("y" * 65, "longer than 64"),
    ],
)
def test_a_hostile_filter_is_422_naming_q(client, q, field_text):
    response = client.get(f"{API}/studies", params={"q": q})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", "q"] and field_text in error["msg"]


# --- runs sorted by accuracy -----------------------------------------------------------------------
def test_runs_sort_by_accuracy_with_unscored_runs_last(client, settings):
    study = _create(client, "sorted runs", [{"name": "base", "kind": "base"}], repeats=1)
    sid = study["id"]
    with session_scope(settings) as session:
        trains = session.scalars(
            sa.select(Run).where(Run.study_id == sid, Run.kind == "train").order_by(Run.id)
        ).all()
        for run, top1 in zip(trains, (70.0, 95.5, 80.25, 91.0), strict=False):
            run.status, run.top1 = "succeeded", top1
    url = f"{API}/studies/{sid}/runs"
    best_first = client.get(url, params={"sort": "-top1", "kind": "train", "limit": 3}).json()
    assert [r["top1"] for r in best_first["items"]] == [95.5, 91.0, 80.25] and best_first["total"] == 9
    rest = client.get(url, params={"sort": "-top1", "kind": "train", "limit": 10, "offset": 3}).json()
    assert [r["top1"] for r in rest["items"]] == [70.0] + [None] * 5  # the unscored last, by id
    assert [r["id"] for r in rest["items"][1:]] == sorted(r["id"] for r in rest["items"][1:])
    worst_first = client.get(url, params={"sort": "top1", "kind": "train", "limit": 2}).json()
    assert [r["top1"] for r in worst_first["items"]] == [70.0, 80.25]
    succeeded = client.get(url, params={"sort": "-top1", "status": "succeeded"}).json()
    assert [r["top1"] for r in succeeded["items"]] == [95.5, 91.0, 80.25, 70.0]
    by_id = client.get(url, params={"sort": "-id", "limit": 2}).json()["items"]
    assert by_id[0]["id"] > by_id[1]["id"]
    for bad in ("top1; drop table runs", "accuracy", "-", ""):
        answer = client.get(url, params={"sort": bad})
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["query", "sort"], bad


# --- grid points without a result say why ----------------------------------------------------------
def test_landscape_points_say_failed_cancelled_or_running(client, settings):
    study = _create(client, "point states", [{"name": "base", "kind": "base"}], repeats=1)
    sid = study["id"]
    with session_scope(settings) as session:
        runs = {
            (r.grid_i, r.grid_j): r
            for r in session.scalars(sa.select(Run).where(Run.study_id == sid, Run.kind == "train"))
        }
        runs[(0, 0)].status, runs[(0, 0)].top1 = "succeeded", 90.0
        runs[(1, 1)].status = "failed"
        runs[(-1, -1)].status = "cancelled"
        runs[(1, -1)].status = "running"
    land = client.get(f"{API}/studies/{sid}/landscape", params={"variant": "base"}).json()
    states = {(p["grid_i"], p["grid_j"]): p["status"] for p in land["points"]}
    assert states[(0, 0)] == "finished"
    assert (states[(1, 1)], states[(-1, -1)], states[(1, -1)]) == ("failed", "cancelled", "running")
    assert states[(0, 1)] == "running"  # pending: still to happen
    assert len(states) == 9


# --- auth mode for the top bar ---------------------------------------------------------------------
def test_the_auth_mode_is_open_and_names_no_token(settings, fake_dispatch):
    from backend.api import create_app

    for mode, reads, writes in (("off", False, False), ("writes", False, True), ("all", True, True)):
        settings.auth = mode
        with TestClient(create_app(settings)) as client:
            answer = client.get(f"{API}/auth")
            assert answer.status_code == 200, (mode, answer.text)
            assert answer.json() == {"mode": mode, "reads_need_token": reads, "writes_need_token": writes}
            if mode == "all":
                assert client.get(f"{API}/studies").status_code == 401  # the rest still needs one
            forged = client.get(f"{API}/auth", headers={"Authorization": "Bearer not-a-token"})
            assert forged.status_code == 200 and forged.json()["mode"] == mode


# --- downloads say what they are -------------------------------------------------------------------
def test_artefact_downloads_name_study_run_variant_and_kind(client, settings):
    study = _create(client, "named files", [{"name": "base", "kind": "base"}])
    sid = study["id"]
    root = settings.artifact_root
    (root / "s").mkdir(parents=True)
    (root / "s" / "checkpoint.pt").write_bytes(b"ck")
    (root / "s" / "model_fp32.onnx").write_bytes(b"onnx")
    with session_scope(settings) as session:
        run = session.scalars(sa.select(Run).where(Run.study_id == sid, Run.kind == "train")).first()
        variant = session.scalars(sa.select(Variant).where(Variant.study_id == sid)).one()
        run_id = run.id
        session.add(Artefact(run_id=run_id, kind="checkpoint", path="s/checkpoint.pt", bytes=2))
        session.add(Artefact(variant_id=variant.id, kind="onnx", path="s/model_fp32.onnx", bytes=4))
        session.add(Artefact(run_id=run_id, kind='x"\r\nSet-Cookie: a=b', path="s/checkpoint.pt", bytes=2))
        session.flush()
        ids = [a.id for a in session.scalars(sa.select(Artefact).order_by(Artefact.id))]
    detail = client.get(f"{API}/runs/{run_id}").json()
    names = [a["filename"] for a in detail["artefacts"]]
    assert names[0] == f"study-{sid}-run-{run_id}-base-checkpoint.pt"
    assert re.fullmatch(rf"study-{sid}-run-{run_id}-base-x-Set-Cookie-a-b\.pt", names[1]), names[1]
    for artefact_id, expected in zip(ids, (names[0], f"study-{sid}-base-onnx.onnx", names[1]), strict=True):
        answer = client.get(f"{API}/artefacts/{artefact_id}")
        assert answer.status_code == 200
        assert answer.headers["content-disposition"] == f'attachment; filename="{expected}"'
        assert "set-cookie" not in answer.headers


# --- imported grids are indexed like native ones ---------------------------------------------------
def _import(client, text: str) -> dict:
    answer = client.post(f"{API}/studies/import", files={"file": ("g.csv", text, "text/csv")})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_imported_grid_indices_are_centred_like_a_native_grid(client):
    study = _import(client, csv_text(seeds=1))  # 5 x 5 around lr 0.1, wd 1e-4
    sid = study["id"]
    runs = client.get(f"{API}/studies/{sid}/runs", params={"limit": 1000}).json()["items"]
    centre = [r for r in runs if r["grid_i"] == 0 and r["grid_j"] == 0 and r["variant"] == "base"]
    assert {r["grid_i"] for r in runs} == {r["grid_j"] for r in runs} == set(range(-2, 3))
    assert centre and centre[0]["lr"] == pytest.approx(0.1) and centre[0]["wd"] == pytest.approx(1e-4)
    land = client.get(f"{API}/studies/{sid}/landscape", params={"variant": "base"}).json()
    by_index = {(p["grid_i"], p["grid_j"]): p for p in land["points"]}
    assert len(by_index) == 25 and by_index[(0, 0)]["lr"] == pytest.approx(0.1)
    assert all(p["status"] == "finished" for p in land["points"])
    # an even count: 0 just below the middle
    lines = ["variant,lr,wd,seed,top1"] + [
        f"base,{lr},{wd},0,{80 + k}" for k, (lr, wd) in enumerate((lr, wd) for lr in (0.01, 0.1, 1, 10)
                                                                   for wd in (1e-4, 1e-3))
    ]  # fmt: skip
    even = _import(client, "\n".join(lines) + "\n")
    runs = client.get(f"{API}/studies/{even['id']}/runs").json()["items"]
    assert sorted({r["grid_i"] for r in runs}) == [-1, 0, 1, 2]
    assert sorted({r["grid_j"] for r in runs}) == [0, 1]
    assert {r["lr"] for r in runs if r["grid_i"] == 0} == {0.1}


# --- the docs are served from this server ----------------------------------------------------------
def test_docs_pages_and_assets_come_from_this_server(client):
    assert client.get("/redoc").status_code == 404  # ReDoc's bundle would fetch its logo from a CDN
    for path in ("/docs",):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
        assert "http" not in page.headers["content-security-policy"], page.headers["content-security-policy"]
        for source in sources:
            asset = client.get(source)
            assert asset.status_code == 200 and len(asset.content) > 1000, source
    assert (
        client.get("/docs/assets/swagger-ui-bundle.js")
        .headers["content-type"]
        .startswith(("application/javascript", "text/javascript"))
    )
    assert client.get("/docs/assets/nope.js").status_code == 404
    for escape in ("/docs/assets/../core.py", "/docs/assets/%2e%2e/core.py", "/docs/assets/..%2fcore.py"):
        answer = client.get(escape)  # the package's own code, one folder up: never served
        assert "FastAPIOffline" not in answer.text, escape
    spec = client.get("/docs/spec.md")
    assert spec.status_code == 200 and "What prunescape computes" in spec.text
