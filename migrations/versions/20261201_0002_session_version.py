"""users.session_version: ending a user's sessions (logout everywhere, deactivation, new password)

Revision ID: 0002_session_version
Revises: 0001
Create Date: 2026-12-01

Existing users start at version 1; sessions signed before the upgrade carry a bare user id,
which the loader no longer accepts, so everyone signs in once more after the deploy.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_session_version"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("session_version")
