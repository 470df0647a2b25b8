"""/runs: one run with its epoch curve and artefacts; retry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api.deps import SessionDep, WriterDep
from backend.api.schemas import RetryOut, RunDetail
from backend.services import studies as svc

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("/{run_id}", response_model=RunDetail)
def get_run(run_id: int, session: SessionDep) -> Any:
    return svc.run_detail(session, run_id)


@router.post("/{run_id}/retry", response_model=RetryOut)
def retry_run(run_id: int, session: SessionDep, _writer: WriterDep) -> Any:
    return svc.retry_run(session, run_id)
