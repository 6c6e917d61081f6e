"""Composite search index: idx_composite (search.html#composite).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 01:13:08.725276
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idx_composite',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pkey', sa.BigInteger(), nullable=False),
    sa.Column('a_system', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True),
    sa.Column('a_code', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True),
    sa.Column('b_system', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True),
    sa.Column('b_code', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True),
    sa.Column('b_low', sa.Float(), nullable=True),
    sa.Column('b_high', sa.Float(), nullable=True),
    sa.Column('c_low', sa.Float(), nullable=True),
    sa.Column('c_high', sa.Float(), nullable=True)
    )
    with op.batch_alter_table('idx_composite', schema=None) as batch_op:
        batch_op.create_index('ix_composite_a', ['pkey', 'a_code', 'a_system'], unique=False)
        batch_op.create_index('ix_composite_rid', ['rid', 'pkey'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('idx_composite', schema=None) as batch_op:
        batch_op.drop_index('ix_composite_rid')
        batch_op.drop_index('ix_composite_a')

    op.drop_table('idx_composite')
