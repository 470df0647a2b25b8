"""GET /compare's latency section: ratios are taken within one runtime only (issue 18).

The variants' latency columns are filled as measure runs store them (`{runtime name: record}`),
with figures chosen so that a ratio across runtimes would give a different number than the
within-runtime one."""

from __future__ import annotations

import copy
import math

import sqlalchemy as sa

from backend.db.models import Run, Study
from backend.db.session import session_scope
from tests.backend.conftest import DEMO_SPEC

API = "/api/v1"
ORT, TORCH = "onnxruntime-cpu", "torch-cpu"
INT8_TORCH_REASON = "int8 runs only in ONNX Runtime here"


def _record(runtime: str, precision: str, b1: float, b32: float) -> dict:
    return {
        "runtime": runtime,
        "supported": True,
        "precision": precision,
        "device": "cpu",
        "device_name": "test cpu",
        "threads": 2,
        "warmup": 10,
        "runs": 50,
        "meets_spec": True,
        "input_shape": [1, 8, 8],
        "by_batch": {
            "1": {"median_ms": b1, "p90_ms": b1 * 1.1, "min_ms": b1 * 0.9, "images_per_s": 1000 / b1},
            "32": {"median_ms": b32, "p90_ms": b32 * 1.1, "min_ms": b32 * 0.9, "images_per_s": 32000 / b32},
        },
        "library": "onnxruntime" if runtime == ORT else "torch",
        "library_version": "1.0",
        "model_format": "onnx-qdq" if precision == "int8" else ("onnx-fp32" if runtime == ORT else "torch"),
        "max_abs_diff_vs_torch": None,
    }


LATENCY = {
    "base": {ORT: _record(ORT, "fp32", 2.0, 20.0), TORCH: _record(TORCH, "fp32", 3.0, 30.0)},
    # timed on torch only: no ratio on ONNX Runtime; slower than the base at batch 32 there
    "u50": {TORCH: _record(TORCH, "fp32", 1.5, 33.0)},
    "q8": {
        ORT: _record(ORT, "int8", 1.0, 8.0),
        TORCH: {
            "runtime": TORCH,
            "supported": False,
            "precision": "int8",
            "reason": INT8_TORCH_REASON + ": ...",
        },
    },
}
TOP1 = {"base": 92.0, "u50": 90.0, "q8": 91.0}


def _study_with_measurements(client, settings, latency=LATENCY) -> int:
    response = client.post(f"{API}/studies", json=copy.deepcopy(DEMO_SPEC))
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    with session_scope(settings) as session:
        study = session.get(Study, sid)
        variants = {v.name: v for v in study.variants}
        for name, v in variants.items():
            v.latency = latency.get(name)
            v.flops = {"base": 2000, "u50": 1000, "q8": 2000}[name]
            v.params = v.params_nonzero = 100
        by_id = {v.id: v.name for v in variants.values()}
        for run in session.scalars(
            sa.select(Run).where(Run.study_id == sid, Run.kind.in_(("train", "quantise")))
        ):
            if run.grid_i == 0 and run.grid_j == 0:
                run.status, run.top1, run.top5 = "succeeded", TOP1[by_id[run.variant_id]], 99.0
    return sid


def _median(latency: dict, variant: str, runtime: str, batch: str) -> float | None:
    record = latency.get(variant, {}).get(runtime)
    if not record or not record.get("supported"):
        return None
    return record["by_batch"][batch]["median_ms"]


