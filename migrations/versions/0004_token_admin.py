"""api_tokens.is_admin: admin tokens may cancel, extend or delete any study

Until now any token could delete anyone's study; now a study is managed by its creator
(`studies.created_by`) or an admin token (`prunescape token create NAME --admin`). Existing tokens
become plain tokens.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ALTER TABLE ... ADD COLUMN on both databases: a batch rebuild on SQLite would drop the
    # table's AUTOINCREMENT (0003).
    op.add_column(
        "api_tokens", sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False)
    )


def downgrade() -> None:
    # SQLite drops a column by rebuilding the table: keep 0003's AUTOINCREMENT while doing so.
    with op.batch_alter_table(
        "api_tokens", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.drop_column("is_admin")
