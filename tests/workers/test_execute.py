"""The task body (`workers.tasks.execute`) runs every kind of run of a small study through the
real engine, without Celery: results, variant measurements, artefacts and epochs end up stored."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from backend.db.models import Artefact, EpochMetric, Run, Study, Variant
from backend.db.session import get_engine
from backend.services.study_creation import create_study
from backend.spec import parse_spec
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
    ],
}  # fmt: skip


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
    settings = sqlite_db
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
        for v in variants.values():
            assert v.latency["by_batch"]["1"]["median_ms"] > 0, v.name
            assert v.histograms and v.measured["environment"], v.name
        assert s.scalar(sa.select(sa.func.count()).select_from(Artefact)) >= 10
        assert s.get(Study, study_id).status == "succeeded"


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
