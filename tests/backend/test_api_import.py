"""Import a results CSV, analyse it, export it and import the export again; formula escaping;
the upload limit."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.db.models import Run
from backend.db.session import session_scope
from backend.services.results_files import escape_cell

API = "/api/v1"


def _results_csv() -> str:
    lines = ["variant,lr,wd,seed,top1,top5,status"]
    for variant, shift in (("base", 0.0), ("u50", -1.0)):
        for i, lr in enumerate((0.01, 0.1, 1.0)):
            for j, wd in enumerate((1e-5, 1e-4, 1e-3)):
                top1 = 90.0 + shift - abs(i - 1) * 2 - abs(j - 1) * 1.5
                lines.append(f"{variant},{lr},{wd},0,{top1},99.0,succeeded")
    lines.append("base,10.0,1e-4,0,10.0,50.0,diverged")
    return "\n".join(lines) + "\n"


def _import(client, content: str | bytes, name="imported"):
    return client.post(
        f"{API}/studies/import", files={"file": ("results.csv", content, "text/csv")}, data={"name": name}
    )


def test_import_analyse_export_round_trip(client):
    response = _import(client, _results_csv())
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["kind"] == "imported" and study["status"] == "succeeded"
    assert study["progress"]["succeeded"] == 18 and study["progress"]["diverged"] == 1
    sid = study["id"]

    analysis = client.get(f"{API}/studies/{sid}/analysis", params={"metric": "top1"})
    assert analysis.status_code == 200, analysis.text
    report = analysis.json()
    assert report["metric"] == "top1" and report["variants"][0] == "base"
    assert report["results"]["base"]["best"]["value"] == pytest.approx(90.0)
    assert client.get(f"{API}/studies/{sid}/analysis", params={"metric": "top3"}).status_code == 422

    land = client.get(f"{API}/studies/{sid}/landscape", params={"variant": "u50"}).json()
    assert land["best"]["value"] == 89.0 and land["best"]["lr"] == 0.1

    exported = client.get(f"{API}/studies/{sid}/export", params={"format": "csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 19 and {r["status"] for r in rows} == {"succeeded", "diverged"}
    again = _import(client, exported.text, name="re-imported")
    assert again.status_code == 201, again.text
    re_analysis = client.get(f"{API}/studies/{again.json()['id']}/analysis").json()
    for variant in ("base", "u50"):
        before, after = report["results"][variant]["best"], re_analysis["results"][variant]["best"]
        before.pop("run_ids"), after.pop("run_ids")  # new study, new run ids
        assert after == before

    as_json = client.get(f"{API}/studies/{sid}/export", params={"format": "json"}).json()
    assert len(as_json["rows"]) == 19 and as_json["study"]["kind"] == "imported"
    assert client.get(f"{API}/studies/{sid}/export", params={"format": "xlsx"}).status_code == 422


def test_bad_csv_is_422_naming_the_file_and_line(client):
    response = _import(client, "variant,lr,wd,seed,top1\nbase,0.1,abc,0,90\n")
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "file"] and "line 2" in detail["msg"] and "wd" in detail["msg"]
    missing = client.post(f"{API}/studies/import", data={"name": "x"})
    assert missing.status_code == 422


def test_export_escapes_formulas(client, settings):
    sid = _import(client, _results_csv()).json()["id"]
    with session_scope(settings) as session:
        run = session.scalars(sa.select(Run).where(Run.study_id == sid)).first()
        run.error = '=HYPERLINK("http://evil")'
    text = client.get(f"{API}/studies/{sid}/export").text
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
    assert [escape_cell(v) for v in ("+1", "-x", "@a", "\tb", "ok", 3)] == [
        "'+1",
        "'-x",
        "'@a",
        "'\tb",
        "ok",
        3,
    ]


def test_upload_limit_413(settings, fake_dispatch):
    from backend.api import create_app

    settings.max_upload_bytes = 1000
    with TestClient(create_app(settings)) as client:
        small = _import(client, _results_csv()[:900].rsplit("\n", 1)[0] + "\n")
        assert small.status_code == 201, small.text
        big = "variant,lr,wd,seed,top1\n" + "base,0.1,0.0001,0,90\n" * 100
        assert len(big) > 1000
        response = _import(client, big)
        assert response.status_code == 413
        # far above the limit: refused from Content-Length before the body is read
        huge = _import(client, "x" * 200_000)
        assert huge.status_code == 413

        # no Content-Length (chunked): refused while reading
        def chunks():
            for _ in range(100):
                yield b"y" * 10_000

        streamed = client.post(
            f"{API}/studies/import",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=zzz"},
        )
        assert streamed.status_code == 413


def _three_seed_csv() -> str:
    """3 seeds per point. The single best run (95.0, seed 2 at lr 0.01) sits at another point than
    the best seed-mean (90.0 at lr 0.1, wd 1e-4): lr 0.01's seeds average 86.0."""
    lines = ["variant,lr,wd,seed,top1"]
    means = {(0.01, 1e-4): 86.0, (0.1, 1e-4): 90.0, (1.0, 1e-4): 80.0}
    spread = {(0.01, 1e-4): (-9.0, 0.0, 9.0), (0.1, 1e-4): (-0.5, 0.0, 0.5), (1.0, 1e-4): (-1.0, 0.0, 1.0)}
    for (lr, wd), mean in means.items():
        for seed, delta in enumerate(spread[(lr, wd)]):
            lines.append(f"base,{lr},{wd},{seed},{mean + delta}")
    return "\n".join(lines) + "\n"


