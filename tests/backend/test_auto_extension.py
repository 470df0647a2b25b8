"""Auto-extension (issue 16 item 1): the sides chosen under the limits, the verdicts, the study
status while a decision is due, and the records in the API. A stand-in worker finishes the runs
with accuracies from a known quadratic landscape, so every expected row can be worked out by hand;
the same pass on real digits training is in tests/workers/test_auto_extension_digits.py."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa

from backend.db import lifecycle
from backend.db.models import Run, Study, Variant
from backend.db.session import session_factory
from backend.extension_records import (
    BUDGET_SPENT,
    ENCLOSED,
    GRID_LIMIT,
    RUN_LIMIT,
    extension_due,
    finished_mark,
    standing_verdict,
)
from backend.run_states import study_status
from backend.services.auto_extension import added_points, auto_extend_pass, choose_sides
from backend.services.errors import Conflict
from backend.services.study_extension import extend_study
from backend.spec import parse_spec

API = "/api/v1"
STEP = 0.5
LR_OPT, WD_OPT = 0.1, 1e-3  # the base's optimum
# The prior sits two lr steps below the base's optimum: lr0 = 0.1 * 10 ** (-2 * 0.5).
SPEC = {
    "name": "auto",
    "dataset": {"name": "digits"},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 1, "batch_size": 64},
    "grid": {
        "lr_centre": LR_OPT * 10 ** (-2 * STEP),
        "wd_centre": WD_OPT,
        "step": STEP,
        "size": 3,
        "auto_extend": {"max_points": 40, "level": 1.0},
    },
    "variants": [{"name": "base", "kind": "base"}, {"name": "q8", "kind": "int8", "source": "base"}],
}


def accuracy(variant: str, lr: float, wd: float) -> float:
    """95 - 3 (dlr^2 + dwd^2) in log10 units around the optimum: one step (0.5) off costs 0.75
    points (inside the 1.0-ROI), two steps 3 (outside). u50's optimum is one lr step higher."""
    lr_opt = LR_OPT * (10**STEP if variant == "u50" else 1.0)
    dy, dx = math.log10(lr) - math.log10(lr_opt), math.log10(wd) - math.log10(WD_OPT)
    value = 95.0 - 3.0 * (dx * dx + dy * dy)
    return value - 0.2 if variant == "q8" else value


def finish_pending(settings, *, where=None) -> int:
    """The stand-in worker: claim and finish every pending run (train/quantise with the landscape's
    accuracy); `where` narrows which. Returns how many it finished."""
    make = session_factory(settings)
    done = 0
    while True:
        with make() as session:
            query = (
                sa.select(Run.id, Run.kind, Run.lr, Run.wd, Variant.name)
                .join(Variant, Variant.id == Run.variant_id)
                .where(Run.status == "pending")
                .order_by(Run.id)
            )
            if where is not None:
                query = query.where(where)
            runs = session.execute(query).all()
            if not runs:
                return done
            for run_id, kind, lr, wd, variant in runs:
                claim = lifecycle.claim_run(
                    session, run_id, "stand-in@test", max_attempts=3, stale_after_s=600
                )
                assert claim.claimed, claim
                top1 = accuracy(variant, lr, wd) if kind in ("train", "quantise") else None
                lifecycle.finish_run(
                    session, run_id, "stand-in@test", status="succeeded", top1=top1, top5=99.0
                )
                done += 1


def run_pass(settings) -> list[dict]:
    with session_factory(settings)() as session:
        return auto_extend_pass(session, settings)


def drive(client, settings, sid, *, max_rounds=10) -> list[dict]:
    """Finish runs and run the pass until it records a verdict; returns every record of the pass."""
    made = []
    for _ in range(max_rounds):
        finish_pending(settings)
        study = client.get(f"{API}/studies/{sid}").json()
        # the last run has finished but no verdict stands: not finished yet
        assert study["status"] == "running", study["status"]
        assert study["auto_extension"]["state"] == "deciding"
        records = run_pass(settings)
        assert len(records) == 1, records
        made += records
        if records[0]["kind"] == "stop":
            return made
    raise AssertionError(f"no verdict after {max_rounds} rounds: {made}")


