"""Run planning for base + structured + int8 at 3x3 x 2 repeats, counted by hand:
base: 9 points x 2 seeds = 18 train + 1 measure; u50: 1 prune + 18 train + 1 measure;
q8: 18 quantise + 1 measure. Total 58."""

from __future__ import annotations

from backend.services.planner import extension_points, plan_study
from backend.spec import count_runs, parse_spec
from tests.backend.conftest import DEMO_SPEC


def test_counts_by_variant_and_kind():
    plan = plan_study(parse_spec(DEMO_SPEC))
    by = {}
    for run in plan.runs:
        by[(run.variant, run.kind)] = by.get((run.variant, run.kind), 0) + 1
    assert by == {
        ("base", "train"): 18,
        ("base", "measure"): 1,
        ("u50", "prune"): 1,
        ("u50", "measure"): 1,
        ("u50", "train"): 18,
        ("q8", "quantise"): 18,
        ("q8", "measure"): 1,
    }
    assert len(plan.runs) == 58
    assert plan.count_by_kind() == count_runs(parse_spec(DEMO_SPEC))
    assert len({run.key for run in plan.runs}) == 58  # keys are unique


def test_dependencies():
    plan = plan_study(parse_spec(DEMO_SPEC))
    keys = [run.key for run in plan.runs]
    position = {key: n for n, key in enumerate(keys)}
    for run in plan.runs:
        if run.depends_on is not None:
            assert position[run.depends_on] < position[run.key], "topological order"
        assert run.initial_status == ("pending" if run.depends_on is None else "blocked")
    prune = next(r for r in plan.runs if r.kind == "prune")
    assert prune.depends_on == ("base", "train", 0, 0, 0)  # base run at the prior, seed 0
    u50_trains = [r for r in plan.runs if r.variant == "u50" and r.kind == "train"]
    assert {r.depends_on for r in u50_trains} == {("u50", "prune", None, None, 0)}
    for q in (r for r in plan.runs if r.kind == "quantise"):
        assert q.depends_on == ("base", "train", q.grid_i, q.grid_j, q.seed)
        assert (q.lr, q.wd) == next((r.lr, r.wd) for r in plan.runs if r.key == q.depends_on)
    measures = {r.variant: r.depends_on for r in plan.runs if r.kind == "measure"}
    # Each variant is measured on the model it ships: the base trained at the prior, the pruned
    # model, and the ONNX model the quantise run at the prior made (not quantised a third time).
    assert measures == {
        "base": ("base", "train", 0, 0, 0),
        "u50": ("u50", "prune", None, None, 0),
        "q8": ("q8", "quantise", 0, 0, 0),
    }
    ready = [r for r in plan.runs if r.depends_on is None]
    assert len(ready) == 18  # the 18 base trains


def test_grid_values_of_runs():
    plan = plan_study(parse_spec(DEMO_SPEC))
    prior = [r for r in plan.runs if r.kind == "train" and r.grid_i == 0 and r.grid_j == 0]
    assert {(r.lr, r.wd) for r in prior} == {(0.1, 1e-4)}
    assert {r.seed for r in plan.runs if r.kind == "train"} == {0, 1}


def test_extension_plans_only_new_points_and_refers_to_existing_prune():
    spec = parse_spec({**DEMO_SPEC, "grid": {**DEMO_SPEC["grid"], "lr_range": [-1, 2]}})
    points = extension_points((-1, 1), (-1, 1), (-1, 2), (-1, 1))
    assert points == [(2, -1), (2, 0), (2, 1)]
    plan = plan_study(spec, points)
    assert plan.variants == []
    assert plan.count_by_kind() == {
        "train": 12,
        "prune": 0,
        "quantise": 6,
        "measure": 0,
        "scan": 0,
        "total": 18,
    }
    assert all(r.grid_i == 2 for r in plan.runs)
    assert {r.depends_on for r in plan.runs if r.variant == "u50"} == {("u50", "prune", None, None, 0)}
