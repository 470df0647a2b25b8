"""ids are never reused on SQLite (AUTOINCREMENT)

Without AUTOINCREMENT SQLite hands out max(id) + 1, so deleting the newest study gave its id (and
its runs' ids) to the next one: a worker still finishing a deleted run then wrote into the new
study's run directory, whose run "resumed" from the deleted run's checkpoint (issue 13). Postgres
sequences never reuse a value; this revision changes nothing there.

Each table is rebuilt with the AUTOINCREMENT keyword (SQLite cannot add it in place); foreign keys
are off while that happens (migrations/env.py), so no cascade fires, and checked afterwards.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents before children, so every rebuilt table's foreign keys name a table that exists.
TABLES = ("api_tokens", "studies", "variants", "runs", "epoch_metrics", "artefacts")


def _rebuild(autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
    problems = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"foreign keys broken by the rebuild: {problems[:5]}")


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
