"""GET /studies/{id}/scans.csv and the scan / iteration fields of GET /studies/{id}/variants: the
stored shapes served as they are (the worker writes them; tests/workers/test_scans_and_iterations.py
runs a real study), and the hostile cases: unknown study, a study without scans, imported studies."""

from __future__ import annotations

import copy
import csv
import io
from types import SimpleNamespace

import sqlalchemy as sa

from backend.db.models import Run, Variant
from backend.db.session import session_scope
from tests.backend.conftest import DEMO_SPEC
from workers.jobs.scan import scan_record

API = "/api/v1"
SCANS = [{"kind": "structured", "scope": "layer", "fractions": [0, 0.5]}, {"kind": "unstructured"}]


def _create(client, **changes) -> int:
    spec = copy.deepcopy(DEMO_SPEC)
    spec.update(changes)
    response = client.post(f"{API}/studies", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_unknown_study_and_studies_without_scans_are_404(client):
    missing = client.get(f"{API}/studies/999999/scans.csv")
    assert missing.status_code == 404 and "study 999999 not found" in missing.json()["detail"]
    assert client.get(f"{API}/studies/0/scans.csv").status_code == 422  # ids start at 1
    plain = _create(client)
    response = client.get(f"{API}/studies/{plain}/scans.csv")
    assert response.status_code == 404
    assert response.json()["detail"] == f"study {plain} has no sensitivity scans: its spec asks for none"
    imported = client.post(
        f"{API}/studies/import",
        files={"file": ("r.csv", "variant,lr,wd,seed,top1\nbase,0.1,0.0001,0,90\n", "text/csv")},
    ).json()["id"]
    assert client.get(f"{API}/studies/{imported}/scans.csv").status_code == 404


def test_scans_not_run_yet_give_the_header_only(client):
    study_id = _create(client, scans=SCANS)
    response = client.get(f"{API}/studies/{study_id}/scans.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert (
        response.text
        == "variant,scan,kind,scope,source_run_id,layer,fraction,top1,top5,sparsity,flops_ratio\n"
    )
    items = client.get(f"{API}/studies/{study_id}/variants").json()["items"]
    assert [(v["scan"], v["iterations"]) for v in items] == [(None, None)] * 3


def test_stored_scans_and_iterations_are_served(client, settings):
    study_id = _create(client, scans=SCANS)
    layer_rows = [
        {"fraction": f, "layer": layer, "top1": 90.0 - 40 * f, "top5": 99.0, "flops_ratio": 1 - f / 3}
        for layer in ("conv2", "=cmd|x")  # a hostile name: spreadsheet formulas are neutralised
        for f in (0.0, 0.5)
    ]
    global_rows = [{"fraction": 0.0, "layer": None, "top1": 90.0, "top5": 99.0, "sparsity": 0.0}]
    with session_scope(settings) as s:
        base = s.scalar(sa.select(Variant).where(Variant.study_id == study_id, Variant.name == "base"))
        prior = s.scalar(sa.select(Run.id).where(Run.variant_id == base.id, Run.grid_i == 0, Run.grid_j == 0))
        scans = [
            SimpleNamespace(
                kind=d["kind"], scope=d.get("scope", "global"), fractions=d.get("fractions", [0.0])
            )
            for d in SCANS
        ]
        base.scan = [
            scan_record(0, scans[0], prior, layer_rows),
            scan_record(1, scans[1], prior, global_rows),
        ]
        prune = s.scalar(sa.select(Run).where(Run.study_id == study_id, Run.kind == "prune"))
        prune.status = "succeeded"
        prune.result = {
            "iterations": [
                {
                    "step": 1,
                    "target": 0.75,
                    "flops_ratio": 0.76,
                    "pruned_top1": 60.0,
                    "top1": 88.0,
                    "status": "succeeded",
                }
            ]
        }
        s.commit()
    items = {v["name"]: v for v in client.get(f"{API}/studies/{study_id}/variants").json()["items"]}
    served = items["base"]["scan"]
    assert [s["index"] for s in served] == [0, 1] and served[0]["source_run_id"] == prior
    assert served[0]["rows"][1] == {
        "fraction": 0.5, "layer": "conv2", "top1": 70.0, "top5": 99.0, "sparsity": None, "flops_ratio": 1 - 0.5 / 3,
    }  # fmt: skip
    (step,) = items["u50"]["iterations"]
    assert step["step"] == 1 and step["flops_ratio"] == 0.76 and step["sparsity"] is None
    assert items["base"]["iterations"] is None and items["u50"]["scan"] is None

    table = list(csv.DictReader(io.StringIO(client.get(f"{API}/studies/{study_id}/scans.csv").text)))
    assert len(table) == 5
    assert [(r["scan"], r["layer"], r["fraction"]) for r in table] == [
        ("0", "conv2", "0.0"), ("0", "conv2", "0.5"), ("0", "'=cmd|x", "0.0"), ("0", "'=cmd|x", "0.5"),
        ("1", "", "0.0"),
    ]  # fmt: skip
    assert table[1]["top1"] == "70.0" and table[1]["sparsity"] == "" and table[4]["sparsity"] == "0.0"
    assert {r["source_run_id"] for r in table} == {str(prior)}
