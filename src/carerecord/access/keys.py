"""The server's signing keys: generated on first start, stored, published as a JWKS.

Access tokens and id_tokens are signed with RS256 (what SMART App Launch requires every server
to support for id_tokens). Several workers may start at once on an empty database; each may
generate a key, and that is harmless: every stored key is published and accepted, and a
verifier that meets an unknown ``kid`` reloads the keys before refusing the token.
"""

from __future__ import annotations

import json
import threading

from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import Engine, insert, select

from carerecord.access import tables
from carerecord.store.records import now_us

ALG = "RS256"


class SigningKeys:
    """The signing keys of one database, cached in memory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._keys: dict[str, RSAKey] = {}
        self._current: RSAKey | None = None

    def ensure(self) -> None:
        """Load the stored keys, generating and storing one if there is none."""
        self.reload()
        if self._current is None:
            key = RSAKey.generate_key(2048, parameters={"alg": ALG, "use": "sig"}, private=True)
            key.ensure_kid()
            with self.engine.begin() as conn:
                conn.execute(insert(tables.signing_keys).values(
                    kid=key.kid, alg=ALG, private_jwk=json.dumps(key.as_dict(private=True)),
                    created_us=now_us(), active=True))
            self.reload()

    def reload(self) -> None:
        """Read every active key; the newest signs."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(tables.signing_keys.c.private_jwk)
                                .where(tables.signing_keys.c.active.is_(True))
                                .order_by(tables.signing_keys.c.created_us)).all()
        keys = {}
        for (jwk,) in rows:
            key = RSAKey.import_key(json.loads(jwk))
            keys[str(key.kid)] = key
        with self._lock:
            self._keys = keys
            self._current = list(keys.values())[-1] if keys else None

    def signing_key(self) -> RSAKey:
        if self._current is None:
            self.ensure()
        assert self._current is not None
        return self._current

    def keyset(self) -> KeySet:
        """Every active key (private parts included: for verifying in this process only)."""
        if not self._keys:
            self.ensure()
        return KeySet(list(self._keys.values()))

    def knows(self, kid: str | None) -> bool:
        return kid is not None and kid in self._keys

    def public_jwks(self) -> dict[str, object]:
        """The JWKS document: public parts only."""
        if not self._keys:
            self.ensure()
        return {"keys": [k.as_dict(private=False) for k in self._keys.values()]}
