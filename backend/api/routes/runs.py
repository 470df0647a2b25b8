"""/runs: one run with its epoch curve and artefacts; retry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import RunId, SessionDep, WriterDep
from backend.api.schemas import READ_ERRORS, WRITE_ERRORS, RetryOut, RunDetail
from backend.services import run_views, study_actions

router = APIRouter(prefix="/runs", tags=["runs"], responses=READ_ERRORS)


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: RunId, session: SessionDep) -> Any:
    return run_views.run_detail(session, run_id)


@router.post("/{run_id}/retry", response_model=RetryOut, responses=WRITE_ERRORS)
def retry_run(run_id: RunId, session: SessionDep, _writer: WriterDep) -> Any:
    return study_actions.retry_run(session, run_id)