def create(client, spec) -> int:
    response = client.post(f"{API}/studies", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def with_auto(**auto) -> dict:
    spec = {**SPEC, "grid": {**SPEC["grid"], "auto_extend": {**SPEC["grid"]["auto_extend"], **auto}}}
    return spec


# --- which sides, under which limits (pure) -------------------------------------------------------
def test_added_points_counts_corners_once():
    assert added_points(3, 3, 1, 0) == 3
    assert added_points(3, 3, 1, 1) == 7
    assert added_points(3, 3, 2, 2) == 16


def test_choose_sides_takes_the_largest_set_that_fits_and_says_why_the_rest_did_not():
    spec = parse_spec(SPEC)  # 3 x 3
    wanted = ["lr_high", "wd_low", "wd_high"]
    chosen, left_out, stop = choose_sides(spec, wanted, budget_left=100, max_grid_size=41, max_runs=20000)
    assert chosen == wanted and left_out == {} and stop is None
    # 11 points for all three; 7 for lr_high + one wd side; 6 for both wd sides (the cheaper pair)
    chosen, left_out, stop = choose_sides(spec, wanted, budget_left=7, max_grid_size=41, max_runs=20000)
    assert chosen == ["wd_low", "wd_high"] and left_out == {"lr_high": BUDGET_SPENT} and stop is None
    chosen, left_out, stop = choose_sides(spec, wanted, budget_left=2, max_grid_size=41, max_runs=20000)
    assert chosen == [] and stop == BUDGET_SPENT
    chosen, left_out, stop = choose_sides(spec, wanted, budget_left=100, max_grid_size=4, max_runs=20000)
    assert chosen in (["lr_high", "wd_low"], ["lr_high", "wd_high"])
    assert set(left_out.values()) == {GRID_LIMIT}
    chosen, _, stop = choose_sides(spec, wanted, budget_left=100, max_grid_size=3, max_runs=20000)
    assert chosen == [] and stop == GRID_LIMIT
    # 3 x 3 x (train + quantise) + 2 measure = 20 runs now; one more row makes 26
    chosen, _, stop = choose_sides(spec, ["lr_high"], budget_left=100, max_grid_size=41, max_runs=25)
    assert chosen == [] and stop == RUN_LIMIT


def test_a_side_past_representable_grid_values_is_a_grid_limit():
    spec = parse_spec({**SPEC, "grid": {**SPEC["grid"], "lr_centre": 1e-299, "step": 1.0}})
    chosen, left_out, stop = choose_sides(spec, ["lr_low"], budget_left=100, max_grid_size=41, max_runs=20000)
    assert chosen == [] and left_out == {"lr_low": GRID_LIMIT} and stop == GRID_LIMIT


def test_a_verdict_stands_for_its_grid_and_the_runs_it_saw():
    spec = parse_spec(SPEC).model_dump(mode="json")
    from datetime import UTC, datetime

    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    stop = {
        "kind": "stop",
        "stopped": ENCLOSED,
        "lr_range": [-1, 1],
        "wd_range": [-1, 1],
        "through": finished_mark(t1),
    }
    assert standing_verdict(spec, [stop], t1) == stop
    assert standing_verdict(spec, [stop], t1.replace(tzinfo=None)) == stop  # SQLite: naive UTC
    assert standing_verdict(spec, [stop], t2) is None  # a run finished since (a retry)
    assert standing_verdict(spec, [{**stop, "lr_range": [-1, 2]}], t1) is None  # another grid
    assert standing_verdict(spec, [stop, {"kind": "manual"}], t1) is None
    assert extension_due("native", spec, [], t1)
    assert not extension_due("native", spec, [stop], t1)
    assert not extension_due("imported", spec, [], t1)
    off = {**spec, "grid": {**spec["grid"], "auto_extend": None}}
    assert not extension_due("native", off, [], t1)


def test_the_study_rule_keeps_a_study_running_while_an_extension_is_due():
    done = {"succeeded": 5}
    assert study_status("running", done) == "succeeded"
    assert study_status("running", done, extension_due=True) == "running"
    assert study_status("running", {"succeeded": 4, "failed": 1}, extension_due=True) == "running"
    assert study_status("cancelled", done, extension_due=True) == "cancelled"
    assert study_status("running", {"pending": 1, "succeeded": 3}, extension_due=True) == "running"


# --- the pass on a known landscape -----------------------------------------------------------------
def test_prior_two_steps_off_is_extended_until_the_base_roi_is_enclosed(client, settings):
    sid = create(client, SPEC)
    made = drive(client, settings, sid)
    kinds = [r["kind"] for r in made]
    assert kinds == ["auto", "auto", "auto", "stop"]
    # 3 x 3 at lr indices -1..1: the best (i=1, one step below the optimum) and its wd neighbours
    # are on the edges lr high, wd low, wd high; then the optimum itself sits on the lr edge twice.
    assert [r["sides"] for r in made[:3]] == [["lr_high", "wd_low", "wd_high"], ["lr_high"], ["lr_high"]]
    assert [r["added_points"] for r in made[:3]] == [11, 5, 5]
    assert made[0]["triggered_by"] == {"base": ["lr_high", "wd_low", "wd_high"]}
    assert made[-1]["stopped"] == ENCLOSED
    study = client.get(f"{API}/studies/{sid}").json()
    assert study["status"] == "succeeded"
    assert study["spec"]["grid"]["lr_range"] == [-1, 4] and study["spec"]["grid"]["wd_range"] == [-2, 2]
    assert study["auto_extension"] == {
        "max_points": 40,
        "level": 1.0,
        "points_used": 21,
        "points_left": 19,
        "extensions": 3,
        "state": "stopped",
        "stopped": ENCLOSED,
        "why": made[-1]["why"],
    }
    assert [r["kind"] for r in study["extensions"]] == kinds
    assert all(r["at"].endswith("+00:00") for r in study["extensions"])
    analysis = client.get(f"{API}/studies/{sid}/analysis").json()
    base = analysis["results"]["base"]
    assert base["best"]["lr"] == pytest.approx(LR_OPT) and base["best"]["wd"] == pytest.approx(WD_OPT)
    assert base["extension"]["needed"] is False and base["extension"]["level"] == 1.0
    # every variant got the new points: the quantised one has a result on each of the 30
    assert len(analysis["results"]["q8"]["landscape"]["points"]["x"]) == 6 * 5
    # nothing more to do: the next pass neither extends nor repeats the verdict
    assert run_pass(settings) == []


def test_a_small_budget_stops_it_and_the_record_says_so(client, settings):
    sid = create(client, with_auto(max_points=12))
    made = drive(client, settings, sid)
    assert [r["kind"] for r in made] == ["auto", "stop"]
    assert made[0]["points_used"] == 11 and made[0]["points_left"] == 1
    stop = made[-1]
    assert stop["stopped"] == BUDGET_SPENT and stop["wanted"] == {"base": ["lr_high"]}
    assert "lr high" in stop["why"] and "1 of the budget" in stop["why"]
    study = client.get(f"{API}/studies/{sid}").json()
    assert study["status"] == "succeeded"
    assert study["auto_extension"]["stopped"] == BUDGET_SPENT
    assert study["auto_extension"]["points_used"] == 11 <= 12


def test_budget_partly_left_adds_the_sides_that_fit(client, settings):
    sid = create(client, with_auto(max_points=7))
    made = drive(client, settings, sid)
    assert made[0]["sides"] == ["wd_low", "wd_high"] and made[0]["added_points"] == 6
    assert made[0]["left_out"] == {"lr_high": BUDGET_SPENT}
    assert made[-1]["stopped"] == BUDGET_SPENT


def test_the_grid_size_limit_stops_it(client, settings):
    settings.max_grid_size = 4
    sid = create(client, SPEC)
    made = drive(client, settings, sid)
    assert made[-1]["stopped"] == GRID_LIMIT
    study = client.get(f"{API}/studies/{sid}").json()
    grid = study["spec"]["grid"]
    assert (
        grid["lr_range"][1] - grid["lr_range"][0] + 1 <= 4
        and grid["wd_range"][1] - grid["wd_range"][0] + 1 <= 4
    )


def test_edge_runs_finished_is_enough_to_extend(client, settings):
    """The pass does not wait for the interior: with every edge train run finished it extends while
    the prior (the one interior point of a 3 x 3 grid), the quantised runs and the measurements
    have not run yet; one edge run still to come holds it back."""
    create(client, SPEC)
    interior = sa.and_(Run.grid_i == 0, Run.grid_j == 0)
    edge_trains = sa.and_(Run.kind == "train", sa.not_(interior))
    finish_pending(settings, where=edge_trains)
    assert run_pass(settings)[0]["sides"] == ["lr_high", "wd_low", "wd_high"]
    # before the edge has finished nothing happens
    sid2 = create(client, SPEC)
    with session_factory(settings)() as session:
        corner = session.scalar(
            sa.select(Run.id).where(
                Run.study_id == sid2, Run.kind == "train", Run.grid_i == 1, Run.grid_j == 1
            )
        )
    finish_pending(settings, where=sa.and_(Run.study_id == sid2, Run.kind == "train", Run.id != corner))
    assert [r for r in run_pass(settings) if r["study_id"] == sid2] == []


def test_a_pruned_variant_drives_it_too_and_is_named(client, settings):
    spec = {
        **SPEC,
        "grid": {**SPEC["grid"], "lr_centre": LR_OPT, "size": 5},  # the base's optimum at the centre
        "variants": [*SPEC["variants"], {"name": "u50", "kind": "structured", "flops_ratio": 0.5}],
    }
    sid = create(client, spec)
    made = drive(client, settings, sid)
    # base enclosed in 5 x 5; u50's optimum is one lr step up, its ROI reaches lr index 2 + 1 = 3
    assert made[0]["triggered_by"] == {"u50": ["lr_high"]} and made[0]["sides"] == ["lr_high"]
    assert made[-1]["stopped"] == ENCLOSED
    analysis = client.get(f"{API}/studies/{sid}/analysis").json()
    assert analysis["results"]["u50"]["extension"]["needed"] is False


def test_manual_extensions_are_recorded_and_do_not_spend_the_budget(client, settings):
    sid = create(client, SPEC)
    response = client.post(f"{API}/studies/{sid}/extend", json={"wd_high": 1})
    assert response.status_code == 200, response.text
    assert response.json()["record"]["kind"] == "manual"
    study = client.get(f"{API}/studies/{sid}").json()
    assert study["extensions"][0]["kind"] == "manual" and study["extensions"][0]["rows"]["wd_high"] == 1
    assert (
        study["extensions"][0]["added_points"] == 3 and study["extensions"][0]["why"] == "asked for by a user"
    )
    assert study["auto_extension"]["points_used"] == 0


def test_a_study_without_auto_extend_is_untouched(client, settings):
    sid = create(client, {**SPEC, "grid": {k: v for k, v in SPEC["grid"].items() if k != "auto_extend"}})
    finish_pending(settings)
    assert run_pass(settings) == []
    study = client.get(f"{API}/studies/{sid}").json()
    assert study["status"] == "succeeded" and study["auto_extension"] is None and study["extensions"] == []


def test_a_grid_changed_since_the_decision_is_a_conflict_not_a_second_row(client, settings):
    sid = create(client, SPEC)
    with session_factory(settings)() as session:
        with pytest.raises(Conflict):
            extend_study(session, sid, settings, lr_high=1, expect_ranges=([-2, 1], [-1, 1]))
        extend_study(session, sid, settings, lr_high=1, expect_ranges=([-1, 1], [-1, 1]))
        study = session.get(Study, sid)
        session.refresh(study)
        assert study.spec["grid"]["lr_range"] == [-1, 2]


def test_a_retry_after_the_verdict_makes_the_study_due_again(client, settings):
    sid = create(client, with_auto(max_points=12))
    drive(client, settings, sid)
    with session_factory(settings)() as session:
        run_id = session.scalar(sa.select(Run.id).where(Run.study_id == sid, Run.kind == "train").limit(1))
        session.execute(sa.update(Run).where(Run.id == run_id).values(status="failed"))
        session.commit()
    assert client.post(f"{API}/runs/{run_id}/retry").status_code == 200
    finish_pending(settings)
    assert client.get(f"{API}/studies/{sid}").json()["status"] == "running"  # the old verdict saw less
    records = run_pass(settings)
    assert [r["stopped"] for r in records] == [BUDGET_SPENT]
    assert client.get(f"{API}/studies/{sid}").json()["status"] == "succeeded"


@pytest.mark.parametrize(
    ("auto", "field"),
    [
        ({"max_points": 0}, "max_points"),
        ({"max_points": -3}, "max_points"),
        ({"max_points": 2.5}, "max_points"),
        ({"max_points": 10**12}, "max_points"),
        ({"max_points": 5, "level": 0}, "level"),
        ({"max_points": 5, "level": -1}, "level"),
        ({"max_points": 5, "level": 101}, "level"),
        ({"max_points": 5, "level": "nan"}, "level"),
        ({"max_points": 5, "level": "Infinity"}, "level"),
        ({"max_points": 5, "sideways": 1}, "sideways"),
        ({}, "max_points"),
        ("yes", "auto_extend"),
    ],
)
def test_hostile_auto_extend_is_422_naming_the_field(client, settings, auto, field):
    spec = {**SPEC, "grid": {**SPEC["grid"], "auto_extend": auto}}
    response = client.post(f"{API}/studies", json=spec)
    assert response.status_code == 422, response.text
    locs = [e["loc"] for e in response.json()["detail"]]
    assert any("auto_extend" in loc and (field in loc or field == "auto_extend") for loc in locs), locs
    with session_factory(settings)() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Study)) == 0


