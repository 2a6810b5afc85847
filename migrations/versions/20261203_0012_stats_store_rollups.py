"""statistics: the same counts per store (and merchant) and day, and per month (every region,
circle, merchant and store question reads these, about a tenth of ``stat_daily``'s rows);
``stat_daily``'s campaign index gains the day

Revision ID: 0012_stats_store_rollups
Revises: 0011_webhooks
Create Date: 2026-12-03

Both new tables are filled from ``stat_daily`` as it stands (tallies still waiting are rolled
into all three by the next roll-up).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0012_stats_store_rollups'
down_revision: str | Sequence[str] | None = '0011_webhooks'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


METRICS = ("new_contacts, lost_contacts, issued, claimed, redeemed, reversed, discount_fen, bill_fen, pushes_planned, "
           "pushes_delivered, pushes_over_quota")


def _backfill() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    month = "CAST(date_trunc('month', local_day) AS DATE)" if pg else "date(local_day, 'start of month')"
    sums = ", ".join(f"sum({m})" for m in METRICS.split(", "))
    for table, day in (("stat_store_daily", "local_day"), ("stat_store_monthly", month)):
        op.execute(
            f"INSERT INTO {table} (local_day, store_id, campaign_id, merchant_id, circle_id, {METRICS}) "
            f"SELECT {day}, store_id, CASE WHEN store_id = 0 THEN campaign_id ELSE 0 END, merchant_id, "
            f"max(circle_id), {sums} FROM stat_daily "
            f"GROUP BY {day}, store_id, CASE WHEN store_id = 0 THEN campaign_id ELSE 0 END, merchant_id"
        )


def upgrade() -> None:
    op.create_table('stat_store_daily',
    sa.Column('local_day', sa.Date(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('new_contacts', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('lost_contacts', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('issued', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('claimed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('redeemed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reversed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('discount_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('bill_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pushes_planned', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pushes_delivered', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pushes_over_quota', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('local_day', 'store_id', 'campaign_id', 'merchant_id', name=op.f('pk_stat_store_daily'))
    )
    with op.batch_alter_table('stat_store_daily', schema=None) as batch_op:
        batch_op.create_index('ix_stat_store_daily_circle_day', ['circle_id', 'local_day'], unique=False)
        batch_op.create_index('ix_stat_store_daily_merchant_day', ['merchant_id', 'local_day'], unique=False)
        batch_op.create_index('ix_stat_store_daily_store_day', ['store_id', 'local_day'], unique=False)
        batch_op.create_index('ix_stat_store_daily_storeless', ['campaign_id', 'local_day'], unique=False, postgresql_where=sa.text('store_id = 0'), sqlite_where=sa.text('store_id = 0'))

    op.create_table('stat_store_monthly',
    sa.Column('local_day', sa.Date(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=False),
    sa.Column('circle_id', sa.Integer(), nullable=False),
    sa.Column('new_contacts', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('lost_contacts', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('issued', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('claimed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('redeemed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('reversed', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('discount_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('bill_fen', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pushes_planned', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pushes_delivered', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('pushes_over_quota', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('local_day', 'store_id', 'campaign_id', 'merchant_id', name=op.f('pk_stat_store_monthly'))
    )
    with op.batch_alter_table('stat_store_monthly', schema=None) as batch_op:
        batch_op.create_index('ix_stat_store_monthly_circle_day', ['circle_id', 'local_day'], unique=False)
        batch_op.create_index('ix_stat_store_monthly_merchant_day', ['merchant_id', 'local_day'], unique=False)
        batch_op.create_index('ix_stat_store_monthly_store_day', ['store_id', 'local_day'], unique=False)
        batch_op.create_index('ix_stat_store_monthly_storeless', ['campaign_id', 'local_day'], unique=False, postgresql_where=sa.text('store_id = 0'), sqlite_where=sa.text('store_id = 0'))

    with op.batch_alter_table('stat_daily', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stat_daily_campaign'))
        batch_op.create_index('ix_stat_daily_campaign_day', ['campaign_id', 'local_day'], unique=False)
    _backfill()


def downgrade() -> None:
    with op.batch_alter_table('stat_daily', schema=None) as batch_op:
        batch_op.drop_index('ix_stat_daily_campaign_day')
        batch_op.create_index(batch_op.f('ix_stat_daily_campaign'), ['campaign_id'], unique=False)

    with op.batch_alter_table('stat_store_monthly', schema=None) as batch_op:
        batch_op.drop_index('ix_stat_store_monthly_storeless', postgresql_where=sa.text('store_id = 0'), sqlite_where=sa.text('store_id = 0'))
        batch_op.drop_index('ix_stat_store_monthly_store_day')
        batch_op.drop_index('ix_stat_store_monthly_merchant_day')
        batch_op.drop_index('ix_stat_store_monthly_circle_day')

    op.drop_table('stat_store_monthly')
    with op.batch_alter_table('stat_store_daily', schema=None) as batch_op:
        batch_op.drop_index('ix_stat_store_daily_storeless', postgresql_where=sa.text('store_id = 0'), sqlite_where=sa.text('store_id = 0'))
        batch_op.drop_index('ix_stat_store_daily_store_day')
        batch_op.drop_index('ix_stat_store_daily_merchant_day')
        batch_op.drop_index('ix_stat_store_daily_circle_day')

    op.drop_table('stat_store_daily')
