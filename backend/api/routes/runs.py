"""/runs: one run with its epoch curve and artefacts; retry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from backend.api.deps import ReaderDep, RunId, RunOwnerDep, SessionDep, require_reader
from backend.api.redaction import public_error
from backend.api.schemas import READ_ERRORS, WRITE_ERRORS, RetryOut, RunDetail
from backend.services import run_views, study_actions

router = APIRouter(
    prefix="/runs", tags=["runs"], responses=READ_ERRORS, dependencies=[Depends(require_reader)]
)


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: RunId, session: SessionDep, reader: ReaderDep) -> Any:
    run = run_views.run_detail(session, run_id)
    if not reader.sees_details:
        run["error"] = public_error(run.get("error"))
    return run


@router.post("/{run_id}/retry", response_model=RetryOut, responses=WRITE_ERRORS)
def retry_run(run_id: RunId, session: SessionDep, _owner: RunOwnerDep) -> Any:
    return study_actions.retry_run(session, run_id)
