"""the POS API: keys (hashed secrets, one owner kind), idempotency records, what each key
did; a redemption or reversal may be made by a key rather than a signed-in user

Revision ID: 0010_api_keys
Revises: 0009_stats_rollups
Create Date: 2026-12-03

Downgrading makes ``redemptions.cashier_id`` and ``redemption_reversals.user_id`` required
again, which fails while redemptions made through the API exist (they name no user).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db

revision: str = '0010_api_keys'
down_revision: str | Sequence[str] | None = '0009_stats_rollups'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('secret_sha256', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.Column('merchant_id', sa.Integer(), nullable=True),
    sa.Column('store_id', sa.Integer(), nullable=True),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', core.db.TZDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', core.db.TZDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', core.db.TZDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('(merchant_id IS NULL) <> (manager_id IS NULL)', name=op.f('ck_api_keys_one_owner_kind')),
    sa.CheckConstraint('store_id IS NULL OR merchant_id IS NOT NULL', name=op.f('ck_api_keys_store_key_has_merchant')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_api_keys_created_by_id_users')),
    sa.ForeignKeyConstraint(['manager_id'], ['users.id'], name=op.f('fk_api_keys_manager_id_users')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_api_keys_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_api_keys_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_manager_id'), ['manager_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_keys_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('api_idempotency',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('api_key_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', core.db.TZDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_api_idempotency_api_key_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_idempotency')),
    sa.UniqueConstraint('api_key_id', 'key', name='uq_api_idempotency_key')
    )
    with op.batch_alter_table('api_idempotency', schema=None) as batch_op:
        batch_op.create_index('ix_api_idempotency_created', ['created_at'], unique=False)

    op.create_table('api_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('api_key_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('redemption_id', sa.Integer(), nullable=False),
    sa.Column('at', core.db.TZDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_api_actions_api_key_id_api_keys')),
    sa.ForeignKeyConstraint(['redemption_id'], ['redemptions.id'], name=op.f('fk_api_actions_redemption_id_redemptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_actions'))
    )
    with op.batch_alter_table('api_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_actions_api_key_id'), ['api_key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_actions_redemption_id'), ['redemption_id'], unique=False)

    with op.batch_alter_table('redemption_reversals', schema=None) as batch_op:
        batch_op.alter_column('user_id',
               existing_type=sa.INTEGER(),
               nullable=True)

    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.alter_column('cashier_id',
               existing_type=sa.INTEGER(),
               nullable=True)



def downgrade() -> None:
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.alter_column('cashier_id',
               existing_type=sa.INTEGER(),
               nullable=False)

    with op.batch_alter_table('redemption_reversals', schema=None) as batch_op:
        batch_op.alter_column('user_id',
               existing_type=sa.INTEGER(),
               nullable=False)

    with op.batch_alter_table('api_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_actions_redemption_id'))
        batch_op.drop_index(batch_op.f('ix_api_actions_api_key_id'))

    op.drop_table('api_actions')
    with op.batch_alter_table('api_idempotency', schema=None) as batch_op:
        batch_op.drop_index('ix_api_idempotency_created')

    op.drop_table('api_idempotency')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_merchant_id'))
        batch_op.drop_index(batch_op.f('ix_api_keys_manager_id'))

    op.drop_table('api_keys')
