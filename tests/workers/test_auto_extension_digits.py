"""Auto-extension on real training (issue 16 item 1): digits, short runs, every run through the
worker's task body (`workers.tasks.execute`) in-process and the pass between rounds, as the
reconciler runs it.

What digits can show: its learning-rate axis has an optimum (3 epochs on half of the set: about
0.05; 0.016 is under-trained by ~5 points, 0.16 ~1.5 points worse), so a prior two lr steps below
it is moved up until the base's 1.0-ROI touches no lr edge. Its weight-decay axis has none: below ~1e-2 weight decay does not change the accuracy
of short runs measurably (scans in the h16b report: 3, 6, 15 and 30 epochs, 360 to 1437 training
images, within 0.7 points of each other down to 1e-5), so the 1.0-ROI always reaches the low-wd
edge and only the budget ends the extension there. Enclosure on both axes is pinned on a known
landscape in tests/backend/test_auto_extension.py.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from backend.db.models import Run, Study
from backend.db.session import session_factory
from backend.services.analysis_views import analysis_report
from backend.services.auto_extension import auto_extend_pass
from backend.services.study_creation import create_study
from backend.services.study_views import study_view
from backend.spec import parse_spec
from workers.tasks import execute

LR_OPTIMUM = 0.05  # 3 epochs on half of digits (the module doc)
SPEC = {
    "name": "auto-extension on digits",
    "dataset": {"name": "digits", "val_fraction": 0.5},
    "model": {"name": "digits_cnn"},
    "recipe": {"epochs": 3, "batch_size": 64},
    # the prior two steps below the optimum: lr 0.0016, 0.005, 0.016 to start with
    "grid": {"lr_centre": LR_OPTIMUM / 10, "wd_centre": 3e-3, "step": 0.5, "size": 3},
    "variants": [{"name": "base", "kind": "base"}],
}


@pytest.fixture
def no_broker(monkeypatch):
    """Runs stay `pending` for the in-process worker below instead of going to a broker."""
    import workers.dispatch

    monkeypatch.setattr(workers.dispatch, "dispatch_ready", lambda *args, **kwargs: 0)


def _spec(max_points: int) -> dict:
    return {**SPEC, "grid": {**SPEC["grid"], "auto_extend": {"max_points": max_points, "level": 1.0}}}


def _drain(make, settings, study_id: int) -> None:
    while True:
        with make() as session:
            pending = session.scalars(
                sa.select(Run.id).where(Run.study_id == study_id, Run.status == "pending").order_by(Run.id)
            ).all()
        if not pending:
            return
        for run_id in pending:
            execute(run_id, settings=settings)


def _run_study(settings, spec: dict, max_rounds: int = 8) -> tuple[int, list[dict]]:
    make = session_factory(settings)
    with make() as session:
        study_id = create_study(session, parse_spec(spec), settings).id
    made: list[dict] = []
    for _ in range(max_rounds):
        _drain(make, settings, study_id)
        with make() as session:
            assert session.get(Study, study_id).status == "running"  # ended runs, no verdict yet
            records = auto_extend_pass(session, settings)
        made += records
        if records and records[-1]["kind"] == "stop":
            return study_id, made
    raise AssertionError(f"no verdict after {max_rounds} rounds: {made}")


@pytest.mark.slow
def test_a_prior_two_lr_steps_off_is_moved_until_the_lr_axis_encloses_the_roi(sqlite_db, no_broker):
    settings = sqlite_db
    study_id, made = _run_study(settings, _spec(max_points=31))
    extensions = [r for r in made if r["kind"] == "auto"]
    # the first round: the best of lr 0.0016 / 0.005 / 0.016 is 0.016, on the high lr edge
    assert "lr_high" in extensions[0]["sides"] and "lr_high" in extensions[0]["triggered_by"]["base"]
    assert sum(r["rows"]["lr_high"] for r in extensions) >= 2  # two steps up to reach the optimum
    make = session_factory(settings)
    with make() as session:
        study = session.get(Study, study_id)
        report = analysis_report(session, study_id, metric="top1")
        base = report.results["base"]
        lr_lo, lr_hi = study.spec["grid"]["lr_range"]
        lr_values = report.grid.lr_values
        # the base's 1.0-ROI touches no lr edge, and its best lr lies inside the lr range
        assert not [s for s in base.extension.sides if s.axis == "lr"], base.extension.sides
        assert lr_values[0] < base.best.lr < lr_values[-1]
        assert base.best.lr == pytest.approx(LR_OPTIMUM, rel=0.5)  # not 0.016, not 0.16
        assert lr_hi - lr_lo + 1 >= 5
        view = study_view(session, study, detail=True)
    stop = made[-1]
    assert stop["kind"] == "stop" and stop["stopped"] in ("budget spent", "enclosed")
    if stop["stopped"] == "budget spent":  # what is still wanted is weight decay, never lr
        assert set(stop["wanted"]["base"]) <= {"wd_low", "wd_high"}
    assert view["status"] == "succeeded" and view["auto_extension"]["state"] == "stopped"
    assert view["auto_extension"]["points_used"] == sum(r["added_points"] for r in extensions) <= 31
    assert [r["kind"] for r in view["extensions"]] == [r["kind"] for r in made]


@pytest.mark.slow
def test_a_small_budget_stops_it_after_what_fits(sqlite_db, no_broker):
    settings = sqlite_db
    study_id, made = _run_study(settings, _spec(max_points=3))
    # all three wanted sides would add 11 points; one row (3 points) fits: the lr one comes first
    assert [r["kind"] for r in made] == ["auto", "stop"]
    assert made[0]["sides"] == ["lr_high"] and made[0]["points_left"] == 0
    assert all(why == "budget spent" for why in made[0]["left_out"].values())
    assert made[1]["stopped"] == "budget spent" and made[1]["points_left"] == 0
    with session_factory(settings)() as session:
        study = session.get(Study, study_id)
        assert study.status == "succeeded" and study.spec["grid"]["lr_range"] == [-1, 2]
