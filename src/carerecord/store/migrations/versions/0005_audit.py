"""The audit trail: an append-only, hash-chained table of AuditEvents (issue 4, audit; the
table is described in carerecord.access.audit_store, which must match this migration).

On PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE of audit_log for every role, so
no application connection can change the trail; the owner of the database can still drop the
trigger or the table, which the hash chain (`carerecord check`) then detects.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 05:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('seq', BIG, primary_key=True, autoincrement=False),
    sa.Column('recorded_us', BIG, nullable=False),
    sa.Column('patient', sa.Text()),
    sa.Column('agent', sa.Text(), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=False),
    sa.Column('action', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('hash', sa.Text(), nullable=False),
    )
    op.create_index('ix_audit_patient', 'audit_log', ['patient', 'seq'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("""
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$""")
        op.execute("CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
        op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_index('ix_audit_patient', 'audit_log')
    op.drop_table('audit_log')
