"""store pending changes: an approved store's new name/address waits for review

Revision ID: 0004_store_pending_changes
Revises: 0003_member_grants
Create Date: 2026-12-01
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0004_store_pending_changes"
down_revision: str | Sequence[str] | None = "0003_member_grants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_name", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("pending_address", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("change_requested_at", core.db.TZDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("change_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.drop_column("change_reason")
        batch_op.drop_column("change_requested_at")
        batch_op.drop_column("pending_address")
        batch_op.drop_column("pending_name")
