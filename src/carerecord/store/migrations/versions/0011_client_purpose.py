"""The purpose a system client is registered for (issue 4: the national data opt-out excludes a
patient from secondary use, never from direct care; carerecord.access.tables describes the
column, which must match this migration). Every existing client is a direct-care one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('oauth_clients', sa.Column('purpose', sa.Text(), nullable=False,
                                             server_default='direct-care'))


def downgrade() -> None:
    with op.batch_alter_table('oauth_clients') as batch:
        batch.drop_column('purpose')
