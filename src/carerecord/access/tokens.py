"""Access tokens: short-lived signed JWTs (RFC 9068 shape) that carry the Principal.

A token names its issuer (this server), audience (the FHIR base URL: a token for another
server is refused), subject, client, scopes, expiry and a ``jti``. The Principal is built from
the verified claims the first time a token is seen (and kept, per process, for the next
requests with it); expiry is checked and the jti looked up among revoked ids on every request,
so a revocation (RFC 7009) takes effect on the next request. Activities are looked up in the
role table (loaded at start) rather than copied into the token.

:func:`mint_system_token` is the supported way for tools (the benchmarks, scripts) to get a
``system/`` token without running the OAuth flow.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from sqlalchemy import Engine

from carerecord.access.grants import Grantee, Grants
from carerecord.access.keys import ALG, SigningKeys
from carerecord.access.principal import Kind, LaunchContext, Principal, Purpose, SelectedRole
from carerecord.access.roles import RoleTable, default_table
from carerecord.access.scopes import ScopeError, ScopeSet
from carerecord.errors import Unauthorized

LEEWAY = 30  # seconds of clock skew tolerated on exp/iat
VERIFIED_CACHE = 4096  # tokens whose signature and claims were checked, per process


class TokenError(Unauthorized):
    """A bearer token that is missing, malformed, not ours, expired or revoked. ``error`` is
    the RFC 6750 code for the WWW-Authenticate header."""

    error = "invalid_token"


class AccessTokens:
    """Mints and verifies this server's access tokens."""

    def __init__(self, engine: Engine, issuer: str, audience: str, keys: SigningKeys | None = None,
                 grants: Grants | None = None, roles: RoleTable | None = None) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = keys or SigningKeys(engine)
        self.grants = grants or Grants(engine)
        self.roles = roles or default_table()
        # token -> (exp, jti, Principal) for tokens already verified: the RSA check, the JWT
        # parsing and the scope parsing cost about 200 us a request, and a client sends the
        # same token many times. Expiry and revocation are still checked on every request.
        self._verified: OrderedDict[str, tuple[int, str, Principal]] = OrderedDict()

    # -- minting -------------------------------------------------------------------------------------
    def mint(self, client_id: str, scope: str, grantee: Grantee, seconds: int) -> tuple[str, dict[str, Any]]:
        """A signed access token for ``grantee`` and its claims."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": grantee.subject, "client_id": client_id,
            "scope": scope, "iat": now, "exp": now + seconds, "jti": uuid.uuid4().hex, "kind": grantee.kind}
        if grantee.practitioner_role:
            claims["role"] = {"practitioner_role": grantee.practitioner_role, "role": grantee.role,
                              "organization": grantee.organization}
        if grantee.patients:
            claims["patients"] = list(grantee.patients)
        if grantee.patient:
            claims["patient"] = grantee.patient
        if grantee.encounter:
            claims["encounter"] = grantee.encounter
        if grantee.need_patient_banner:
            claims["need_patient_banner"] = True
        if grantee.display:
            claims["name"] = grantee.display
        if grantee.kind == Kind.SYSTEM.value and grantee.purpose and grantee.purpose != Purpose.DIRECT_CARE:
            claims["purpose"] = grantee.purpose  # what the guard holds a secondary-use client to
        return self.sign(claims), claims

    def sign(self, claims: dict[str, Any], typ: str = "at+jwt") -> str:
        key = self.keys.signing_key()
        return jwt.encode({"alg": ALG, "kid": key.kid, "typ": typ}, claims, key)

    # -- verifying -------------------------------------------------------------------------------------
    def claims(self, token: str, *, check_revoked: bool = True) -> dict[str, Any]:
        """The verified claims of one of our tokens; TokenError otherwise."""
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError, UnicodeError) as e:
            raise TokenError("The access token is not a well-formed JWT") from e
        if not self.keys.knows(header.get("kid")):
            self.keys.reload()  # a key made by another worker since we loaded ours
        try:
            decoded = jwt.decode(token, self.keys.keyset(), algorithms=[ALG])
        except (JoseError, ValueError) as e:
            raise TokenError("The access token's signature is not valid") from e
        claims = decoded.claims
        now = time.time()
        if decoded.header.get("typ") != "at+jwt":
            raise TokenError("This is not an access token")
        if claims.get("iss") != self.issuer:
            raise TokenError("The access token was issued by another server")
        aud = claims.get("aud")
        if self.audience not in (aud if isinstance(aud, list) else [aud]):
            raise TokenError("The access token is for another server (wrong audience)")
        if not isinstance(claims.get("exp"), int) or claims["exp"] + LEEWAY < now:
            raise TokenError("The access token has expired")
        if not isinstance(claims.get("jti"), str):
            raise TokenError("The access token has no id")
        if check_revoked and self.grants.is_spent("access", claims["jti"]):
            raise TokenError("The access token has been revoked")
        return claims

    def seen(self, token: str) -> bool:
        """Whether ``token`` is one of ours that was verified before (in this process)."""
        return token in self._verified

    def principal(self, token: str) -> Principal:
        """The Principal a valid token of ours stands for; TokenError if it is not valid.
        A token seen before skips the signature check (it cannot have changed) but not the
        expiry and revocation checks."""
        hit = self._verified.get(token)
        if hit is None:
            claims = self.claims(token)
            found = self.principal_from_claims(claims)
            self._verified[token] = (claims["exp"], claims["jti"], found)
            if len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
            return found
        exp, jti, found = hit
        if exp + LEEWAY < time.time():
            del self._verified[token]
            raise TokenError("The access token has expired")
        if self.grants.is_spent("access", jti):
            raise TokenError("The access token has been revoked")
        return found

    def principal_from_claims(self, claims: dict[str, Any]) -> Principal:
        try:
            scopes = ScopeSet.parse(claims.get("scope"))
            kind = Kind(claims["kind"])
            purpose = Purpose(claims.get("purpose", Purpose.DIRECT_CARE))
        except (ScopeError, ValueError, KeyError) as e:
            raise TokenError("The access token's claims are malformed") from e
        role = None
        if isinstance(claims.get("role"), dict):
            r = claims["role"]
            table_role = self.roles.roles.get(r.get("role") or "")
            role = SelectedRole(r["practitioner_role"], r.get("role") or "", r.get("organization"),
                                table_role.activities if table_role else frozenset())
        launch = LaunchContext(claims.get("patient"), claims.get("encounter"),
                               bool(claims.get("need_patient_banner")))
        if purpose is not Purpose.DIRECT_CARE and kind is not Kind.SYSTEM:
            raise TokenError("The access token's claims are malformed")
        return Principal(kind, claims["sub"], claims.get("client_id", ""), scopes, claims["iss"],
                         claims["jti"], claims["exp"], role, tuple(claims.get("patients", ())), launch,
                         claims.get("name"), purpose)

    def revoke(self, claims: dict[str, Any]) -> None:
        """Refuse this token from now on (kept until it would have expired anyway)."""
        self.grants.spend("access", claims["jti"], (claims["exp"] + LEEWAY) * 1_000_000)


def mint_system_token(engine: Engine, scopes: str = "system/*.*", *, audience: str,
                      client_id: str = "carerecord-tool", seconds: int = 3600,
                      purpose: Purpose = Purpose.DIRECT_CARE) -> str:
    """A ``system/`` access token for tools and benchmarks, signed with the server's key.

    ``engine`` is the store's (a ``Repository`` has it as ``.engine``), already migrated;
    ``audience`` is the server's FHIR base URL exactly as it serves it (``Settings.fhir_base()``,
    e.g. ``http://127.0.0.1:8080/fhir``). The issuer is derived from it the way the server does.
    Send the result as ``Authorization: Bearer <token>``. Anyone who can run this can read the
    whole database, which is no more than they could do with the engine itself. ``purpose``
    secondary use holds the token to the national data opt-out, as for a client registered so."""
    audience = audience.rstrip("/")
    issuer = audience[: -len("/fhir")] if audience.endswith("/fhir") else audience
    tokens = AccessTokens(engine, issuer, audience)
    for item in ScopeSet.parse(scopes).resources:
        if item.context != "system":
            raise ValueError(f"{item.text()}: a system token takes system/ scopes only")
    token, _ = tokens.mint(client_id, scopes, Grantee("system", client_id, purpose=Purpose(purpose).value), seconds)
    return token
