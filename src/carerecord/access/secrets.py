"""Hashing of the secrets people and clients present: passwords and client secrets with
argon2id (RFC 9106, via argon2-cffi), and long random tokens (authorisation codes, refresh
tokens) with SHA-256.

Why two: a password is low-entropy, so its hash must be slow to guess against; a 256-bit random
code is not guessable, so a fast hash suffices and lets it be looked up by its hash.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()


def hash_secret(secret: str) -> str:
    """An argon2id hash of a password or client secret (salted; encodes its parameters)."""
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """Whether ``secret`` matches ``stored_hash``; False for a missing or malformed hash."""
    if not stored_hash or not secret:
        return False
    try:
        return _HASHER.verify(stored_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


# A hash of a fixed value, verified against when a username is unknown, so a wrong username
# takes as long as a wrong password (no user-enumeration oracle through timing).
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))


def verify_nobody(secret: str) -> bool:
    """Spend the time of one verification and fail."""
    verify_secret(_DUMMY, secret)
    return False


def token_hash(token: str) -> str:
    """The SHA-256 hex digest under which a random code or refresh token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random value with ``nbytes`` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)
