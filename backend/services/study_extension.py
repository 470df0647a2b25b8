"""Extending a native study's grid by rows / columns: the new grid points get the runs every
variant needs there (the planner), the extension is recorded with the study, and the ready runs
are sent."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from backend.db.models import Run, Study, Variant, utcnow
from backend.extension_records import SIDES, ranges_of, records_of
from backend.run_states import OPEN_STUDY
from backend.services.analysis_views import analysis_report
from backend.services.errors import Conflict, FieldError, NotFound
from backend.services.planner import RunKey, extension_points, plan_study
from backend.services.queries import base_variant_name, get_study
from backend.services.sending import send_ready_runs
from backend.services.study_creation import check_spec_limits, store_runs
from backend.settings import Settings
from backend.spec import grid_values, parse_spec


def extend_study(
    session: Session,
    study_id: int,
    settings: Settings,
    *,
    lr_low: int = 0,
    lr_high: int = 0,
    wd_low: int = 0,
    wd_high: int = 0,
    proposal: bool = False,
    expect_ranges: tuple[list[int], list[int]] | None = None,
    record: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add rows (lr) / columns (wd) per side and plan every variant's runs on the new points; the
    extension is recorded in `studies.extensions` in the same transaction (backend/extension_records.py).

    `record`: the fields of an automatic extension's record (the auto-extension pass); without it
    the extension is recorded as "manual". `expect_ranges`: the (lr_range, wd_range) the caller
    decided on; a grid that moved meanwhile (another pass, a user) is a Conflict, not a second row.
    """
    get_study(session, study_id)  # 404 before the lock
    study = locked_study(session, study_id)
    if expect_ranges is not None and ranges_of(study.spec) != (
        list(expect_ranges[0]),
        list(expect_ranges[1]),
    ):
        raise Conflict(f"study {study_id}: its grid changed since the extension was decided")
    if study.status == "deleting":
        raise Conflict(f"study {study_id} is being deleted; it cannot be extended")
    if record is not None and study.status not in OPEN_STUDY:  # cancelled since the pass looked
        raise Conflict(f"study {study_id} is {study.status}; the auto-extension leaves it as it is")
    if study.kind != "native":
        raise Conflict(f"study {study_id} is imported; only native studies can be extended")
    if proposal:
        lr_low, lr_high, wd_low, wd_high = _proposed_sides(session, study)
        if not any((lr_low, lr_high, wd_low, wd_high)):
            raise Conflict("the analysis proposes no extension: the 1.0-ROI touches no edge of the grid")
    elif not any((lr_low, lr_high, wd_low, wd_high)):
        raise FieldError(["body"], "add at least one row or column (lr_low, lr_high, wd_low or wd_high)")
    spec = parse_spec(study.spec, check_paths=False)
    old_lr, old_wd = tuple(spec.grid.lr_range), tuple(spec.grid.wd_range)
    new_lr = (old_lr[0] - lr_low, old_lr[1] + lr_high)
    new_wd = (old_wd[0] - wd_low, old_wd[1] + wd_high)
    data = spec.model_dump(mode="json")
    data["grid"]["lr_range"], data["grid"]["wd_range"] = list(new_lr), list(new_wd)
    try:
        new_spec = parse_spec(data, check_paths=False)
    except ValidationError as exc:  # e.g. grid values that would overflow past the new edges
        first = exc.errors()[0]
        raise FieldError(["body"], f"the extended grid is not valid: {first['msg']}") from None
    check_spec_limits(new_spec, settings)
    points = extension_points(old_lr, old_wd, new_lr, new_wd)
    plan = plan_study(new_spec, points)
    variants = {v.name: v for v in study.variants}
    existing = {
        _run_key(r, variants): r for r in session.scalars(sa.select(Run).where(Run.study_id == study_id))
    }
    runs = store_runs(session, study_id, plan, variants, existing)
    study.spec = new_spec.model_dump(mode="json")
    rows = dict(zip(SIDES, (lr_low, lr_high, wd_low, wd_high), strict=True))
    entry = {
        "at": utcnow().isoformat(),
        "kind": "manual",
        "rows": rows,
        "sides": [side for side, n in rows.items() if n],
        "added_points": len(points),
        "added_runs": len(runs),
        "lr_range": list(new_lr),
        "wd_range": list(new_wd),
        "why": "proposed by the analysis (the ROI touches these edges), asked for by a user"
        if proposal
        else "asked for by a user",
        "proposal": proposal,
    }
    if record is not None:
        entry = {**entry, **record}
        entry.pop("proposal", None)
    study.extensions = [*records_of(study.extensions), entry]
    if study.status in ("succeeded", "failed", "cancelled"):
        study.status = "pending"
        study.finished_at = None
    session.commit()
    send_ready_runs(session, study_id)
    lr_values, wd_values = grid_values(new_spec.grid)
    return {
        "study_id": study_id,
        "added_runs": len(runs),
        "added_points": len(points),
        "lr_range": new_lr,
        "wd_range": new_wd,
        "lr_values": lr_values,
        "wd_values": wd_values,
        "record": entry,
    }


def locked_study(session: Session, study_id: int) -> Study:
    """The study row, locked for this transaction (Postgres: FOR UPDATE; SQLite takes its write
    lock at the first write) and read afresh, so two writers of its grid and its extension
    records (two reconcilers, a user and the pass) go one after the other."""
    study = session.scalars(
        sa.select(Study)
        .where(Study.id == study_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if study is None:
        raise NotFound(f"study {study_id} not found")
    return study


def _run_key(run: Run, variants: dict[str, Variant]) -> RunKey:
    name = next(n for n, v in variants.items() if v.id == run.variant_id)
    return (name, run.kind, run.grid_i, run.grid_j, run.seed)


def _proposed_sides(session: Session, study: Study) -> tuple[int, int, int, int]:
    """Rows/columns per side that the analysis' auto-extension proposes for the base variant."""
    report = analysis_report(session, study.id, metric="top1")
    result = None if report is None else report.results.get(base_variant_name(study))
    sides = [] if result is None else result.extension.sides
    wanted = {f"{side.axis}_{side.side}" for side in sides}
    return tuple(int(s in wanted) for s in ("lr_low", "lr_high", "wd_low", "wd_high"))  # type: ignore[return-value]
