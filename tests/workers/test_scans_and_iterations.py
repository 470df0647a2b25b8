"""Issue 17: a digits study with sensitivity scans and iteratively pruned variants, created through
the API and run in-process by `workers.tasks.execute` (SQLite): what /variants and /scans.csv then
show, and a cancel between pruning rounds."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from backend.db.models import EpochMetric, Run, Study, Variant
from backend.db.session import get_engine
from backend.services.study_actions import cancel_study
from workers.tasks import execute

API = "/api/v1"
SPEC = {
    "name": "scans and iterations",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 2, "batch_size": 64},
    "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": 1},
    "variants": [
        {"name": "base", "kind": "base"},
        {"name": "it3", "kind": "structured", "flops_ratio": 0.5, "iterations": 3,
         "retrain": "finetune", "finetune_epochs": 1},
        {"name": "imp", "kind": "unstructured", "amount": 0.8, "scope": "global", "iterations": 2,
         "retrain": "rewind", "rewind_epoch": 1},
    ],
    "scans": [
        {"kind": "structured", "scope": "layer", "fractions": [0.5, 0, 0.25], "on": "all"},
        {"kind": "unstructured", "scope": "global", "fractions": [0.0, 0.5, 0.9]},
    ],
}  # fmt: skip


def _drain(make, settings, study_id: int) -> None:
    while True:
        with make() as s:
            pending = s.scalars(
                sa.select(Run.id).where(Run.study_id == study_id, Run.status == "pending").order_by(Run.id)
            ).all()
        if not pending:
            return
        for run_id in pending:
            execute(run_id, settings=settings)


@pytest.fixture
def api(sqlite_db):
    from backend.api import create_app

    with TestClient(create_app(sqlite_db)) as client:
        yield client


@pytest.mark.slow
def test_a_study_with_scans_and_iterations_finishes_and_serves_them(sqlite_db, api):
    settings = sqlite_db
    plan = api.post(f"{API}/studies/plan", json=SPEC).json()
    assert plan["run_counts"]["scan"] == 3  # base, and it3 + imp for the scan `on: all`
    created = api.post(f"{API}/studies", json=SPEC)
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    assert created.json()["run_counts"] == plan["run_counts"]
    assert api.get(f"{API}/studies/{study_id}/scans.csv").text.count("\n") == 1  # header only, so far
    make = sessionmaker(bind=get_engine(settings))
    _drain(make, settings, study_id)

    with make() as s:
        runs = s.scalars(sa.select(Run).where(Run.study_id == study_id)).all()
        assert {r.id: r.error for r in runs if r.status != "succeeded"} == {}
        assert s.get(Study, study_id).status == "succeeded"
        names = {v.id: v.name for v in s.scalars(sa.select(Variant).where(Variant.study_id == study_id))}
        by = {(names[r.variant_id], r.kind): r for r in runs}
        prune_epochs = s.scalars(
            sa.select(EpochMetric.epoch).where(EpochMetric.run_id == by[("it3", "prune")].id)
        ).all()
    # three finetune rounds of one epoch each: the prune run's epochs are numbered on
    assert sorted(prune_epochs) == [1, 2, 3] and by[("it3", "prune")].epochs_done == 3

    variants = {v["name"]: v for v in api.get(f"{API}/studies/{study_id}/variants").json()["items"]}
    # --- scans: base gets both, each pruned variant the `on: all` one, on its model at the prior
    base_scans = variants["base"]["scan"]
    assert [(s["index"], s["kind"], s["scope"]) for s in base_scans] == [
        (0, "structured", "layer"),
        (1, "unstructured", "global"),
    ]
    layer_scan = base_scans[0]
    assert layer_scan["fractions"] == [0.0, 0.25, 0.5]  # stored sorted
    assert layer_scan["source_run_id"] == by[("base", "train")].id
    assert [(r["layer"], r["fraction"]) for r in layer_scan["rows"]] == [
        (layer, f) for layer in ("conv2", "conv3") for f in (0.0, 0.25, 0.5)
    ]
    reference = by[("base", "train")].top1
    for row in layer_scan["rows"]:
        assert row["sparsity"] is None and 0 < row["flops_ratio"] <= 1
        if row["fraction"] == 0:
            assert row["top1"] == pytest.approx(reference, abs=0.01) and row["flops_ratio"] == 1.0
    global_rows = base_scans[1]["rows"]
    assert [r["layer"] for r in global_rows] == [None] * 3
    assert global_rows[2]["sparsity"] == pytest.approx(0.9, abs=0.01)
    assert global_rows[2]["top1"] < global_rows[0]["top1"]  # 90 % of the weights gone, no retraining
    for name in ("it3", "imp"):
        (scan,) = variants[name]["scan"]
        assert scan["index"] == 0 and scan["source_run_id"] == by[(name, "train")].id
    assert variants["it3"]["scan"][0]["rows"][0]["top1"] == pytest.approx(by[("it3", "train")].top1, abs=0.01)

    # --- iterations: three equal steps in FLOPs ratio, finetuned at the prior after each
    steps = variants["it3"]["iterations"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert [s["target"] for s in steps] == pytest.approx([1 - 0.5 / 3, 1 - 1 / 3, 0.5])
    ratios = [s["flops_ratio"] for s in steps]
    assert ratios[0] > ratios[1] > ratios[2] and ratios[2] == pytest.approx(0.5, abs=0.05)
    assert variants["it3"]["flops_ratio_achieved"] == pytest.approx(ratios[2])
    assert variants["it3"]["flops"] < variants["base"]["flops"]
    for step in steps:
        assert step["status"] == "succeeded" and step["epochs"] == 1 and step["sparsity"] is None
        assert 10 < step["top1"] <= 100 and step["pruned_top1"] is not None
    # unstructured with rewinding: every round resets to the base weights at epoch 1
    imp = variants["imp"]["iterations"]
    assert [s["sparsity"] for s in imp] == pytest.approx([0.4, 0.8], abs=0.01)
    assert [s["epochs"] for s in imp] == [2, 2]  # the full recipe per round
    assert variants["imp"]["params_nonzero"] < 0.3 * variants["imp"]["params"]
    assert variants["base"]["iterations"] is None
    assert by[("it3", "prune")].result["retrain_lr"] == 0.05  # the prior's

    # --- the CSV export: one line per row of every stored scan
    response = api.get(f"{API}/studies/{study_id}/scans.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert f"study-{study_id}-scans.csv" in response.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(response.text)))
    total = sum(len(s["rows"]) for v in variants.values() for s in v["scan"] or [])
    assert len(table) == total == 6 + 3 + 6 + 6
    first = table[0]
    assert (first["variant"], first["scan"], first["kind"], first["scope"], first["layer"]) == (
        "base", "0", "structured", "layer", "conv2",
    )  # fmt: skip
    assert float(first["top1"]) == pytest.approx(reference, abs=0.01) and first["sparsity"] == ""


def test_cancel_between_rounds_keeps_the_rounds_done(sqlite_db, monkeypatch):
    """A study cancelled while its prune run retrains round 1 of 3: the run stops before round 2,
    ends `cancelled` with round 1's record, and the variant's grid never starts."""
    settings = sqlite_db
    spec = {
        **SPEC,
        "recipe": {"epochs": 1, "batch_size": 64},
        "variants": [
            SPEC["variants"][0],
            {"name": "u3", "kind": "unstructured", "amount": 0.6, "iterations": 3, "retrain": "finetune",
             "finetune_epochs": 1},
        ],
        "scans": [],
    }  # fmt: skip
    from backend.api import create_app

    with TestClient(create_app(settings)) as client:
        study_id = client.post(f"{API}/studies", json=spec).json()["id"]
    make = sessionmaker(bind=get_engine(settings))
    with make() as s:
        prune_id = s.scalar(sa.select(Run.id).where(Run.study_id == study_id, Run.kind == "prune"))

    import workers.tasks

    real_record = workers.tasks.lifecycle.record_epoch

    def record_then_cancel(session, run_id, epoch, values):
        real_record(session, run_id, epoch, values)
        if run_id == prune_id and epoch == 1:  # the user cancels during round 1
            with make() as other:
                cancel_study(other, study_id)

    monkeypatch.setattr(workers.tasks.lifecycle, "record_epoch", record_then_cancel)
    _drain(make, settings, study_id)
    with make() as s:
        prune = s.get(Run, prune_id)
        assert prune.status == "cancelled"
        (record,) = prune.result["iterations"]
        assert record["step"] == 1 and record["sparsity"] == pytest.approx(0.2, abs=0.01)
        assert prune.epochs_done == 1
        trains = s.scalars(
            sa.select(Run.status).where(
                Run.study_id == study_id, Run.kind == "train", Run.variant_id != prune.variant_id
            )
        ).all()
        assert trains == ["succeeded"]  # the base ran
        grid = s.scalars(sa.select(Run.status).where(Run.depends_on_id == prune_id)).all()
        assert grid and set(grid) == {"cancelled"}
        assert s.get(Variant, prune.variant_id).model_path is None  # no pruned model was kept
        assert s.get(Study, study_id).status == "cancelled"
