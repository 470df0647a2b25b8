"""Studies as the API shows them: one study with its progress, and the paged, sorted list.

A study's status is derived from its runs (backend.run_states) and refreshed on read, so list
filters and pages agree with what each item shows.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.orm import Session

from backend.db.models import Run, Study, Variant
from backend.db.study_state import progress_counts, refresh_status, status_moved
from backend.extension_records import auto_extension_view, records_of
from backend.run_states import ACTIVE, OPEN_STUDY, RUN_KINDS, RUN_STATUSES, progress_totals
from backend.services.errors import FieldError
from backend.services.queries import as_utc, get_study
from backend.services.read_cache import read_cache, study_version

SORTS = {
    "created_at": Study.created_at.asc(),
    "-created_at": Study.created_at.desc(),
    "name": Study.name.asc(),
    "-name": Study.name.desc(),
    "id": Study.id.asc(),
    "-id": Study.id.desc(),
}


def _status_kind_counts(session: Session, study_id: int) -> tuple[dict[str, int], dict[str, int]]:
    """Progress (runs by status) and run counts by kind of one study, from one pass over its runs."""
    progress = dict.fromkeys(RUN_STATUSES, 0)
    kinds = dict.fromkeys(RUN_KINDS, 0)
    for status, kind, n in session.execute(
        sa.select(Run.status, Run.kind, sa.func.count())
        .where(Run.study_id == study_id)
        .group_by(Run.status, Run.kind)
    ):
        progress[status] += n
        kinds[kind] += n
    kinds["total"] = sum(kinds.values())
    return progress_totals(progress), kinds


def study_view(session: Session, study: Study, *, detail: bool) -> dict[str, Any]:
    if detail:
        progress, run_counts = _status_kind_counts(session, study.id)
    else:
        progress, run_counts = progress_counts(session, [study.id])[study.id], None
    refresh_status(session, study, progress)
    return _view(study, progress, run_counts, _variant_name_lists(session, [study.id])[study.id])


def study_json(session: Session, study_id: int) -> bytes:
    """GET /studies/{id} as JSON bytes, its stored status refreshed (and committed) on the way.

    While none of its runs is active the view is a function of the study's data version (ended
    runs change only by leaving the ended set, which moves the version), so it is kept as bytes:
    a settled 10,000-run study answers without counting its runs again."""
    version = study_version(session, study_id)
    key = ("study", study_id, version)
    if version.active_runs == 0:
        body = read_cache.get(key)
        if body is not None:
            return body
    study = get_study(session, study_id)
    view = study_view(session, study, detail=True)
    moved = session.is_modified(study)
    session.commit()
    for name in ("created_at", "updated_at", "finished_at"):
        view[name] = as_utc(view[name])
    body = pydantic_core.to_json(view)
    if version.active_runs == 0 and not moved:
        read_cache.put(key, body, len(body))
    return body


def _variant_name_lists(session: Session, study_ids: list[int]) -> dict[int, list[str]]:
    """Variant names per study in id order: names only (a Variant row carries histograms and scans)."""
    names: dict[int, list[str]] = {sid: [] for sid in study_ids}
    if study_ids:
        for sid, name in session.execute(
            sa.select(Variant.study_id, Variant.name)
            .where(Variant.study_id.in_(study_ids))
            .order_by(Variant.id)
        ):
            names[sid].append(name)
    return names


def _view(
    study: Study, progress: dict[str, int], run_counts: dict[str, int] | None, variant_names: list[str]
) -> dict[str, Any]:
    view = {
        "id": study.id,
        "name": study.name,
        "kind": study.kind,
        "status": study.status,
        "created_by": study.created_by,
        "created_at": study.created_at,
        "updated_at": study.updated_at,
        "finished_at": study.finished_at,
        "model": (study.spec.get("model") or {}).get("name"),
        "dataset": (study.spec.get("dataset") or {}).get("name"),
        "variants": variant_names,
        "progress": progress,
        "auto_extension": auto_extension_view(
            study.spec,
            study.extensions,
            study_status=study.status,
            active_runs=sum(progress.get(s, 0) for s in ACTIVE),
        ),
    }
    if run_counts is not None:
        view["spec"] = study.spec
        view["run_counts"] = run_counts
        view["extensions"] = records_of(study.extensions)
    return view


# The list's text filter: at most this many words (each must match), each at most this long.
FILTER_MAX_WORDS = 8
FILTER_WORD_MAX = 64


def filter_words(text: str | None) -> list[str]:
    """The words of the list's text filter `q`, or FieldError naming `q` (NUL, too many words,
    a word too long). Matching is on the words' literal characters: % and _ are not wildcards."""
    if text is None:
        return []
    if "\x00" in text:
        raise FieldError(["query", "q"], "the filter text must not contain NUL characters")
    words = text.split()
    if len(words) > FILTER_MAX_WORDS:
        raise FieldError(["query", "q"], f"use at most {FILTER_MAX_WORDS} words in the filter")
    if any(len(word) > FILTER_WORD_MAX for word in words):
        raise FieldError(["query", "q"], f"a filter word is longer than {FILTER_WORD_MAX} characters")
    return words


def _matches_word(word: str) -> sa.ColumnElement[bool]:
    """A study whose name, model, dataset, creator, kind or one of whose variant names holds `word`
    (case-insensitive, literal characters)."""
    fields = (
        Study.name,
        Study.created_by,
        Study.kind,
        Study.spec["model"]["name"].as_string(),
        Study.spec["dataset"]["name"].as_string(),
    )
    variant = sa.exists().where(Variant.study_id == Study.id, Variant.name.icontains(word, autoescape=True))
    return sa.or_(*(field.icontains(word, autoescape=True) for field in fields), variant)


def list_studies(
    session: Session,
    *,
    limit: int,
    offset: int,
    status: str | None = None,
    sort: str = "-created_at",
    q: str | None = None,
) -> dict[str, Any]:
    # Statuses are derived from runs and refreshed on read. With a status filter every unfinished
    # study is refreshed first, so the filter and the total agree with what each item shows;
    # without one (no sort key is a status) only the page's studies need to be current.
    words = filter_words(q)
    if status is not None:
        _refresh_open_statuses(session)
    query = sa.select(Study)
    if status is not None:
        query = query.where(Study.status == status)
    for word in words:
        query = query.where(_matches_word(word))
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    studies = session.scalars(query.order_by(SORTS[sort], Study.id.desc()).limit(limit).offset(offset)).all()
    progress = progress_counts(session, [s.id for s in studies])
    if status is None:
        for study in studies:
            if study.status in OPEN_STUDY:
                refresh_status(session, study, progress[study.id])
    names = _variant_name_lists(session, [s.id for s in studies])
    return {
        "items": [_view(s, progress[s.id], None, names[s.id]) for s in studies],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


def _refresh_open_statuses(session: Session) -> None:
    """Refresh the stored status of every pending / running study: ids and statuses first, then
    only the studies whose status moved are loaded and updated."""
    open_studies = session.execute(
        sa.select(Study.id, Study.status).where(Study.status.in_(OPEN_STUDY))
    ).all()
    if not open_studies:
        return
    progress = progress_counts(session, [s.id for s in open_studies])
    moved = [s.id for s in open_studies if status_moved(s, progress[s.id])]
    if moved:
        for study in session.scalars(sa.select(Study).where(Study.id.in_(moved))):
            refresh_status(session, study, progress[study.id])
        session.flush()
