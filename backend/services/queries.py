"""Lookups every service shares: a study, a run, a variant by name, a study's variant names.
Each raises NotFound (404) with a sentence naming what is missing."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import Run, Study, Variant
from backend.services.errors import NotFound


def get_study(session: Session, study_id: int) -> Study:
    study = session.get(Study, study_id)
    if study is None:
        raise NotFound(f"study {study_id} not found")
    return study


def get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def variant_names(session: Session, study_id: int) -> dict[int, str]:
    """Variant id -> name of one study."""
    return dict(
        session.execute(sa.select(Variant.id, Variant.name).where(Variant.study_id == study_id)).all()
    )


def get_variant(session: Session, study_id: int, name: str) -> Variant:
    variant = session.scalar(sa.select(Variant).where(Variant.study_id == study_id, Variant.name == name))
    if variant is None:
        raise NotFound(f"study {study_id} has no variant {name!r}")
    return variant


def base_variant_name(study: Study) -> str:
    """The name of the study's base variant ("base" when it has none, e.g. an odd import)."""
    return next((v.name for v in study.variants if v.kind == "base"), "base")


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time in UTC (SQLite hands them back naive; they were written in UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
