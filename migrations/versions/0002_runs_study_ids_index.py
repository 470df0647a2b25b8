"""index runs by (study_id, id): run-list pages in id order and a study's last run id

Without it Postgres answers `WHERE study_id = ? ORDER BY id` with a bitmap scan of the study's runs
and a sort (10 ms per page of a 10,000-run study), and `max(id)` for a study by scanning them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_study_ids", ["study_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_study_ids")
