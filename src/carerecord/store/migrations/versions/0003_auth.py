"""Sign-in and tokens: OAuth clients, user credentials, authorisation codes, refresh tokens,
spent token ids and signing keys (issue 4 part 1; the tables are described in
carerecord.access.tables, which must match this migration).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('oauth_clients',
    sa.Column('client_id', sa.Text(), primary_key=True),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('secret_hash', sa.Text()),
    sa.Column('jwks', sa.Text()),
    sa.Column('jwks_uri', sa.Text()),
    sa.Column('redirect_uris', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('created_us', BIG, nullable=False),
    )
    op.create_table('auth_users',
    sa.Column('user_id', sa.Text(), primary_key=True),
    sa.Column('username', sa.Text(), nullable=False, unique=True),
    sa.Column('password_hash', sa.Text()),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('fhir_user', sa.Text(), nullable=False),
    sa.Column('grants', sa.Text(), nullable=False),
    sa.Column('external_subject', sa.Text(), unique=True),
    sa.Column('display', sa.Text()),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_us', BIG, nullable=False),
    )
    op.create_table('oauth_codes',
    sa.Column('code_hash', sa.Text(), primary_key=True),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('code_challenge', sa.Text(), nullable=False),
    sa.Column('grantee', sa.Text(), nullable=False),
    sa.Column('expires_us', BIG, nullable=False),
    )
    op.create_table('oauth_refresh_tokens',
    sa.Column('token_hash', sa.Text(), primary_key=True),
    sa.Column('family', sa.Text(), nullable=False),
    sa.Column('client_id', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('grantee', sa.Text(), nullable=False),
    sa.Column('expires_us', BIG, nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    )
    op.create_index('ix_refresh_family', 'oauth_refresh_tokens', ['family'])
    op.create_table('oauth_spent_ids',
    sa.Column('kind', sa.Text(), primary_key=True),
    sa.Column('jti', sa.Text(), primary_key=True),
    sa.Column('expires_us', BIG, nullable=False),
    )
    op.create_table('oauth_signing_keys',
    sa.Column('kid', sa.Text(), primary_key=True),
    sa.Column('alg', sa.Text(), nullable=False),
    sa.Column('private_jwk', sa.Text(), nullable=False),
    sa.Column('created_us', BIG, nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    for name in ('oauth_signing_keys', 'oauth_spent_ids', 'oauth_refresh_tokens', 'oauth_codes',
                 'auth_users', 'oauth_clients'):
        op.drop_table(name)
