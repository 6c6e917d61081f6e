"""Sign-in credentials of people, each linked to the FHIR resource that is that person here:
a Practitioner (staff), a Patient, or a RelatedPerson (a proxy; one per patient they have been
granted, listed in ``grants``).

Passwords are argon2 hashes; a wrong username costs the same time as a wrong password. People
who sign in through a trusted provider are linked by ``external_subject`` ("issuer|sub") and
may have no password at all.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

from carerecord.access import tables
from carerecord.access.secrets import hash_secret, verify_nobody, verify_secret
from carerecord.store.records import now_us

KINDS = {"staff": "Practitioner", "patient": "Patient", "proxy": "RelatedPerson"}


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    username: str
    kind: str
    fhir_user: str
    grants: tuple[str, ...]
    display: str | None


class Users:
    """The credential store of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, username: str, password: str | None, kind: str, fhir_user: str, *,
            grants: tuple[str, ...] = (), display: str | None = None,
            external_subject: str | None = None) -> User:
        """Add a person. ``fhir_user`` must be a reference of the type ``kind`` needs
        (Practitioner for staff, Patient for patients, RelatedPerson for proxies); a proxy's
        ``grants`` are their RelatedPerson references (``fhir_user`` is added if missing)."""
        if KINDS.get(kind) != fhir_user.partition("/")[0] or not fhir_user.partition("/")[2]:
            raise ValueError(f"a {kind} user is linked to a {KINDS.get(kind, '?')}/id, not {fhir_user!r}")
        if kind == "proxy" and fhir_user not in grants:
            grants = (fhir_user, *grants)
        user = User(uuid.uuid4().hex, username, kind, fhir_user, tuple(grants), display)
        with self.engine.begin() as conn:
            conn.execute(insert(tables.users).values(
                user_id=user.user_id, username=username,
                password_hash=hash_secret(password) if password else None, kind=kind,
                fhir_user=fhir_user, grants=json.dumps(list(grants)), external_subject=external_subject,
                display=display, active=True, created_us=now_us()))
        return user

    def set_password(self, username: str, password: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(update(tables.users).where(tables.users.c.username == username)
                                .values(password_hash=hash_secret(password))).rowcount == 1

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user with this username and password, or None (in the same time)."""
        t = tables.users
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.username == username, t.c.active.is_(True))).first()
        if row is None:
            verify_nobody(password)
            return None
        if not verify_secret(row.password_hash, password):
            return None
        return _user(row)

    def get(self, user_id: str) -> User | None:
        return self._one(tables.users.c.user_id == user_id)

    def by_username(self, username: str) -> User | None:
        return self._one(tables.users.c.username == username)

    def by_external_subject(self, issuer: str, subject: str) -> User | None:
        return self._one(tables.users.c.external_subject == f"{issuer}|{subject}")

    def _one(self, where: object) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.users).where(where, tables.users.c.active.is_(True))).first()  # type: ignore[arg-type]
        return None if row is None else _user(row)


def _user(row: object) -> User:
    r = row
    return User(r.user_id, r.username, r.kind, r.fhir_user, tuple(json.loads(r.grants)), r.display)  # type: ignore[attr-defined]
