"""Initial schema: resources, every version, Patient compartments and search index tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 00:58:57.554317
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('compartments',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False)
    )
    with op.batch_alter_table('compartments', schema=None) as batch_op:
        batch_op.create_index('ix_compartments_patient', ['patient_id', 'rid'], unique=False)
        batch_op.create_index('ix_compartments_rid', ['rid'], unique=False)

    op.create_table('idx_date',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pkey', sa.BigInteger(), nullable=False),
    sa.Column('low', sa.BigInteger(), nullable=False),
    sa.Column('high', sa.BigInteger(), nullable=False)
    )
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_date_range', ['pkey', 'low', 'high'], unique=False)
        batch_op.create_index('ix_date_rid', ['rid', 'pkey'], unique=False)

    op.create_table('idx_number',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pkey', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('low', sa.Float(), nullable=False),
    sa.Column('high', sa.Float(), nullable=False)
    )
    with op.batch_alter_table('idx_number', schema=None) as batch_op:
        batch_op.create_index('ix_number_rid', ['rid', 'pkey'], unique=False)
        batch_op.create_index('ix_number_value', ['pkey', 'value'], unique=False)

    op.create_table('idx_quantity',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pkey', sa.BigInteger(), nullable=False),
    sa.Column('system', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True),
    sa.Column('code', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('low', sa.Float(), nullable=False),
    sa.Column('high', sa.Float(), nullable=False)
    )
    with op.batch_alter_table('idx_quantity', schema=None) as batch_op:
        batch_op.create_index('ix_quantity_rid', ['rid', 'pkey'], unique=False)
        batch_op.create_index('ix_quantity_value', ['pkey', 'code', 'value'], unique=False)

    op.create_table('idx_reference',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pkey', sa.BigInteger(), nullable=False),
    sa.Column('ref_type', sa.String(length=64), nullable=True),
    sa.Column('ref_id', sa.String(length=64), nullable=True),
    sa.Column('url', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True)
    )
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.create_index('ix_reference_reverse', ['ref_type', 'ref_id'], unique=False)
        batch_op.create_index('ix_reference_rid', ['rid', 'pkey'], unique=False)
        batch_op.create_index('ix_reference_target', ['pkey', 'ref_id', 'ref_type'], unique=False)

    op.create_table('idx_string',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pkey', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=False),
    sa.Column('exact', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=False)
    )
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.create_index('ix_string_rid', ['rid', 'pkey'], unique=False)
        batch_op.create_index('ix_string_value', ['pkey', 'value'], unique=False)

    op.create_table('idx_token',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pkey', sa.BigInteger(), nullable=False),
    sa.Column('system', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True),
    sa.Column('code', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True),
    sa.Column('text', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=True)
    )
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.create_index('ix_token_code', ['pkey', 'code', 'system'], unique=False)
        batch_op.create_index('ix_token_rid', ['rid', 'pkey'], unique=False)

    op.create_table('idx_uri',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pkey', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.Text().with_variant(sa.Text(collation='C'), 'postgresql'), nullable=False)
    )
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.create_index('ix_uri_rid', ['rid', 'pkey'], unique=False)
        batch_op.create_index('ix_uri_value', ['pkey', 'value'], unique=False)

    op.create_table('resource_versions',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('last_updated', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('rid', 'version')
    )
    with op.batch_alter_table('resource_versions', schema=None) as batch_op:
        batch_op.create_index('ix_versions_type_updated', ['res_type', 'last_updated'], unique=False)
        batch_op.create_index('ix_versions_updated', ['last_updated'], unique=False)

    op.create_table('resources',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.BigInteger(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=True),
    sa.Column('doc', postgresql.JSONB(astext_type=sa.Text()).with_variant(sa.Text(), 'sqlite'), nullable=True),
    sa.PrimaryKeyConstraint('rid')
    )
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.create_index('ix_resources_type_updated', ['res_type', 'last_updated'], unique=False)
        batch_op.create_index('ux_resources_type_id', ['res_type', 'res_id'], unique=True)



def downgrade() -> None:
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_index('ux_resources_type_id')
        batch_op.drop_index('ix_resources_type_updated')

    op.drop_table('resources')
    with op.batch_alter_table('resource_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_versions_updated')
        batch_op.drop_index('ix_versions_type_updated')

    op.drop_table('resource_versions')
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.drop_index('ix_uri_value')
        batch_op.drop_index('ix_uri_rid')

    op.drop_table('idx_uri')
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_token_rid')
        batch_op.drop_index('ix_token_code')

    op.drop_table('idx_token')
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.drop_index('ix_string_value')
        batch_op.drop_index('ix_string_rid')

    op.drop_table('idx_string')
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_reference_target')
        batch_op.drop_index('ix_reference_rid')
        batch_op.drop_index('ix_reference_reverse')

    op.drop_table('idx_reference')
    with op.batch_alter_table('idx_quantity', schema=None) as batch_op:
        batch_op.drop_index('ix_quantity_value')
        batch_op.drop_index('ix_quantity_rid')

    op.drop_table('idx_quantity')
    with op.batch_alter_table('idx_number', schema=None) as batch_op:
        batch_op.drop_index('ix_number_value')
        batch_op.drop_index('ix_number_rid')

    op.drop_table('idx_number')
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_date_rid')
        batch_op.drop_index('ix_date_range')

    op.drop_table('idx_date')
    with op.batch_alter_table('compartments', schema=None) as batch_op:
        batch_op.drop_index('ix_compartments_rid')
        batch_op.drop_index('ix_compartments_patient')

    op.drop_table('compartments')
