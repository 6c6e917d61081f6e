"""Contained resources are indexed for _contained (issue 3; store/contained.py).

``contained`` lists each contained resource of a live resource under a negative surrogate rid
derived from its container's (schema.contained_rid); its index rows go in the idx_* tables
under keys of their own (schema.contained_key), so ordinary searches never meet them. Existing
resources get theirs from ``carerecord reindex``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 06:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

RID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('contained',
    sa.Column('rid', RID, primary_key=True, autoincrement=False),
    sa.Column('container', RID, nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    )
    op.create_index('ix_contained_container', 'contained', ['container'])
    op.create_index('ix_contained_type', 'contained', ['res_type', 'rid'])


def downgrade() -> None:
    op.drop_table('contained')
