"""Issue 17 in the spec and the plan: `scans` (sensitivity scans) and `iterations` (iterative
pruning) are validated field by field, and the planner, `count_runs` and POST /studies/plan agree
on the scan runs they add and on what an iterative prune run retrains."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from backend.services.planner import plan_study, summarise_plan
from backend.spec import count_runs, parse_spec
from tests.backend.conftest import DEMO_SPEC

API = "/api/v1"


def _spec(scans=None, **variant_changes) -> dict:
    """DEMO_SPEC (base, u50 structured, q8 int8) with `scans` and changes to u50."""
    spec = copy.deepcopy(DEMO_SPEC)
    spec["variants"][1].update(variant_changes)
    if scans is not None:
        spec["scans"] = scans
    return spec


def _errors(data) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        parse_spec(data)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in info.value.errors()]


# --- scans -------------------------------------------------------------------------------------------
def test_scans_default_to_none_and_fill_their_defaults():
    assert parse_spec(DEMO_SPEC).scans == []
    (scan,) = parse_spec(_spec(scans=[{"kind": "unstructured"}])).scans
    assert (scan.scope, scan.on) == ("global", "base")
    assert scan.fractions == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def test_scan_fractions_are_stored_sorted_without_duplicates():
    spec = parse_spec(
        _spec(scans=[{"kind": "structured", "scope": "layer", "fractions": [0.5, 0, 0.25, 0.5]}])
    )
    assert spec.scans[0].fractions == [0.0, 0.25, 0.5]
    assert spec.model_dump(mode="json")["scans"][0]["fractions"] == [0.0, 0.25, 0.5]


@pytest.mark.parametrize(
    ("scan", "field", "words"),
    [
        ({"kind": "unstructured", "fractions": [0.5, 1.0]}, "scans.0.fractions", "[0, 1)"),
        ({"kind": "unstructured", "fractions": [-0.1]}, "scans.0.fractions", "[0, 1)"),
        (
            {"kind": "unstructured", "fractions": [i / 25 for i in range(21)]},
            "scans.0.fractions",
            "at most 20",
        ),
        ({"kind": "unstructured", "fractions": []}, "scans.0.fractions", "at least 1"),
        ({"kind": "unstructured", "fractions": [float("nan")]}, "scans.0.fractions.0", "finite"),
        ({"kind": "channels"}, "scans.0.kind", "structured"),
        ({"kind": "structured", "scope": "block"}, "scans.0.scope", "layer"),
        ({"kind": "structured", "on": "best"}, "scans.0.on", "base"),
        ({"kind": "structured", "extra": 1}, "scans.0.extra", "not permitted"),
    ],
)
def test_bad_scans_are_refused_naming_the_field(scan, field, words):
    errors = _errors(_spec(scans=[scan]))
    assert any(loc == field and words in msg for loc, msg in errors), errors


def test_too_many_scans_and_structured_scans_of_a_model_that_cannot_be_filter_pruned():
    errors = _errors(_spec(scans=[{"kind": "unstructured"}] * 9))
    assert any(loc == "scans" and "at most 8" in msg for loc, msg in errors), errors
    shufflenet = {
        **DEMO_SPEC,
        "model": {"name": "shufflenet_v2_x1_0"},
        "variants": [DEMO_SPEC["variants"][0]],
        "scans": [{"kind": "unstructured"}, {"kind": "structured"}],
    }
    ((_, msg),) = _errors(shufflenet)
    assert "scans[1]" in msg and "cannot be filter-pruned" in msg
    shufflenet["scans"] = shufflenet["scans"][:1]
    assert len(parse_spec(shufflenet).scans) == 1  # an unstructured scan of it is fine


# --- iterations --------------------------------------------------------------------------------------
def test_iterations_default_to_one_and_accept_one_to_ten():
    assert parse_spec(DEMO_SPEC).variant("u50").iterations == 1
    assert parse_spec(_spec(iterations=10)).variant("u50").iterations == 10


@pytest.mark.parametrize(
    ("iterations", "words"), [(0, "greater than or equal to 1"), (11, "less than or equal to 10")]
)
def test_iterations_out_of_range_are_refused(iterations, words):
    errors = _errors(_spec(iterations=iterations))
    assert any(loc == "variants.1.structured.iterations" and words in msg for loc, msg in errors), errors


def test_iterations_against_the_retrain_mode_and_the_target():
    errors = _errors(_spec(iterations=3, retrain="rewind", rewind_epoch=1))
    assert any("cannot use retrain 'rewind' on a structured variant" in msg for _, msg in errors), errors
    errors = _errors(_spec(iterations=3, flops_ratio=1.0))
    assert any("needs flops_ratio < 1" in msg for _, msg in errors), errors
    unstructured = copy.deepcopy(DEMO_SPEC)
    unstructured["variants"][1] = {"name": "sp", "kind": "unstructured", "amount": 0.0, "iterations": 2}
    assert any("needs amount > 0" in msg for _, msg in _errors(unstructured))
    # rewinding every round to the base's early weights is iterative magnitude pruning: allowed
    unstructured["variants"][1].update(amount=0.8, retrain="rewind", rewind_epoch=1)
    assert parse_spec(unstructured).variant("sp").iterations == 2
    # one round with rewind on a structured variant stays what it was (refused by the worker)
    assert parse_spec(_spec(retrain="rewind", rewind_epoch=1)).variant("u50").iterations == 1


# --- the plan ----------------------------------------------------------------------------------------
def test_a_scan_run_per_scanned_variant_blocked_on_its_prior_train_run():
    spec = parse_spec(
        _spec(scans=[{"kind": "structured", "scope": "layer"}, {"kind": "unstructured", "on": "all"}])
    )
    plan = plan_study(spec)
    scans = [r for r in plan.runs if r.kind == "scan"]
    # base gets both scans in one run, u50 the `on: all` one; the int8 variant none
    assert [(r.variant, r.depends_on) for r in scans] == [
        ("base", ("base", "train", 0, 0, 0)),
        ("u50", ("u50", "train", 0, 0, 0)),
    ]
    assert [i for i, _ in spec.scans_for("base")] == [0, 1] and [
        i for i, _ in spec.scans_for("structured")
    ] == [1]
    assert spec.scans_for("int8") == []
    position = {r.key: n for n, r in enumerate(plan.runs)}
    assert all(position[r.depends_on] < position[r.key] for r in scans)
    assert plan.count_by_kind() == count_runs(spec)
    assert count_runs(spec)["scan"] == 2 and count_runs(spec)["total"] == 58 + 2
    # an extension plans grid points only: no second scan run
    assert all(r.kind != "scan" for r in plan_study(spec, [(2, 0)]).runs)
    only_base = parse_spec(_spec(scans=[{"kind": "unstructured"}]))
    assert [r.variant for r in plan_study(only_base).runs if r.kind == "scan"] == ["base"]


def test_plan_summary_shows_iterations_and_the_epochs_a_prune_run_retrains():
    spec = parse_spec(_spec(iterations=3, retrain="finetune", finetune_epochs=2))
    rows = {v.name: v for v in summarise_plan(spec).variants}
    assert (rows["u50"].iterations, rows["u50"].prune_epochs, rows["u50"].prune) == (3, 6, 1)
    assert (rows["base"].iterations, rows["base"].prune_epochs) == (None, 0)
    scratch = {v.name: v for v in summarise_plan(parse_spec(_spec(iterations=4))).variants}
    assert scratch["u50"].prune_epochs == 4 * 3  # the full recipe (3 epochs) per round
    assert {v.name: v.prune_epochs for v in summarise_plan(parse_spec(DEMO_SPEC)).variants}["u50"] == 0


def test_plan_preview_and_creation_count_scan_runs(client):
    spec = _spec(scans=[{"kind": "unstructured", "on": "all"}], iterations=2)
    preview = client.post(f"{API}/studies/plan", json=spec)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["run_counts"] == {
        "train": 36,
        "prune": 1,
        "quantise": 18,
        "measure": 3,
        "scan": 2,
        "total": 60,
    }
    u50 = next(v for v in body["variants"] if v["name"] == "u50")
    assert (u50["scan"], u50["iterations"], u50["prune_epochs"], u50["total"]) == (1, 2, 6, 21)
    created = client.post(f"{API}/studies", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["run_counts"] == body["run_counts"]
    assert created.json()["spec"]["scans"][0]["on"] == "all"
    runs = client.get(f"{API}/studies/{created.json()['id']}/runs", params={"kind": "scan"}).json()["items"]
    assert sorted((r["variant"], r["status"]) for r in runs) == [("base", "blocked"), ("u50", "blocked")]
    bad = client.post(f"{API}/studies/plan", json=_spec(scans=[{"kind": "structured", "fractions": [1.0]}]))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:4] == ["body", "scans", 0, "fractions"]
