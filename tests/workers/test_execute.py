"""The task body (`workers.tasks.execute`) runs every kind of run of a small study through the
real engine, without Celery: results, variant measurements, artefacts and epochs end up stored."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from backend.db.models import Artefact, EpochMetric, Run, Study, Variant
from backend.db.session import get_engine
from backend.services.study_creation import create_study
from backend.spec import parse_spec
from workers.jobs.inputs import RunInput
from workers.tasks import execute

SPEC = {
    "name": "one point, every kind",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 2, "batch_size": 64},
    "grid": {"lr_centre": 0.05, "wd_centre": 1e-4, "step": 0.5, "size": 1},
    "variants": [
        {"name": "base", "kind": "base"},
        {"name": "n50", "kind": "structured", "method": "nonuniform", "flops_ratio": 0.5},
        {"name": "sp", "kind": "unstructured", "amount": 0.7, "scope": "global", "retrain": "rewind",
         "rewind_epoch": 1},
        {"name": "ft", "kind": "structured", "flops_ratio": 0.6, "retrain": "finetune", "finetune_epochs": 1},
        {"name": "q8", "kind": "int8", "source": "base"},
        {"name": "h16", "kind": "fp16", "source": "n50"},
        {"name": "m8", "kind": "mixed", "source": "base"},
    ],
}  # fmt: skip
FP32_KINDS = ("base", "structured", "unstructured")


def _drain(make, settings, study_id):
    while True:
        with make() as s:
            pending = s.scalars(
                sa.select(Run.id).where(Run.study_id == study_id, Run.status == "pending").order_by(Run.id)
            ).all()
        if not pending:
            return
        for run_id in pending:
            execute(run_id, settings=settings)


@pytest.mark.slow
def test_every_run_kind_stores_its_results(sqlite_db):
    # A short latency protocol keeps the test quick; its figures must then say meets_spec: false.
    settings = sqlite_db.model_copy(update={"latency_warmup": 1, "latency_runs": 2})
    make = sessionmaker(bind=get_engine(settings))
    with make() as s:
        study_id = create_study(s, parse_spec(SPEC), settings).id
    _drain(make, settings, study_id)
    with make() as s:
        runs = s.scalars(sa.select(Run).where(Run.study_id == study_id)).all()
        errors = {r.id: r.error for r in runs if r.status != "succeeded"}
        assert not errors
        variants = {v.name: v for v in s.scalars(sa.select(Variant).where(Variant.study_id == study_id))}
        by = {
            (variants_by_id.name, r.kind): r
            for r in runs
            for variants_by_id in [s.get(Variant, r.variant_id)]
        }
        for name in ("base", "n50", "sp", "ft"):
            train = by[(name, "train")]
            assert 10.0 < train.top1 <= 100.0, name
            epochs = s.scalars(sa.select(EpochMetric.epoch).where(EpochMetric.run_id == train.id)).all()
            assert sorted(epochs) == ([1] if name == "ft" else [1, 2])
            assert (settings.artifact_root / train.model_path).is_file()
        assert 0.49 <= variants["n50"].flops_ratio_achieved <= 0.51
        assert len(set(variants["n50"].kept_fractions.values())) > 1  # nonuniform: per-layer fractions differ
        assert variants["n50"].flops < variants["base"].flops
        # unstructured: 70 % of the weights stay zero through (rewind) retraining
        assert variants["sp"].params_nonzero < 0.35 * variants["sp"].params
        assert variants["sp"].size_sparse_bytes < variants["sp"].size_bytes
        assert by[("base", "train")].result["rewind_snapshot"].endswith("rewind_e1.pt")
        fast = by[("base", "train")].result["fast_path"]  # what the worker's device actually used
        assert fast["channels_last"] is True and fast["cuda_graph"] is False  # a CPU worker
        assert fast["optimizer"] in ("sgd-fused", "sgd-foreach")
        # quantised evaluations, measured by the runtime that runs them
        assert abs(by[("q8", "quantise")].top1 - by[("base", "train")].top1) < 5.0
        assert by[("h16", "quantise")].top1 is not None
        assert (
            variants["q8"].model_path.endswith(".onnx")
            and variants["q8"].size_bytes < variants["base"].size_bytes
        )
        onnx_files = {
            a.variant_id: a.path
            for a in s.scalars(
                sa.select(Artefact).where(Artefact.kind == "onnx", Artefact.variant_id.is_not(None))
            )
        }
        for v in variants.values():
            _assert_latency_by_runtime(v, onnx_files.get(v.id), settings)
            assert v.histograms and v.measured["environment"], v.name
        assert s.scalar(sa.select(sa.func.count()).select_from(Artefact)) >= 10
        assert s.get(Study, study_id).status == "succeeded"
    _assert_compare_within_runtimes(settings, study_id)


def _assert_compare_within_runtimes(settings, study_id: int) -> None:
    """/compare of the measured study: every row holds ONNX Runtime CPU and torch CPU records, the
    default runtime is ONNX Runtime CPU, and each ratio is taken on the runtime of its figure."""
    from fastapi.testclient import TestClient

    from backend.api import create_app

    with TestClient(create_app(settings)) as client:
        compare = client.get(f"/api/v1/studies/{study_id}/compare").json()
    rows = {row["name"]: row for row in compare["variants"]}
    assert set(rows) == {v["name"] for v in SPEC["variants"]}
    for name, row in rows.items():
        assert {"onnxruntime-cpu", "torch-cpu"} <= set(row["latency"]), name
    section = compare["latency"]
    assert section["default_runtime"] == "onnxruntime-cpu"
    assert section["runtimes"][:2] == ["onnxruntime-cpu", "torch-cpu"]
    for runtime, table in section["by_runtime"].items():
        for r in table["rows"]:
            record = rows[r["variant"]]["latency"][runtime]
            base = rows["base"]["latency"][runtime]["by_batch"][r["batch"]]["median_ms"]
            if r["timed"]:
                assert r["median_ms"] == record["by_batch"][r["batch"]]["median_ms"]
            if r["variant"] != "base":
                assert (r["latency_ratio"] is not None) == r["timed"], (runtime, r)
            if r["latency_ratio"] is not None:
                assert r["latency_ratio"] == pytest.approx(r["median_ms"] / base)
    ort = {(r["variant"], r["batch"]): r for r in section["by_runtime"]["onnxruntime-cpu"]["rows"]}
    torch_cpu = {(r["variant"], r["batch"]): r for r in section["by_runtime"]["torch-cpu"]["rows"]}
    assert ort[("q8", "1")]["latency_ratio"] is not None and torch_cpu[("q8", "1")]["latency_ratio"] is None
    assert "int8 runs only in ONNX Runtime" in torch_cpu[("q8", "1")]["reason"]
    assert ort[("h16", "1")]["timed"] is False and torch_cpu[("h16", "1")]["latency_ratio"] is not None
    assert ort[("n50", "1")]["flops_ratio"] == pytest.approx(rows["n50"]["flops_kept"])
    assert "dense kernels do not skip zeros" in ort[("sp", "1")]["note"]


def _assert_latency_by_runtime(v: Variant, onnx_file: str | None, settings) -> None:
    """Every variant is timed on ONNX Runtime CPU and torch CPU, each record under its runtime's
    name; a runtime that cannot run the variant's precision says so with a reason, never a figure."""
    latency = v.latency
    assert {"onnxruntime-cpu", "torch-cpu"} <= set(latency), (v.name, latency)
    assert v.measured["latency_runtimes"] == list(latency)
    for name, record in latency.items():
        assert record["runtime"] == name, v.name
        if record["supported"]:
            assert set(record["by_batch"]) == {"1", "32"}, (v.name, name)
            assert all(t["median_ms"] > 0 for t in record["by_batch"].values()), (v.name, name)
            assert (record["warmup"], record["runs"], record["meets_spec"]) == (1, 2, False)
            assert record["device_name"] and record["library_version"], (v.name, name)
        else:
            assert "by_batch" not in record and record["reason"], (v.name, name)
    ort, torch_cpu = latency["onnxruntime-cpu"], latency["torch-cpu"]
    if v.kind in FP32_KINDS:
        # ORT times the variant's own fp32 export, kept as a variant artefact
        assert ort["supported"] and torch_cpu["supported"], v.name
        assert (ort["precision"], ort["model_format"], torch_cpu["model_format"]) == (
            "fp32",
            "onnx-fp32",
            "torch",
        )
        assert ort["max_abs_diff_vs_torch"] < 1e-3, v.name
        assert onnx_file and onnx_file.endswith("model_fp32.onnx"), v.name
        assert (settings.artifact_root / onnx_file).is_file()
    elif v.kind in ("int8", "mixed"):
        assert ort["supported"] and (ort["precision"], ort["model_format"]) == ("int8", "onnx-qdq"), v.name
        assert torch_cpu["supported"] is False and "int8 runs only in ONNX Runtime" in torch_cpu["reason"]
    else:  # fp16: torch times the half copy; ORT's CPU provider would run it as fp32
        assert v.kind == "fp16"
        assert torch_cpu["supported"] and torch_cpu["precision"] == "fp16"
        assert ort["supported"] is False and "casts an fp16 graph back to fp32" in ort["reason"]


