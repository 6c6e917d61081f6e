"""The _content index (issue 3): each resource's words (fhir/text.py), full-text indexed.

One row per resource in ``idx_content`` (rid, words), the words written as tokens
``<type tag>_<word>`` so a search seeks only its own type's words (store/content.py). The
database indexes them: on SQLite an FTS5 table over it (external content, no positions or
sizes since only prefix queries are asked and nothing is ranked), which the store writes beside each row (an insert trigger cost
five times as much: FTS5 flushed its pending terms at each row's statement savepoint) and
triggers keep in step on delete and update; on PostgreSQL a GIN index on
``array_to_tsvector(string_to_array(words, ' '))``, the tokens as they are. A row per word in a
B-tree table cost ten times as much to write. Existing resources get their words from
``carerecord reindex``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 06:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

SQLITE = [
    "CREATE VIRTUAL TABLE idx_content_fts USING fts5(words, content='idx_content', content_rowid='rid', "
    "tokenize=\"unicode61 remove_diacritics 0 tokenchars '_'\", detail='none', columnsize=0)",
    "CREATE TRIGGER idx_content_delete AFTER DELETE ON idx_content BEGIN "
    "INSERT INTO idx_content_fts(idx_content_fts, rowid, words) VALUES ('delete', old.rid, old.words); END",
    "CREATE TRIGGER idx_content_update AFTER UPDATE ON idx_content BEGIN "
    "INSERT INTO idx_content_fts(idx_content_fts, rowid, words) VALUES ('delete', old.rid, old.words); "
    "INSERT INTO idx_content_fts(rowid, words) VALUES (new.rid, new.words); END",
]
POSTGRESQL = [
    "CREATE INDEX ix_content_words ON idx_content USING gin (array_to_tsvector(string_to_array(words, ' ')))",
]


def upgrade() -> None:
    op.create_table('idx_content',
    sa.Column('rid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=False),
    sa.Column('words', sa.Text(), nullable=False),
    )
    for sql in SQLITE if op.get_bind().dialect.name == 'sqlite' else POSTGRESQL:
        op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        for name in ('idx_content_delete', 'idx_content_update'):
            op.execute(f'DROP TRIGGER {name}')
        op.execute('DROP TABLE idx_content_fts')
    op.drop_table('idx_content')
