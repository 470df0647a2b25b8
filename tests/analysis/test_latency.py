"""The latency ratio rule: ratios, "not faster" flags and Pareto fronts within one runtime only."""

from __future__ import annotations

import json
import random

import pytest

from backend.analysis.latency import (
    DEFAULT_RUNTIME,
    UNSTRUCTURED_NOTE,
    latency_comparison,
    latency_records,
    pareto_names,
)


def record(runtime: str, **medians: float) -> dict:
    """A measured record as the engine writes it; medians keyed b1, b32."""
    return {
        "runtime": runtime,
        "supported": True,
        "precision": "fp32",
        "device": "cpu",
        "device_name": "test CPU",
        "threads": 2,
        "warmup": 10,
        "runs": 50,
        "meets_spec": True,
        "by_batch": {
            key[1:]: {"median_ms": ms, "p90_ms": ms * 1.1, "min_ms": ms * 0.9, "images_per_s": 1.0}
            for key, ms in medians.items()
        },
    }


def not_supported(runtime: str, reason: str) -> dict:
    return {"runtime": runtime, "supported": False, "precision": "int8", "reason": reason}


def row(comparison: dict, runtime: str, variant: str, batch: str = "1") -> dict:
    rows = comparison["by_runtime"][runtime]["rows"]
    return next(r for r in rows if r["variant"] == variant and r["batch"] == batch)


# The figures (resnet18, 2-core CPU): fp32 torch 36.0 ms, fp32 ORT 16.8 ms, int8 ORT 6.5 ms.
STUDY = [
    {
        "name": "base",
        "kind": "base",
        "accuracy": 92.0,
        "flops_ratio": 1.0,
        "latency": {
            "onnxruntime-cpu": record("onnxruntime-cpu", b1=16.8, b32=514.0),
            "torch-cpu": record("torch-cpu", b1=36.0, b32=869.0),
        },
    },
    {
        "name": "q8",
        "kind": "int8",
        "accuracy": 91.5,
        "flops_ratio": 1.0,
        "latency": {
            "onnxruntime-cpu": record("onnxruntime-cpu", b1=6.5, b32=169.0),
            "torch-cpu": not_supported("torch-cpu", "int8 runs only in ONNX Runtime here"),
        },
    },
    {
        "name": "u60",
        "kind": "structured",
        "accuracy": 91.0,
        "flops_ratio": 0.6,
        "latency": {
            "onnxruntime-cpu": record("onnxruntime-cpu", b1=17.0, b32=330.0),
            "torch-cpu": record("torch-cpu", b1=25.0, b32=560.0),
        },
    },
    {
        "name": "sp50",
        "kind": "unstructured",
        "accuracy": 91.8,
        "flops_ratio": 1.0,
        "latency": {
            "onnxruntime-cpu": record("onnxruntime-cpu", b1=16.9, b32=512.0),
            "torch-cpu": record("torch-cpu", b1=36.5, b32=870.0),
        },
    },
]


def test_int8_ratio_is_against_fp32_on_the_same_runtime():
    comparison = latency_comparison(STUDY, "base").to_dict()
    q8 = row(comparison, "onnxruntime-cpu", "q8")
    assert q8["latency_ratio"] == pytest.approx(6.5 / 16.8)
    assert q8["speedup"] == pytest.approx(16.8 / 6.5)  # 2.6x, not the 5.6x against eager torch
    assert q8["not_faster"] is False
    # On torch the int8 variant has no figure, so no ratio either, and it says why.
    q8_torch = row(comparison, "torch-cpu", "q8")
    assert q8_torch["timed"] is False and q8_torch["latency_ratio"] is None and q8_torch["speedup"] is None
    assert q8_torch["reason"] == "int8 runs only in ONNX Runtime here"
    assert comparison["default_runtime"] == DEFAULT_RUNTIME == "onnxruntime-cpu"
    assert comparison["runtimes"] == ["onnxruntime-cpu", "torch-cpu"]
    assert comparison["batch_sizes"] == ["1", "32"]
    json.dumps(comparison, allow_nan=False)


