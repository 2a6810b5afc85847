"""claims: coupon templates a diner may claim on the store page; coupons claimed on a
campaign's claim page (campaign_claims)

Revision ID: 0007_template_claimable
Revises: 0006_customer_groups
Create Date: 2026-12-02
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = "0007_template_claimable"
down_revision: str | Sequence[str] | None = "0006_customer_groups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # existing templates stay off the store page until their merchant allows it
    with op.batch_alter_table("coupon_templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimable", sa.Boolean(), server_default=sa.false(), nullable=False))

    op.create_table('campaign_claims',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('coupon_id', sa.Integer(), nullable=False),
    sa.Column('template_id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('created_at', core.db.TZDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_claims_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupons.id'], name=op.f('fk_campaign_claims_coupon_id_coupons')),
    sa.ForeignKeyConstraint(['resident_id'], ['residents.id'], name=op.f('fk_campaign_claims_resident_id_residents')),
    sa.ForeignKeyConstraint(['template_id'], ['coupon_templates.id'], name=op.f('fk_campaign_claims_template_id_coupon_templates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_claims')),
    sa.UniqueConstraint('coupon_id', name=op.f('uq_campaign_claims_coupon_id'))
    )
    with op.batch_alter_table('campaign_claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaign_claims_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_campaign_claims_resident_id'), ['resident_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('campaign_claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_campaign_claims_resident_id'))
        batch_op.drop_index(batch_op.f('ix_campaign_claims_campaign_id'))

    op.drop_table('campaign_claims')
    with op.batch_alter_table("coupon_templates", schema=None) as batch_op:
        batch_op.drop_column("claimable")
