"""Sending a study's ready runs to the workers from a request (create, extend, retry).

The database commits first and holds no connection while the broker is asked (dispatch_ready
commits before sending). A broker that is down leaves the runs `pending`, stored and picked up by
the reconciler later; it never fails the request. A broken import is not broker trouble: it
fails loudly at import time, instead of leaving every study silently pending.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from workers import dispatch as run_dispatch

log = logging.getLogger(__name__)


def send_ready_runs(session: Session, study_id: int) -> None:
    """Queue and send the study's pending runs; broker trouble is logged, never raised."""
    try:
        run_dispatch.dispatch_ready(session, study_id)
        session.commit()
    except Exception as exc:  # noqa: BLE001 - broker trouble must not lose a stored study
        session.rollback()
        log.warning("study %s stored; runs stay pending (dispatch failed: %s)", study_id, exc)
