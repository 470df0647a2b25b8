"""Creating a study: validate the spec against the service's limits, store the study, its variants
and every planned run in one transaction, then send the ready runs. Also the dry run (`/plan`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from backend.db.models import Run, Study, Variant
from backend.run_states import status_after_dependency
from backend.services.dataset_paths import check_dataset_allowed
from backend.services.errors import FieldError
from backend.services.planner import Plan, RunKey, plan_study, summarise_plan
from backend.services.sending import send_ready_runs
from backend.settings import Settings
from backend.spec import SpecError, StudySpec, check_limits


def create_study(
    session: Session, spec: StudySpec, settings: Settings, *, created_by: str | None = None
) -> Study:
    """Validate limits, store study + variants + planned runs in one transaction, then dispatch."""
    check_spec_limits(spec, settings)
    check_dataset_allowed(spec, settings)
    plan = plan_study(spec)
    study = Study(
        name=spec.name,
        kind="native",
        spec=spec.model_dump(mode="json"),
        status="pending",
        created_by=created_by,
    )
    session.add(study)
    session.flush()
    variants: dict[str, Variant] = {}
    for planned in plan.variants:
        variant = Variant(study_id=study.id, name=planned.name, kind=planned.kind, spec=planned.spec)
        session.add(variant)
        variants[planned.name] = variant
    session.flush()
    for planned in plan.variants:
        if planned.source is not None:
            variants[planned.name].source_variant_id = variants[planned.source].id
    store_runs(session, study.id, plan, variants, existing={})
    session.commit()
    send_ready_runs(session, study.id)
    return study


def plan_preview(spec: StudySpec, settings: Settings) -> dict[str, Any]:
    """What `create_study` would plan for `spec`, checked against the same limits; stores nothing."""
    check_spec_limits(spec, settings)
    check_dataset_allowed(spec, settings)
    return asdict(summarise_plan(spec))


def check_spec_limits(spec: StudySpec, settings: Settings) -> None:
    try:
        check_limits(
            spec, max_grid_size=settings.max_grid_size, max_runs_per_study=settings.max_runs_per_study
        )
    except SpecError as exc:
        raise FieldError(["body", *exc.loc], exc.message) from None


def store_runs(
    session: Session, study_id: int, plan: Plan, variants: dict[str, Variant], existing: dict[RunKey, Run]
) -> list[Run]:
    """Insert planned runs; dependencies resolve to runs planned here or already stored."""
    made: dict[RunKey, Run] = {}
    runs = []
    for planned in plan.runs:
        status = planned.initial_status
        dep = None
        if planned.depends_on is not None:
            dep = made.get(planned.depends_on) or existing.get(planned.depends_on)
            if dep is None:
                raise RuntimeError(f"planner bug: {planned.key} depends on unplanned {planned.depends_on}")
            if planned.depends_on not in made:
                status = status_after_dependency(dep.status, planned.kind)
        run = Run(
            study_id=study_id,
            variant_id=variants[planned.variant].id,
            kind=planned.kind,
            lr=planned.lr,
            wd=planned.wd,
            grid_i=planned.grid_i,
            grid_j=planned.grid_j,
            seed=planned.seed,
            status=status,
            attempts=0,
            cancel_requested=False,
            epochs_done=0,
        )
        if dep is not None and dep.id is not None:
            run.depends_on_id = dep.id
        session.add(run)
        if dep is not None and dep.id is None:
            session.flush()  # give the dependency its id
            run.depends_on_id = dep.id
        made[planned.key] = run
        runs.append(run)
    session.flush()
    return runs
