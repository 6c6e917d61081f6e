"""The privacy officer's review of a self-claim or break-glass: outcome, note, who and when
(issue 4; carerecord.access.breakglass describes the table and must match this migration).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('access_grants') as batch:
        batch.add_column(sa.Column('review_outcome', sa.Text()))
        batch.add_column(sa.Column('review_note', sa.Text()))
        batch.add_column(sa.Column('reviewer', sa.Text()))
        batch.add_column(sa.Column('reviewer_role', sa.Text()))
        batch.add_column(sa.Column('reviewed_us', BIG))


def downgrade() -> None:
    with op.batch_alter_table('access_grants') as batch:
        for name in ('reviewed_us', 'reviewer_role', 'reviewer', 'review_note', 'review_outcome'):
            batch.drop_column(name)
