"""/runs: one run with its epoch curve and artefacts; retry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import RunId, SessionDep, WriterDep
from backend.api.schemas import READ_ERRORS, WRITE_ERRORS, RetryOut, RunDetail
from backend.services import studies as svc

router = APIRouter(prefix="/runs", tags=["runs"], responses=READ_ERRORS)


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: RunId, session: SessionDep) -> Any:
    return svc.run_detail(session, run_id)


@router.post("/{run_id}/retry", response_model=RetryOut, responses=WRITE_ERRORS)
def retry_run(run_id: RunId, session: SessionDep, _writer: WriterDep) -> Any:
    return svc.retry_run(session, run_id)
