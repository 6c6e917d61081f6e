"""Registered OAuth clients: SMART apps (authorisation code) and systems (client credentials).

A client is registered with the most it may ever be granted (``scope``); every token it gets is
the part of what it asked for that this allows. Systems authenticate with a client secret
(stored as an argon2 hash) or, as SMART Backend Services recommends, with JWTs signed by a key
whose public half is registered here (a JWKS, or a ``jwks_uri`` on the settings' allow-list).
Apps are public (PKCE only) or confidential. A system client is registered with a purpose
(:class:`~carerecord.access.principal.Purpose`): direct care by default, or secondary use,
which its tokens carry and the guard holds to the national data opt-out.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import Engine, insert, select

from carerecord.access import tables
from carerecord.access.principal import Purpose
from carerecord.access.scopes import ScopeError, ScopeSet
from carerecord.access.secrets import hash_secret, new_token, verify_secret
from carerecord.store.records import now_us

SYSTEM, APP = "system", "app"
ASSERTION_ALGS = ("RS384", "ES384")  # what SMART Backend Services requires servers to support


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """One registered client (implements Authlib's ClientMixin)."""

    client_id: str
    name: str
    kind: str
    scope: str
    redirect_uris: tuple[str, ...] = ()
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    purpose: str = Purpose.DIRECT_CARE.value

    @property
    def auth_methods(self) -> tuple[str, ...]:
        if self.jwks or self.jwks_uri:
            return ("private_key_jwt",)
        if self.secret_hash:
            return ("client_secret_basic", "client_secret_post")
        return ("none",)

    @property
    def is_public(self) -> bool:
        return self.auth_methods == ("none",)

    # -- Authlib ClientMixin ------------------------------------------------------------------------
    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scopes this client may have (None, hence invalid_scope, when nothing
        asked for is allowed or a scope is malformed)."""
        try:
            granted = ScopeSet.parse(scope).within(ScopeSet.parse(self.scope))
        except ScopeError:
            return None
        text = granted.text()
        return text or None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match only (OAuth 2.0 Security BCP)

    def check_client_secret(self, client_secret: str) -> bool:
        return verify_secret(self.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "introspection" and method == "none":
            return False  # introspection needs an authenticated client; a public app may revoke its own
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        return self.kind == APP and response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if self.kind == SYSTEM:
            return grant_type == "client_credentials"
        return grant_type in ("authorization_code", "refresh_token")


@dataclass(frozen=True, slots=True)
class NewClient:
    """What registering a client returns, once: the client and its secret or private key."""

    client: OAuthClient
    secret: str | None = None
    private_jwk: dict[str, Any] | None = None
    private_pem: str | None = None


class Clients:
    """The client registry of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, client_id: str | None) -> OAuthClient | None:
        if not client_id:
            return None
        t = tables.clients
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.client_id == client_id)).first()
        if row is None:
            return None
        return OAuthClient(row.client_id, row.name, row.kind, row.scope, tuple(json.loads(row.redirect_uris)),
                           row.secret_hash, json.loads(row.jwks) if row.jwks else None, row.jwks_uri,
                           row.purpose)

    def add(self, name: str, scope: str, *, kind: str = SYSTEM, redirect_uris: tuple[str, ...] = (),
            secret: bool = True, key: str | None = None, jwks: dict[str, Any] | None = None,
            jwks_uri: str | None = None, client_id: str | None = None,
            purpose: str = Purpose.DIRECT_CARE.value) -> NewClient:
        """Register a client. For a system: a client secret (``secret``), or a generated key
        pair when ``key`` is "RS384" or "ES384" (the private half is returned, never stored),
        or a given public ``jwks``/``jwks_uri``. ``secret=False`` with no key makes a public
        app (PKCE only). Scopes are checked to parse. ``purpose`` (direct-care or
        secondary-use) is for systems: an app acts for a person, in their care."""
        ScopeSet.parse(scope)
        if kind == SYSTEM and any(s.context != "system" for s in ScopeSet.parse(scope).resources):
            raise ScopeError("a system client takes system/ scopes only")
        try:
            purpose = Purpose(purpose).value
        except ValueError:
            raise ValueError(f"purpose must be one of {', '.join(p.value for p in Purpose)}") from None
        if kind != SYSTEM and purpose != Purpose.DIRECT_CARE:
            raise ValueError("only a system client can be registered for secondary use")
        plain_secret = private = pem = None
        if key:
            private, pem, jwks = _key_pair(key)
        elif secret and not jwks and not jwks_uri:
            plain_secret = new_token()
        client = OAuthClient(client_id or f"{_slug(name)}-{uuid.uuid4().hex[:8]}", name, kind, scope,
                             tuple(redirect_uris), hash_secret(plain_secret) if plain_secret else None,
                             jwks, jwks_uri, purpose)
        with self.engine.begin() as conn:
            conn.execute(insert(tables.clients).values(
                client_id=client.client_id, name=name, kind=kind, secret_hash=client.secret_hash,
                jwks=json.dumps(jwks) if jwks else None, jwks_uri=jwks_uri,
                redirect_uris=json.dumps(list(redirect_uris)), scope=scope, purpose=purpose,
                created_us=now_us()))
        return NewClient(client, plain_secret, private, pem)


def _key_pair(alg: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A new signing key for ``alg``: its private JWK, private PEM and public JWKS."""
    if alg not in ASSERTION_ALGS:
        raise ValueError(f"key algorithm must be one of {', '.join(ASSERTION_ALGS)}")
    params: Any = {"alg": alg, "use": "sig"}
    key: RSAKey | ECKey = (RSAKey.generate_key(2048, parameters=params, private=True) if alg == "RS384"
                           else ECKey.generate_key("P-384", parameters=params, private=True))
    key.ensure_kid()
    return (key.as_dict(private=True), key.as_pem(private=True).decode(),
            {"keys": [key.as_dict(private=False)]})


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:32] or "client"
