"""studies.extensions: the record of every grid extension (manual and automatic) and of the
auto-extension's verdicts (backend/extension_records.py)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column needs no table rebuild on SQLite (ALTER TABLE ADD COLUMN keeps AUTOINCREMENT).
    op.add_column("studies", sa.Column("extensions", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table(
        "studies", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.drop_column("extensions")
