"""The tables of sign-in and tokens (created by migration 0003_auth).

They live in their own MetaData, apart from the FHIR store's ``store.schema.metadata``: they
hold secrets (password and client secret hashes, signing keys), are never reached by FHIR
search or export, and a wipe of the record's tables must not drop the server's keys (the
test suite's wipe, which empties these too, puts the session server's key back). Secrets are stored as argon2 hashes (passwords, client secrets) or SHA-256
(authorisation codes and refresh tokens, which are long random values), never in clear,
except the private signing keys, which the server must be able to use.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, MetaData, Table, Text

metadata = MetaData()
_BIG = BigInteger().with_variant(Integer(), "sqlite")

clients = Table(
    "oauth_clients", metadata,
    Column("client_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),  # system | app
    Column("secret_hash", Text),  # argon2; None for public clients and key-authenticated ones
    Column("jwks", Text),  # JSON Web Key Set of a client that signs assertions
    Column("jwks_uri", Text),  # or where to fetch it (only when on the allow-list)
    Column("redirect_uris", Text, nullable=False, default="[]"),  # JSON list
    Column("scope", Text, nullable=False),  # the most this client may be granted
    Column("created_us", _BIG, nullable=False),
    # direct-care | secondary-use (migration 0011): secondary use is held to the national data opt-out
    Column("purpose", Text, nullable=False, server_default="direct-care"),
)

users = Table(
    "auth_users", metadata,
    Column("user_id", Text, primary_key=True),
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text),  # argon2; None for people who sign in through a provider
    Column("kind", Text, nullable=False),  # staff | patient | proxy
    Column("fhir_user", Text, nullable=False),  # Practitioner/x | Patient/x | RelatedPerson/x
    Column("grants", Text, nullable=False, default="[]"),  # proxies: RelatedPerson refs (JSON list)
    Column("external_subject", Text, unique=True),  # "issuer|sub" of a trusted provider
    Column("display", Text),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_us", _BIG, nullable=False),
)

codes = Table(
    "oauth_codes", metadata,
    Column("code_hash", Text, primary_key=True),
    Column("client_id", Text, nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("code_challenge", Text, nullable=False),
    Column("grantee", Text, nullable=False),  # JSON: who and in which context (see grants.Grantee)
    Column("expires_us", _BIG, nullable=False),
)

refresh_tokens = Table(
    "oauth_refresh_tokens", metadata,
    Column("token_hash", Text, primary_key=True),
    Column("family", Text, nullable=False),  # every rotation of one grant shares it
    Column("client_id", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("grantee", Text, nullable=False),
    Column("expires_us", _BIG, nullable=False),
    Column("used", Boolean, nullable=False, default=False),  # rotated away; reuse revokes the family
    Column("revoked", Boolean, nullable=False, default=False),
    Index("ix_refresh_family", "family"),
)

spent_ids = Table(
    "oauth_spent_ids", metadata,
    Column("kind", Text, primary_key=True),  # access (a revoked access token) | assertion (a used jti)
    Column("jti", Text, primary_key=True),
    Column("expires_us", _BIG, nullable=False),  # may be forgotten after this
)

signing_keys = Table(
    "oauth_signing_keys", metadata,
    Column("kid", Text, primary_key=True),
    Column("alg", Text, nullable=False),
    Column("private_jwk", Text, nullable=False),
    Column("created_us", _BIG, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
)
