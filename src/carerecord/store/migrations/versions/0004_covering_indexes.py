"""Value indexes end in rid, so they cover the search subqueries (issue 3, measured at 100,000 people).

``SELECT rid FROM idx_token WHERE pkey = ? AND code = ? AND system = ?`` had to visit the table
row of every index entry to read ``rid``: 190 ms for the first page of a code matching 103,000
Observations on SQLite. With ``rid`` as the last index column the subquery is answered from the
index alone, and for an equality on every other column the entries come in rid order, so a page
is read straight off the index (0.15 ms) and a count is an index range count (10 ms). See
docs/performance.md.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 04:20:00
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# (table, index, columns before rid)
INDEXES = (
    ("idx_string", "ix_string_value", ["pkey", "value"]),
    ("idx_token", "ix_token_code", ["pkey", "code", "system"]),
    ("idx_date", "ix_date_range", ["pkey", "low", "high"]),
    ("idx_number", "ix_number_value", ["pkey", "value"]),
    ("idx_quantity", "ix_quantity_value", ["pkey", "code", "value"]),
    ("idx_reference", "ix_reference_target", ["pkey", "ref_id", "ref_type"]),
    ("idx_uri", "ix_uri_value", ["pkey", "value"]),
    ("idx_composite", "ix_composite_a", ["pkey", "a_code", "a_system"]),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [*columns, "rid"])


def downgrade() -> None:
    for table, name, columns in INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
