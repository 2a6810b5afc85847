"""member grants: corp members belong to merchants

Revision ID: 0003_member_grants
Revises: 0002_session_version
Create Date: 2026-12-01

Existing store staff keep serving: every (merchant, member) pair already on a store of that
merchant becomes a grant (granted_by NULL: by the migration).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0003_member_grants"
down_revision: str | Sequence[str] | None = "0002_session_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "member_grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("merchant_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("granted_by_id", sa.Integer(), nullable=True),
        sa.Column("granted_at", core.db.TZDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["granted_by_id"], ["users.id"], name=op.f("fk_member_grants_granted_by_id_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_grants_member_id_members"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_member_grants_merchant_id_merchants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_grants")),
        sa.UniqueConstraint("merchant_id", "member_id", name=op.f("uq_member_grants_merchant_id_member_id")),
    )
    with op.batch_alter_table("member_grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_member_grants_member_id"), ["member_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_member_grants_merchant_id"), ["merchant_id"], unique=False)
    backfill = sa.text(
        "INSERT INTO member_grants (merchant_id, member_id, granted_at) "
        "SELECT DISTINCT stores.merchant_id, store_members.member_id, :now "
        "FROM store_members JOIN stores ON stores.id = store_members.store_id"
    ).bindparams(sa.bindparam("now", type_=core.db.TZDateTime(timezone=True)))
    op.get_bind().execute(backfill, {"now": core.db.utcnow()})


def downgrade() -> None:
    with op.batch_alter_table("member_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_member_grants_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_member_grants_member_id"))
    op.drop_table("member_grants")
