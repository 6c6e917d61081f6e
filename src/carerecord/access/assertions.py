"""Client authentication with signed JWT assertions (``private_key_jwt``, RFC 7523), as SMART
Backend Services requires (https://hl7.org/fhir/smart-app-launch/backend-services.html).

The client signs a short-lived JWT (iss = sub = its client id, aud = our token URL, a unique
jti, exp at most five minutes ahead) with RS384 or ES384; we verify it against the public keys
it registered. A ``jku`` header must name the client's registered ``jwks_uri`` and be on the
allow-list, or the assertion is refused; it is never fetched otherwise. Each jti is accepted
once (replays are refused until the assertion would have expired anyway).
"""

from __future__ import annotations

import json
import time
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from carerecord.access.clients import ASSERTION_ALGS, OAuthClient
from carerecord.access.grants import Grants
from carerecord.access.remote_keys import RemoteKeyError, RemoteKeys

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME = 300
LEEWAY = 30


class AssertionAuth:
    """Authlib client-authentication method ``private_key_jwt``."""

    METHOD = "private_key_jwt"

    def __init__(self, token_url: str, grants: Grants, remote: RemoteKeys) -> None:
        self.token_url = token_url
        self.grants = grants
        self.remote = remote

    def __call__(self, query_client: Any, request: Any) -> OAuthClient | None:
        form = request.form
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            return None
        assertion = str(form["client_assertion"])
        try:
            header = jws.extract_compact(assertion.encode()).headers()
            unverified = jws.extract_compact(assertion.encode()).payload
        except (JoseError, ValueError, UnicodeError) as e:
            raise InvalidClientError(description="The client assertion is not a JWT") from e
        if header.get("alg") not in ASSERTION_ALGS:
            raise InvalidClientError(description=f"Client assertions must be signed with {' or '.join(ASSERTION_ALGS)}")
        try:
            client_id = json.loads(unverified).get("iss")
        except ValueError as e:
            raise InvalidClientError(description="The client assertion's claims are not JSON") from e
        client: OAuthClient | None = query_client(client_id) if isinstance(client_id, str) else None
        if client is None or form.get("client_id") not in (None, client_id):
            raise InvalidClientError(description="Unknown client")
        keys = self._keys(client, header)
        try:
            token = jwt.decode(assertion, keys, algorithms=list(ASSERTION_ALGS))
        except (JoseError, ValueError) as e:
            raise InvalidClientError(description="The client assertion's signature is not valid") from e
        self._check_claims(client, token.claims)
        return client

    def _keys(self, client: OAuthClient, header: dict[str, Any]) -> KeySet:
        jku = header.get("jku")
        if jku is not None and (jku != client.jwks_uri or not self.remote.allowed(str(jku))):
            raise InvalidClientError(description="The jku header does not name this client's registered, allowed JWKS URL")
        if client.jwks:
            return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
        if client.jwks_uri:
            try:
                return self.remote.keyset(client.jwks_uri, kid=header.get("kid"))
            except RemoteKeyError as e:
                raise InvalidClientError(description="The client's keys cannot be obtained") from e
        raise InvalidClientError(description="This client has no registered keys")

    def _check_claims(self, client: OAuthClient, claims: dict[str, Any]) -> None:
        now = time.time()
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise InvalidClientError(description="The assertion's iss and sub must both be the client id")
        aud = claims.get("aud")
        if self.token_url not in (aud if isinstance(aud, list) else [aud]):
            raise InvalidClientError(description="The assertion's aud must be the token endpoint URL")
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp + LEEWAY < now:
            raise InvalidClientError(description="The client assertion has expired")
        if exp > now + MAX_LIFETIME + LEEWAY:
            raise InvalidClientError(description="The client assertion must expire within five minutes")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidClientError(description="The client assertion has no jti")
        if not self.grants.spend("assertion", f"{client.client_id}:{jti}", (exp + LEEWAY) * 1_000_000):
            raise InvalidClientError(description="This client assertion (jti) has already been used")
