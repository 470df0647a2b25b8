"""Auto-extension of a study's grid (SPEC section 5, issue 16 item 1): one pass over the open
native studies with `grid.auto_extend`, run by the reconciler loops (`prunescape serve`, and
`prunescape reconcile --every` in team mode), never by a worker (layering).

The rule, per study (docs/spec.md-ready text in the module of records, backend/extension_records.py):

- The variants that drive it are the trained ones (base, structured, unstructured): each has its
  own landscape from its own training. A quantised variant evaluates its source's models, so it
  follows its source; every extension still plans every variant's runs on the new points
  (quantised ones included), so the landscapes stay comparable.
- A driving variant is *ready* when all its train runs on the grid's edge (first or last lr row,
  first or last wd column, every seed) have ended. Its interior runs may still be running: a
  result still to come can only raise the variant's best and so shrink its ROI, so the edge
  points in its final ROI are among those in its ROI now: deciding early never misses a side
  (it may add one the finished grid would not have needed).
- A ready variant *wants* every side where its `level`-ROI has a point on the edge (the analysis'
  `extension` record, computed at the study's level). The extension adds one row/column on each
  wanted side of any ready variant, and records which variant wanted which side.
- Limits: the budget (`max_points` grid points per variant, counted from the "auto" records), the
  grid size (`max_grid_size` points per axis, and grid values that stay representable) and
  `max_runs_per_study`. When not every wanted side fits, the largest set of sides that does is
  added (fewest points on a tie) and the others are recorded as left out, with why.
- Verdicts: when no run of the study is active any more and nothing is added, the pass records a
  stop: "enclosed" (no ready variant's ROI touches an edge), "budget spent", "grid limit" or "run
  limit" (a side is wanted but cannot be added), "no results" (no driving variant has a result).
  Until a verdict stands, the study is not finished (backend.run_states.study_status keeps it
  `running`), so the page never shows `succeeded` between the last edge run and the next pass.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from backend.db.models import Run, Study, Variant, utcnow
from backend.db.study_state import refresh_status
from backend.extension_records import (
    BUDGET_SPENT,
    ENCLOSED,
    GRID_LIMIT,
    NO_RESULTS,
    RUN_LIMIT,
    SIDES,
    STOP,
    auto_extend_of,
    finished_mark,
    points_used,
    ranges_of,
    records_of,
    standing_verdict,
)
from backend.run_states import ACTIVE, OPEN_STUDY
from backend.services.analysis_views import analysis_report
from backend.services.errors import Conflict, FieldError
from backend.services.study_extension import extend_study, locked_study
from backend.settings import Settings
from backend.spec import TRAINED_KINDS, StudySpec, count_runs, parse_spec

log = logging.getLogger(__name__)
SIDE_WORDS = {"lr_low": "lr low", "lr_high": "lr high", "wd_low": "wd low", "wd_high": "wd high"}


# --- which sides fit (pure) ------------------------------------------------------------------------
def added_points(lr_count: int, wd_count: int, lr_sides: int, wd_sides: int) -> int:
    """Grid points a one-row-per-side extension adds (the corners once)."""
    return (lr_count + lr_sides) * (wd_count + wd_sides) - lr_count * wd_count


def extended_spec(spec: StudySpec, sides: Sequence[str]) -> StudySpec | None:
    """`spec` with one more row/column on each of `sides`; None when its grid values would leave
    the representable range (the spec's own validation)."""
    data = spec.model_dump(mode="json")
    lr, wd = list(data["grid"]["lr_range"]), list(data["grid"]["wd_range"])
    lr[0] -= "lr_low" in sides
    lr[1] += "lr_high" in sides
    wd[0] -= "wd_low" in sides
    wd[1] += "wd_high" in sides
    data["grid"]["lr_range"], data["grid"]["wd_range"] = lr, wd
    try:
        return parse_spec(data)
    except ValidationError:
        return None


def why_not(
    spec: StudySpec, sides: Sequence[str], *, budget_left: int, max_grid_size: int, max_runs: int
) -> str | None:
    """The limit (GRID_LIMIT, BUDGET_SPENT, RUN_LIMIT) that adding `sides` would break, or None."""
    grid = spec.grid
    n_lr = sum(s.startswith("lr") for s in sides)
    n_wd = len(sides) - n_lr
    if grid.lr_count + n_lr > max_grid_size or grid.wd_count + n_wd > max_grid_size:
        return GRID_LIMIT
    bigger = extended_spec(spec, sides)
    if bigger is None:
        return GRID_LIMIT
    if added_points(grid.lr_count, grid.wd_count, n_lr, n_wd) > budget_left:
        return BUDGET_SPENT
    if count_runs(bigger)["total"] > max_runs:
        return RUN_LIMIT
    return None


def choose_sides(
    spec: StudySpec, wanted: Sequence[str], *, budget_left: int, max_grid_size: int, max_runs: int
) -> tuple[list[str], dict[str, str], str | None]:
    """(sides to add, {wanted side left out: the limit it breaks}, the stop reason when none fits).

    The largest set of wanted sides that fits every limit; on a tie the one adding fewest points,
    then the first in SIDES order."""
    wanted = [s for s in SIDES if s in wanted]
    limits = dict(budget_left=budget_left, max_grid_size=max_grid_size, max_runs=max_runs)
    best: list[str] = []
    for size in range(len(wanted), 0, -1):
        fitting = [
            list(c) for c in itertools.combinations(wanted, size) if why_not(spec, c, **limits) is None
        ]
        if fitting:
            best = min(fitting, key=lambda c: _points_of(spec, c))  # min keeps the first on a tie
            break
    # A side left out breaks a limit together with the chosen ones (else a larger set would fit).
    left_out = {s: why_not(spec, [*best, s], **limits) or GRID_LIMIT for s in wanted if s not in best}
    stop = None
    if not best:
        reasons = set(left_out.values())
        stop = next(r for r in (BUDGET_SPENT, GRID_LIMIT, RUN_LIMIT) if r in reasons)
    return best, left_out, stop


def _points_of(spec: StudySpec, sides: Sequence[str]) -> int:
    n_lr = sum(s.startswith("lr") for s in sides)
    return added_points(spec.grid.lr_count, spec.grid.wd_count, n_lr, len(sides) - n_lr)


# --- the pass --------------------------------------------------------------------------------------
def auto_extend_pass(session: Session, settings: Settings) -> list[dict[str, Any]]:
    """One pass over every open native study with auto-extension: extend it, record a verdict, or
    wait. Returns the records made (each with its `study_id`). Commits; a study that fails is
    logged and skipped, so one bad study does not hold up the others."""
    candidates = [
        sid
        for sid, spec in session.execute(
            sa.select(Study.id, Study.spec)
            .where(Study.kind == "native", Study.status.in_(OPEN_STUDY))
            .order_by(Study.id)
        )
        if auto_extend_of(spec) is not None
    ]
    session.commit()
    made = []
    for study_id in candidates:
        try:
            record = extend_or_stop(session, study_id, settings)
        except Conflict as exc:  # the grid moved under us (another pass, a user): next pass
            session.rollback()
            log.info("auto-extension of study %s: %s", study_id, exc.message)
            continue
        except Exception:  # noqa: BLE001 - one broken study must not stop the others
            session.rollback()
            log.exception("auto-extension of study %s failed", study_id)
            continue
        if record is not None:
            made.append({"study_id": study_id, **record})
    return made


def extend_or_stop(session: Session, study_id: int, settings: Settings) -> dict[str, Any] | None:
    """The pass for one study: the record it made (an "auto" extension or a "stop" verdict), or
    None (waiting for edge runs, or a verdict that already stands)."""
    study = session.get(Study, study_id)
    if study is None or study.kind != "native" or study.status not in OPEN_STUDY:
        return None
    auto = auto_extend_of(study.spec)
    if auto is None:
        return None
    spec = parse_spec(study.spec)
    lr_range, wd_range = ranges_of(study.spec)
    driving = [v for v in study.variants if v.kind in TRAINED_KINDS]
    active_edge = _active_edge_runs(session, study_id, lr_range, wd_range)
    active = session.scalar(
        sa.select(sa.func.count()).where(Run.study_id == study_id, Run.status.in_(ACTIVE))
    )
    ready = [v for v in driving if not active_edge.get(v.id)]
    if not ready:
        return None
    level = float(auto.get("level", 1.0))
    wanted_by = _wanted_sides(session, study_id, ready)
    wanted = [s for s in SIDES if any(s in sides for sides in wanted_by.values())]
    used = points_used(records_of(study.extensions))
    budget_left = max(0, int(auto["max_points"]) - used)
    limits = dict(
        budget_left=budget_left,
        max_grid_size=settings.max_grid_size,
        max_runs=settings.max_runs_per_study,
    )
    if wanted:
        chosen, left_out, stop = choose_sides(spec, wanted, **limits)
        if chosen:
            n_points = _points_of(spec, chosen)
            record = {
                "kind": "auto",
                "level": level,
                "triggered_by": wanted_by,
                "left_out": left_out,
                "points_used": used + n_points,
                "points_left": budget_left - n_points,
                "why": _why_extend(level, wanted_by, left_out),
            }
            rows = {side: int(side in chosen) for side in SIDES}
            try:
                out = extend_study(
                    session, study_id, settings, **rows, expect_ranges=(lr_range, wd_range), record=record
                )
            except FieldError as exc:  # a limit the checks above do not know (the settings changed)
                session.rollback()
                if active:
                    return None
                refused = (
                    GRID_LIMIT if exc.message.startswith("the extended grid is not valid") else RUN_LIMIT
                )
                why = f"the {level!r}-ROI still touches the edge, but the extended grid is refused: {exc.message}"
                return _record_stop(session, study_id, refused, why, used, auto, wanted_by)
            log.info("auto-extension of study %s: %s", study_id, out["record"]["why"])
            return out["record"]
        if active:  # nothing fits now; the verdict is given when the study has nothing left to run
            return None
        assert stop is not None
        return _record_stop(
            session,
            study_id,
            stop,
            _why_stop(stop, level, wanted_by, left_out, limits),
            used,
            auto,
            wanted_by,
        )
    if active:
        return None
    has_results = bool(_results_by_variant(session, study_id, driving))
    stop = ENCLOSED if has_results else NO_RESULTS
    why = (
        f"the {level!r}-ROI of every trained variant is enclosed by the grid"
        if has_results
        else "no trained variant has a result to look at"
    )
    return _record_stop(session, study_id, stop, why, used, auto, {})


def _active_edge_runs(
    session: Session, study_id: int, lr_range: list[int], wd_range: list[int]
) -> dict[int, int]:
    """Variant id -> its active train runs on the grid's edge."""
    on_edge = sa.or_(Run.grid_i.in_(lr_range), Run.grid_j.in_(wd_range))
    return dict(
        session.execute(
            sa.select(Run.variant_id, sa.func.count())
            .where(Run.study_id == study_id, Run.kind == "train", Run.status.in_(ACTIVE), on_edge)
            .group_by(Run.variant_id)
        ).all()
    )


def _wanted_sides(session: Session, study_id: int, ready: list[Variant]) -> dict[str, list[str]]:
    """Ready variant -> the sides its ROI touches (from the cached analysis; none without results)."""
    results = _results_by_variant(session, study_id, ready)
    wanted: dict[str, list[str]] = {}
    for variant in ready:
        result = results.get(variant.name)
        if result is None:
            continue
        sides = [f"{side.axis}_{side.side}" for side in result.extension.sides]
        if sides:
            wanted[variant.name] = [s for s in SIDES if s in sides]
    return wanted


def _results_by_variant(session: Session, study_id: int, variants: list[Variant]) -> dict[str, Any]:
    report = analysis_report(session, study_id, metric="top1")
    if report is None:
        return {}
    names = {v.name for v in variants}
    return {name: r for name, r in report.results.items() if name in names and r.best is not None}


def _record_stop(
    session: Session,
    study_id: int,
    stopped: str,
    why: str,
    used: int,
    auto: dict[str, Any],
    wanted_by: dict[str, list[str]],
) -> dict[str, Any] | None:
    """Append a stop verdict (unless the same one stands already) and finish the study's status."""
    study = locked_study(session, study_id)
    if session.scalar(sa.select(sa.func.count()).where(Run.study_id == study_id, Run.status.in_(ACTIVE))):
        session.rollback()  # a retry or an extension came in meanwhile: decide next pass
        return None
    last_finished = session.scalar(sa.select(sa.func.max(Run.finished_at)).where(Run.study_id == study_id))
    records = records_of(study.extensions)
    standing = standing_verdict(study.spec, records, last_finished)
    entry = None
    if standing is None or standing.get("stopped") != stopped:
        lr_range, wd_range = ranges_of(study.spec)
        entry = {
            "at": utcnow().isoformat(),
            "kind": STOP,
            "stopped": stopped,
            "why": why,
            "lr_range": lr_range,
            "wd_range": wd_range,
            "points_used": used,
            "points_left": max(0, int(auto["max_points"]) - used),
            "wanted": wanted_by,
            "through": finished_mark(last_finished),
        }
        study.extensions = [*records, entry]
    refresh_status(session, study)
    session.commit()
    if entry is not None:
        log.info("auto-extension of study %s stopped: %s (%s)", study_id, stopped, why)
    return entry


def _why_extend(level: float, wanted_by: dict[str, list[str]], left_out: dict[str, str]) -> str:
    touched = "; ".join(
        f"{variant}: {', '.join(SIDE_WORDS[s] for s in sides)}" for variant, sides in wanted_by.items()
    )
    text = f"the {level!r}-ROI touches the grid's edge ({touched})"
    if left_out:
        text += "; not added: " + ", ".join(f"{SIDE_WORDS[s]} ({why})" for s, why in left_out.items())
    return text


def _why_stop(
    stop: str, level: float, wanted_by: dict[str, list[str]], left_out: dict[str, str], limits: dict[str, int]
) -> str:
    sides = ", ".join(SIDE_WORDS[s] for s in left_out)
    touched = ", ".join(sorted(wanted_by))
    if stop == BUDGET_SPENT:
        limit = f"{limits['budget_left']} of the budget's points left"
    elif stop == GRID_LIMIT:
        limit = f"the grid may have at most {limits['max_grid_size']} points per axis"
    else:
        limit = f"at most {limits['max_runs']} runs per study"
    return f"the {level!r}-ROI of {touched} still touches {sides}, but {limit}"
