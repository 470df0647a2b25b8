"""A study's stored status, kept in step with its runs (the rule: `backend.run_states.study_status`).

The API refreshes it on read and the workers roll it up when a run ends, so list filters and the
study page agree with the runs. Does not commit.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import Run, Study, utcnow
from backend.extension_records import auto_extend_of, extension_due
from backend.run_states import ACTIVE, ENDED, OPEN_STUDY, RUN_STATUSES, progress_totals, study_status


def progress_counts(session: Session, study_ids: list[int]) -> dict[int, dict[str, int]]:
    """Runs by status per study (every status present, plus `total` and `finished`)."""
    counts: dict[int, dict[str, int]] = {sid: dict.fromkeys(RUN_STATUSES, 0) for sid in study_ids}
    if study_ids:
        rows = session.execute(
            sa.select(Run.study_id, Run.status, sa.func.count())
            .where(Run.study_id.in_(study_ids))
            .group_by(Run.study_id, Run.status)
        )
        for sid, status, n in rows:
            counts[sid][status] = n
    for c in counts.values():
        progress_totals(c)
    return counts


def refresh_status(session: Session, study: Study, progress: dict[str, int] | None = None) -> str:
    """Bring the stored status of `study` up to date with its runs; returns it."""
    progress = progress or progress_counts(session, [study.id])[study.id]
    status = study_status(study.status, progress, extension_due=_extension_due(session, study, progress))
    if status != study.status:
        study.status = status
        if status in ENDED and study.finished_at is None:
            study.finished_at = utcnow()
        elif status in OPEN_STUDY:
            study.finished_at = None
    return status


def _extension_due(session: Session, study: Study, progress: dict[str, int]) -> bool:
    """Whether the auto-extension of `study` still has to decide; only asked (one query) when it
    matters: auto-extension on and no run active."""
    if auto_extend_of(study.spec) is None or any(progress.get(s, 0) for s in ACTIVE):
        return False
    last_finished = session.scalar(sa.select(sa.func.max(Run.finished_at)).where(Run.study_id == study.id))
    return extension_due(study.kind, study.spec, study.extensions, last_finished)


def status_moved(study: Study | sa.Row[Any], progress: dict[str, int]) -> bool:
    return study_status(study.status, progress) != study.status