def test_no_ratio_mixes_runtimes():
    """Every ratio is the variant's median over the base's median on the same runtime and batch."""
    rng = random.Random(3)
    runtimes = ["onnxruntime-cpu", "torch-cpu", "torch-cuda", "onnxruntime-cuda"]
    variants = []
    for i in range(8):
        latency = {}
        for runtime in runtimes:
            if rng.random() < 0.6:  # each variant timed on a random subset of the runtimes
                latency[runtime] = record(runtime, b1=rng.uniform(1, 50), b32=rng.uniform(20, 900))
        name = "base" if i == 0 else f"v{i}"
        variants.append({"name": name, "kind": "base" if i == 0 else "structured", "latency": latency})
    comparison = latency_comparison(variants, "base").to_dict()
    stored = {v["name"]: v["latency"] for v in variants}
    n_ratios = 0
    for runtime, block in comparison["by_runtime"].items():
        for r in block["rows"]:
            own = stored[r["variant"]].get(runtime)
            base = stored["base"].get(runtime)
            if r["variant"] == "base" or own is None or base is None:
                assert r["latency_ratio"] is None, (runtime, r)
                continue
            expected = own["by_batch"][r["batch"]]["median_ms"] / base["by_batch"][r["batch"]]["median_ms"]
            assert r["latency_ratio"] == pytest.approx(expected), (runtime, r)
            assert r["median_ms"] == own["by_batch"][r["batch"]]["median_ms"]
            n_ratios += 1
    assert n_ratios > 10  # the draw exercised the rule


def test_records_of_the_earlier_shape_give_no_cross_runtime_ratio():
    # Today's stored shape: base timed in eager torch, int8 in ORT. The ratio the dashboard showed
    # (36.0 / 6.5 = 5.6x) is exactly the one the rule must not take.
    legacy_base = {"runtime": "torch", "device": "cpu", "by_batch": {"1": {"median_ms": 36.0}}}
    legacy_base["batches"] = legacy_base["by_batch"]
    legacy_q8 = {"runtime": "onnxruntime", "device": "cpu", "by_batch": {"1": {"median_ms": 6.5}}}
    comparison = latency_comparison(
        [{"name": "base", "latency": legacy_base}, {"name": "q8", "latency": legacy_q8}], "base"
    ).to_dict()
    assert comparison["runtimes"] == ["onnxruntime-cpu", "torch-cpu"]
    on_ort = row(comparison, "onnxruntime-cpu", "q8")
    assert on_ort["median_ms"] == 6.5 and on_ort["latency_ratio"] is None
    assert on_ort["reason"] == "base has no figure on onnxruntime-cpu at batch 1: no ratio"
    assert comparison["by_runtime"]["onnxruntime-cpu"]["base_timed"] is False
    assert row(comparison, "torch-cpu", "q8")["reason"] == "not timed on torch-cpu"
    assert all(r["latency_ratio"] is None for b in comparison["by_runtime"].values() for r in b["rows"])


def test_latency_records_reads_both_shapes_and_never_refiles_a_figure():
    legacy = {
        "runtime": "torch",
        "device": "cpu",
        "by_batch": {"1": {"median_ms": 2.0}},
        "cuda": {"runtime": "torch", "device": "cuda", "by_batch": {"1": {"median_ms": 0.5}}},
    }
    records = latency_records(legacy)
    assert list(records) == ["torch-cpu", "torch-cuda"]
    assert records["torch-cuda"]["by_batch"]["1"]["median_ms"] == 0.5 and "cuda" not in records["torch-cpu"]
    # A record filed under another runtime's key is dropped, not re-labelled.
    misfiled = {"torch-cpu": record("onnxruntime-cpu", b1=1.0), "torch-cuda": record("torch-cuda", b1=0.1)}
    assert list(latency_records(misfiled)) == ["torch-cuda"]
    assert latency_records(None) == {} and latency_records("fast") == {}