def test_every_view_shows_the_same_best_the_seed_mean_best(client):
    """Issue 14: /analysis said best = 90 % at lr 0.1, /compare said 95 % at lr 0.01 (the single best
    run), and /landscape computed its own. One definition now: the best seed-mean, served by every
    view, value and place alike."""
    study = _import(client, _three_seed_csv(), name="three seeds").json()
    sid = study["id"]
    analysis = client.get(f"{API}/studies/{sid}/analysis").json()
    best = analysis["results"]["base"]["best"]
    assert (best["value"], best["lr"], best["wd"], best["n"]) == (90.0, 0.1, 1e-4, 3)
    row = client.get(f"{API}/studies/{sid}/compare").json()["variants"][0]
    assert (row["best_top1"], row["best_lr"], row["best_wd"], row["best_top1_n"]) == (90.0, 0.1, 1e-4, 3)
    assert row["best_top1_std"] == pytest.approx(0.5)  # sample std of 89.5, 90, 90.5
    land = client.get(f"{API}/studies/{sid}/landscape", params={"variant": "base"}).json()
    assert (land["best"]["value"], land["best"]["lr"], land["best"]["wd"]) == (90.0, 0.1, 1e-4)
    spreads = {p["lr"]: p["std"] for p in land["points"]}
    assert spreads == {0.01: pytest.approx(9.0), 0.1: pytest.approx(0.5), 1.0: pytest.approx(1.0)}
    summary = {r["variant"]: r for r in analysis["summary"]["rows"]}
    assert (summary["base"]["best"], summary["base"]["best_lr"]) == (90.0, 0.1)
    exported = client.get(f"{API}/studies/{sid}/export", params={"format": "json"}).json()
    assert max(r["top1"] for r in exported["rows"]) == 95.0  # the runs themselves are all there


def test_one_seed_spread_is_null_not_zero(client):
    """A point with one seed has no spread (the analysis' null), not a population std of 0.0."""
    sid = _import(client, _results_csv()).json()["id"]
    land = client.get(f"{API}/studies/{sid}/landscape", params={"variant": "base"}).json()
    assert {p["std"] for p in land["points"]} == {None}


def test_the_analysis_body_matches_its_declared_response_model(client):
    from pydantic import TypeAdapter

    from backend.analysis import AnalysisReport

    sid = _import(client, _three_seed_csv()).json()["id"]
    body = client.get(f"{API}/studies/{sid}/analysis").json()
    TypeAdapter(AnalysisReport).validate_python(body)  # every field the record declares, typed
    schema = client.get("/openapi.json").json()
    ref = schema["paths"]["/api/v1/studies/{study_id}/analysis"]["get"]["responses"]["200"]
    assert ref["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AnalysisReport"}
    declared = set(schema["components"]["schemas"]["VariantResult"]["properties"])
    assert declared == set(body["results"]["base"])
