"""Self-claimed relationships and break-glass grants (issue 4 part 2: the guard; the table is
described in carerecord.access.breakglass, which must match this migration).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 05:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('access_grants',
    sa.Column('grant_id', sa.Text(), primary_key=True),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('practitioner_role', sa.Text(), nullable=False),
    sa.Column('organization', sa.Text()),
    sa.Column('patient_id', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('created_us', BIG, nullable=False),
    sa.Column('expires_us', BIG, nullable=False),
    sa.Column('reviewed', sa.Boolean(), nullable=False),
    )
    op.create_index('ix_access_grants_who', 'access_grants', ['practitioner_role', 'patient_id', 'expires_us'])
    op.create_index('ix_access_grants_queue', 'access_grants', ['reviewed', 'created_us'])


def downgrade() -> None:
    op.drop_table('access_grants')