def test_no_latency_ratio_mixes_runtimes(client, settings):
    sid = _study_with_measurements(client, settings)
    body = client.get(f"{API}/studies/{sid}/compare").json()
    section = body["latency"]
    assert section["base"] == "base"
    assert section["default_runtime"] == ORT
    assert section["runtimes"] == [ORT, TORCH] and section["batch_sizes"] == ["1", "32"]

    ratios = 0
    for runtime, table in section["by_runtime"].items():
        assert table["runtime"] == runtime and table["base_timed"]
        for row in table["rows"]:
            stored = _median(LATENCY, row["variant"], runtime, row["batch"])
            assert row["median_ms"] == stored, (runtime, row)  # the figure is this runtime's own
            assert row["timed"] == (stored is not None)
            if row["latency_ratio"] is not None:
                base = _median(LATENCY, "base", runtime, row["batch"])
                assert math.isclose(row["latency_ratio"], stored / base), (runtime, row)
                assert math.isclose(row["speedup"], base / stored)
                ratios += 1
            elif row["variant"] != "base":
                assert row["reason"], (runtime, row)  # a missing ratio says why
    assert ratios == 4  # q8 on ORT, u50 on torch, at both batch sizes; nothing else

    rows = {(rt, r["variant"], r["batch"]): r for rt, t in section["by_runtime"].items() for r in t["rows"]}
    # q8 was timed on ORT, the base on ORT and torch: its ratio is 1.0 / 2.0, never 1.0 / 3.0
    assert rows[(ORT, "q8", "1")]["latency_ratio"] == 0.5
    assert rows[(TORCH, "q8", "1")]["latency_ratio"] is None
    assert INT8_TORCH_REASON in rows[(TORCH, "q8", "1")]["reason"]
    # u50 was timed on torch only: nothing on ORT, whatever it has on torch
    assert rows[(ORT, "u50", "1")]["timed"] is False and rows[(ORT, "u50", "1")]["latency_ratio"] is None
    assert rows[(ORT, "u50", "1")]["reason"] == f"not timed on {ORT}"
    # FLOPs ratio and latency ratio side by side; a pruned variant slower than the base is named
    u50_b32 = rows[(TORCH, "u50", "32")]
    assert (u50_b32["flops_ratio"], u50_b32["latency_ratio"], u50_b32["not_faster"]) == (0.5, 1.1, True)
    assert rows[(TORCH, "u50", "1")]["not_faster"] is False
    assert section["by_runtime"][TORCH]["not_faster"] == {"1": [], "32": ["u50"]}
    assert section["by_runtime"][TORCH]["messages"] == [
        f"u50 is not faster than base on {TORCH} at batch 32 (latency x1.10)"
    ]
    assert section["by_runtime"][ORT]["messages"] == []
    # accuracy is the variant's best top-1; the front is per runtime
    assert rows[(ORT, "q8", "1")]["accuracy"] == 91.0
    assert section["by_runtime"][ORT]["pareto_front"]["1"] == ["q8", "base"]
    assert section["by_runtime"][TORCH]["pareto_front"]["1"] == ["u50", "base"]
    assert section["by_runtime"][TORCH]["pareto_front"]["32"] == ["base"]

    # each row keeps the per-runtime measurements, runtime named in every record
    variants = {r["name"]: r for r in body["variants"]}
    assert set(variants["q8"]["latency"]) == {ORT, TORCH}
    assert variants["q8"]["latency"][TORCH]["supported"] is False
    assert all(rec["runtime"] == rt for v in variants.values() for rt, rec in (v["latency"] or {}).items())


def test_compare_before_and_after_measurements_of_the_older_shape(client, settings):
    sid = _study_with_measurements(client, settings, latency={})
    section = client.get(f"{API}/studies/{sid}/compare").json()["latency"]
    assert section == {
        "base": "base",
        "default_runtime": None,
        "runtimes": [],
        "batch_sizes": [],
        "by_runtime": {},
    }

    # a study measured before runtimes had names: one torch record, read as torch-cpu
    legacy = {
        "runtime": "torch",
        "device": "cpu",
        "threads": 2,
        "by_batch": {"1": {"median_ms": 4.0, "p90_ms": 4.4}},
    }
    sid = _study_with_measurements(client, settings, latency={"base": legacy})
    body = client.get(f"{API}/studies/{sid}/compare").json()
    base_row = next(r for r in body["variants"] if r["name"] == "base")
    assert list(base_row["latency"]) == [TORCH] and base_row["latency"][TORCH]["runtime"] == TORCH
    assert body["latency"]["runtimes"] == [TORCH] and body["latency"]["default_runtime"] == TORCH
