"""Trusting an external OpenID Connect provider: NHS CIS2 for staff, NHS login for patients in
real deployments, any OIDC provider in tests. Configured, not coded (``Settings.trusted_providers``).

A bearer token whose ``iss`` is a trusted provider's is verified against that provider's JWKS
(fetched only from the allow-list), its audience and expiry, and its claims are mapped to a
Principal:

- staff: the person is the user linked to ("issuer|sub"); the role is the PractitionerRole the
  provider says they selected (CIS2's ``selected_roleid``, matched to a PractitionerRole's id or
  identifier), or their only role. No link or no role: refused.
- patients: the user linked to ("issuer|sub") (a patient or a proxy), else the one Patient with
  the NHS number the provider asserts (NHS login's ``nhs_number``).

The token's SMART scopes, if it has any, narrow the provider's configured maximum.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError

from carerecord.access.directory import Directory
from carerecord.access.principal import Kind, Principal, SelectedRole
from carerecord.access.remote_keys import RemoteKeyError, RemoteKeys
from carerecord.access.scopes import ScopeError, ScopeSet
from carerecord.access.tokens import LEEWAY, TokenError
from carerecord.access.users import Users
from carerecord.config import TrustedProvider

CACHE_SECONDS = 60.0
CACHE_SIZE = 4096


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` claim of a compact JWT before verification (only to choose the verifier)."""
    try:
        payload = jws.extract_compact(token.encode()).payload
        iss = json.loads(payload).get("iss")
    except (JoseError, ValueError, UnicodeError, AttributeError):
        return None
    return iss if isinstance(iss, str) else None


class TrustedProviders:
    """Verifies trusted providers' tokens and maps them to Principals."""

    def __init__(self, providers: list[TrustedProvider], remote: RemoteKeys, users: Users,
                 directory: Directory) -> None:
        self.providers = {p.issuer: p for p in providers}
        self.remote = remote
        self.users = users
        self.directory = directory
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def handles(self, issuer: str | None) -> bool:
        return issuer in self.providers

    def principal(self, token: str, issuer: str) -> Principal:
        """The Principal of a trusted provider's token; TokenError if it is not valid or maps
        to nobody here."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic() and hit[1].expires_at + LEEWAY >= time.time():
            return hit[1]
        provider = self.providers[issuer]
        claims = self._verify(token, provider)
        principal = self._map(claims, provider, key)
        with self._lock:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal

    def _verify(self, token: str, provider: TrustedProvider) -> dict[str, Any]:
        try:
            kid = jws.extract_compact(token.encode()).headers().get("kid")
            keys = self.remote.keyset(provider.jwks_uri, kid=kid)
            decoded = jwt.decode(token, keys, algorithms=provider.algorithms)
        except RemoteKeyError as e:
            raise TokenError("The token's issuer keys cannot be obtained") from e
        except (JoseError, ValueError) as e:
            raise TokenError("The token's signature is not valid") from e
        claims = decoded.claims
        aud = claims.get("aud")
        if provider.audience not in (aud if isinstance(aud, list) else [aud]):
            raise TokenError("The token is for another audience")
        if not isinstance(claims.get("exp"), int) or claims["exp"] + LEEWAY < time.time():
            raise TokenError("The token has expired")
        if not isinstance(claims.get("sub"), str):
            raise TokenError("The token has no subject")
        return claims

    def _scopes(self, claims: dict[str, Any], provider: TrustedProvider) -> ScopeSet:
        allowed = ScopeSet.parse(provider.scope)
        try:
            asked = ScopeSet.parse(claims.get("scope") if isinstance(claims.get("scope"), str) else "")
        except ScopeError:
            asked = ScopeSet((), frozenset())
        return asked.within(allowed) if asked.resources else allowed

    def _map(self, claims: dict[str, Any], provider: TrustedProvider, token_id: str) -> Principal:
        scopes = self._scopes(claims, provider)
        iss, sub = provider.issuer, claims["sub"]
        user = self.users.by_external_subject(iss, sub)
        common = {"client_id": str(claims.get("client_id") or claims.get("azp") or iss), "scopes": scopes,
                  "issuer": iss, "token_id": str(claims.get("jti") or token_id), "expires_at": claims["exp"]}
        if provider.kind == "staff":
            if user is None or user.kind != "staff":
                raise TokenError("This person has no staff account here")
            role = self._role(user.fhir_user, claims.get(provider.role_claim))
            return Principal(Kind.STAFF, user.fhir_user, role=role, display=user.display, **common)
        if user is not None and user.kind == "proxy":
            patients = tuple(p.partition("/")[2] for p in self.directory.granted_patients(user.grants))
            return Principal(Kind.PROXY, user.fhir_user, patients=patients, display=user.display, **common)
        patient = user.fhir_user if user is not None and user.kind == "patient" else None
        nhs_number = claims.get(provider.nhs_number_claim)
        if patient is None and isinstance(nhs_number, str):
            patient = self.directory.patient_by_nhs_number(nhs_number)
        if patient is None:
            raise TokenError("This person's record cannot be found here")
        return Principal(Kind.PATIENT, patient, patients=(patient.partition("/")[2],), **common)

    def _role(self, practitioner: str, selected: object) -> SelectedRole:
        if isinstance(selected, str) and selected:
            choice = self.directory.role_by_identifier(practitioner, selected)
        else:
            choices = self.directory.role_choices(practitioner)
            choice = choices[0] if len(choices) == 1 else None
        if choice is None:
            raise TokenError("The selected role is not one of this person's roles here")
        return SelectedRole(choice.practitioner_role, choice.role.key if choice.role else "",
                            choice.organization, choice.role.activities if choice.role else frozenset())