def test_not_faster_flags_and_the_unstructured_note():
    comparison = latency_comparison(STUDY, "base").to_dict()
    ort = comparison["by_runtime"]["onnxruntime-cpu"]
    # u60 keeps 60 % of the FLOPs but is slower than the base at batch 1 on ORT, faster at 32.
    u60 = row(comparison, "onnxruntime-cpu", "u60")
    assert u60["flops_ratio"] == 0.6 and u60["latency_ratio"] == pytest.approx(17.0 / 16.8)
    assert (
        u60["not_faster"] is True and row(comparison, "onnxruntime-cpu", "u60", "32")["not_faster"] is False
    )
    assert ort["not_faster"] == {"1": ["u60", "sp50"], "32": []}
    assert "u60 is not faster than base on onnxruntime-cpu at batch 1 (latency x1.01)" in ort["messages"]
    # On torch u60 is faster at batch 1: the flag is per runtime.
    assert row(comparison, "torch-cpu", "u60")["not_faster"] is False
    assert comparison["by_runtime"]["torch-cpu"]["not_faster"]["1"] == ["sp50"]
    sp50 = row(comparison, "torch-cpu", "sp50")
    assert sp50["note"] == UNSTRUCTURED_NOTE and "do not skip zeros" in sp50["note"]
    assert row(comparison, "torch-cpu", "u60")["note"] is None
    assert row(comparison, "onnxruntime-cpu", "base")["not_faster"] is None


def test_pareto_front_is_per_runtime():
    comparison = latency_comparison(STUDY, "base").to_dict()
    # ORT, batch 1: q8 (6.5 ms, 91.5) then base (16.8, 92.0); u60 and sp50 are dominated by base.
    assert comparison["by_runtime"]["onnxruntime-cpu"]["pareto_front"]["1"] == ["q8", "base"]
    # torch, batch 1: q8 has no figure; u60 (25.0, 91.0), then base (36.0, 92.0).
    assert comparison["by_runtime"]["torch-cpu"]["pareto_front"]["1"] == ["u60", "base"]
    assert row(comparison, "torch-cpu", "u60")["on_pareto_front"] is True
    assert row(comparison, "onnxruntime-cpu", "u60")["on_pareto_front"] is False
    assert row(comparison, "torch-cpu", "q8")["on_pareto_front"] is False


def test_pareto_names_ties_and_dominance():
    assert pareto_names([(2.0, 90.0, "a"), (1.0, 90.0, "b"), (3.0, 95.0, "c"), (3.0, 94.0, "d")]) == [
        "b",
        "c",
    ]
    assert pareto_names([(1.0, 90.0, "first"), (1.0, 90.0, "second")]) == ["first"]
    assert pareto_names([]) == []


def test_default_runtime_falls_back_and_unsupported_records_are_not_figures():
    only_torch = [
        {"name": "base", "latency": {"torch-cpu": record("torch-cpu", b1=3.0)}},
        {
            "name": "h16",
            "latency": {
                "onnxruntime-cpu": not_supported("onnxruntime-cpu", "casts fp16 back to fp32"),
                "torch-cpu": record("torch-cpu", b1=4.0),
            },
        },
    ]
    comparison = latency_comparison(only_torch, "base").to_dict()
    assert comparison["runtimes"] == ["torch-cpu"] and comparison["default_runtime"] == "torch-cpu"
    assert row(comparison, "torch-cpu", "h16")["not_faster"] is True
    empty = latency_comparison([{"name": "base", "latency": None}], "base").to_dict()
    assert empty["runtimes"] == [] and empty["default_runtime"] is None and empty["by_runtime"] == {}
    with pytest.raises(ValueError, match="unique"):
        latency_comparison([{"name": "a"}, {"name": "a"}], "a")
