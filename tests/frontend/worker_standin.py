"""Stand in for a Celery worker in the browser tests: write to the server's SQLite database what a
worker writes when it claims a run, or when a run ends (the test servers run no worker)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# A base train run no other run waits on: failing or retrying it moves nothing else.
LEAF_TRAIN_RUN = (
    "select runs.id from runs join variants on variants.id = runs.variant_id "
    "where runs.study_id = ? and runs.kind = 'train' and variants.kind = 'base' "
    "and runs.status in ('pending', 'queued') "
    "and not exists (select 1 from runs as child where child.depends_on_id = runs.id) "
    "order by runs.id limit 1"
)


def claim_run(db_path: Path, study_id: int) -> int:
    """A worker picked up one waiting base train run: it is `running` now. Returns its id."""
    with sqlite3.connect(db_path) as conn:
        (run_id,) = conn.execute(LEAF_TRAIN_RUN, (study_id,)).fetchone()
        conn.execute(
            "update runs set status = 'running', attempts = attempts + 1, worker = 'celery@standin', "
            "queued_at = CURRENT_TIMESTAMP, started_at = CURRENT_TIMESTAMP, heartbeat_at = CURRENT_TIMESTAMP "
            "where id = ?",
            (run_id,),
        )
    return run_id


def end_run(db_path: Path, run_id: int, status: str, error: str | None = None) -> None:
    """The worker's last write for a run: `failed` with its error, or `cancelled` when it saw
    cancel_requested at an epoch boundary."""
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "update runs set status = ?, error = ?, attempts = max(attempts, 1), epochs_done = 1, "
            "finished_at = CURRENT_TIMESTAMP where id = ?",
            (status, error, run_id),
        )


def fail_a_run(db_path: Path, study_id: int, error: str) -> int:
    """One waiting base train run was claimed and failed with `error`. Returns its id."""
    run_id = claim_run(db_path, study_id)
    end_run(db_path, run_id, "failed", error)
    return run_id


def finish_study(db_path: Path, study_id: int) -> None:
    """Every run of the study succeeded; top-1 rises towards the grid's corner (i = j = 1), so the
    analysis proposes extending the grid there."""
    with sqlite3.connect(db_path) as conn:
        runs = conn.execute("select id, grid_i, grid_j from runs where study_id = ?", (study_id,)).fetchall()
        for run_id, i, j in runs:
            top1 = None if i is None else 80.0 + 3 * (i + j)
            conn.execute(
                "update runs set status = 'succeeded', top1 = ?, epochs_done = 1, attempts = 1, "
                "finished_at = CURRENT_TIMESTAMP where id = ?",
                (top1, run_id),
            )