def test_max_points_above_the_run_limit_is_422(client, settings):
    response = client.post(f"{API}/studies", json=with_auto(max_points=settings.max_runs_per_study + 1))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "grid", "auto_extend", "max_points"]


def test_a_study_cancelled_after_the_pass_looked_is_not_reopened(client, settings):
    sid = create(client, SPEC)
    finish_pending(settings)
    assert client.post(f"{API}/studies/{sid}/cancel").status_code == 200
    with session_factory(settings)() as session, pytest.raises(Conflict):
        extend_study(
            session, sid, settings, lr_high=1, expect_ranges=([-1, 1], [-1, 1]), record={"kind": "auto"}
        )
    assert run_pass(settings) == []
    study = client.get(f"{API}/studies/{sid}").json()
    assert study["status"] == "cancelled" and study["extensions"] == []
    assert study["auto_extension"]["state"] == "stopped"


def test_limits_lowered_after_creation_give_a_verdict_not_an_endless_retry(client, settings):
    sid = create(client, SPEC)  # max_points 40
    finish_pending(settings)
    settings.max_runs_per_study = 30  # the operator lowers the cap below the study's budget
    records = run_pass(settings)
    assert [r["kind"] for r in records] == ["stop"] and records[0]["stopped"] == RUN_LIMIT
    assert "30" in records[0]["why"]
    assert client.get(f"{API}/studies/{sid}").json()["status"] == "succeeded"
    assert run_pass(settings) == []
