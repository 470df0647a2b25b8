"""/compare: studies side by side (the numbers live in backend.services.study_comparison)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from backend.api.comparison_schemas import StudiesCompare
from backend.api.deps import SessionDep, require_reader
from backend.api.schemas import READ_ERRORS, ValidationErrorOut
from backend.services import study_comparison

# Reads as someone, like every study read (PRUNESCAPE_AUTH=all: a token holder).
router = APIRouter(
    prefix="/compare", tags=["compare"], responses=READ_ERRORS, dependencies=[Depends(require_reader)]
)


@router.get(
    "",
    response_model=StudiesCompare,
    responses={422: {"model": ValidationErrorOut, "description": "studies is not 2..8 distinct ids"}},
)
def compare_studies(
    session: SessionDep,
    studies: Annotated[
        str, Query(min_length=1, max_length=100, description="2..8 distinct study ids, e.g. 1,2,3")
    ],
    metric: Literal["top1", "top5"] = "top1",
) -> Any:
    ids = study_comparison.parse_study_ids(studies)
    return study_comparison.compare_studies(session, ids, metric=metric)