def test_latency_settings_are_bounded_like_the_engine():
    from backend.settings import Settings
    from workers.engine.measure import MAX_RUNS, MAX_WARMUP, SPEC_MIN_RUNS, SPEC_MIN_WARMUP

    fields = Settings.model_fields
    assert (fields["latency_warmup"].default, fields["latency_runs"].default) == (
        SPEC_MIN_WARMUP,
        SPEC_MIN_RUNS,
    )
    assert {m.le for m in fields["latency_warmup"].metadata if hasattr(m, "le")} == {MAX_WARMUP}
    assert {m.le for m in fields["latency_runs"].metadata if hasattr(m, "le")} == {MAX_RUNS}
    defaults = {f.name: f.default for f in dataclasses.fields(RunInput)}
    assert (defaults["latency_warmup"], defaults["latency_runs"]) == (SPEC_MIN_WARMUP, SPEC_MIN_RUNS)
    with pytest.raises(ValueError, match="latency_runs"):
        Settings(latency_runs=0)


def test_domain_error_fails_the_run_and_cancels_dependents(sqlite_db):
    settings = sqlite_db
    spec = {**SPEC, "variants": [SPEC["variants"][0], {"name": "sr", "kind": "structured", "flops_ratio": 0.5,
                                                        "retrain": "rewind", "rewind_epoch": 1}]}  # fmt: skip
    make = sessionmaker(bind=get_engine(settings))
    with make() as s:
        study_id = create_study(s, parse_spec(spec), settings).id
    _drain(make, settings, study_id)
    with make() as s:
        runs = s.scalars(sa.select(Run).where(Run.study_id == study_id, Run.kind == "train")).all()
        failed = [r for r in runs if r.status == "failed"]
        assert len(failed) == 1 and "rewind retraining is supported for unstructured" in failed[0].error
        assert failed[0].attempts == 1  # a domain error is not retried
        assert s.get(Study, study_id).status == "failed"
