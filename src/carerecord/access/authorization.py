"""The OAuth 2.0 / OpenID Connect authorisation server, on Authlib's protocol machinery.

Grants: authorisation code with PKCE (S256 only, required of every client, public or not),
refresh token (rotated on every use; a reused one revokes its whole family), and client
credentials (client secret or signed JWT assertion, :mod:`carerecord.access.assertions`).
Endpoints: token revocation (RFC 7009) and introspection (RFC 7662). Tokens come from
:class:`~carerecord.access.tokens.AccessTokens`; the token response carries the SMART launch
context (patient, encounter, need_patient_banner) and, for ``openid``, an id_token with
``fhirUser``. Refresh tokens are only issued for ``offline_access`` or ``online_access``.

Framework-free: requests come in as :class:`FormRequest` (the API edge builds them from
Starlette) and responses go out as (status, body, headers) tuples.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from authlib.oauth2 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Payload, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from carerecord.access.assertions import AssertionAuth
from carerecord.access.clients import Clients, OAuthClient
from carerecord.access.grants import Grantee, Grants, StoredCode, StoredRefresh
from carerecord.access.remote_keys import RemoteKeys
from carerecord.access.scopes import ScopeSet
from carerecord.access.tokens import AccessTokens, TokenError

AUTH_METHODS = ["client_secret_basic", "client_secret_post", AssertionAuth.METHOD, "none"]
ID_TOKEN_SECONDS = 300


class _Payload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._data = dict(pairs)
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for k, v in pairs:
            self._datalist[k].append(v)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An OAuth request as Authlib wants it, from already-read query and form pairs. ``uri``
    is the public URL of the endpoint (https in production; loopback http in tests)."""

    def __init__(self, method: str, uri: str, headers: dict[str, str], query: list[tuple[str, str]],
                 form: list[tuple[str, str]]) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = dict(query)
        self._form = dict(form)
        self.payload = _Payload(query + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class S256Required(CodeChallenge):  # type: ignore[misc]
    """PKCE required of every client, and only with S256 ("plain" would let a stolen request
    URL redeem the code)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge", redirect_uri=redirect_uri)
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256", redirect_uri=redirect_uri)
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing code_verifier")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: StoredCode) -> str:
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: StoredCode) -> str:
        return "S256"


class _AuthorizationCode(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    server: AuthServer

    def save_authorization_code(self, code: str, request: FormRequest) -> None:
        self.server.grants.save_code(code, request.client.get_client_id(), request.payload.redirect_uri or "",
                                     request.scope or "", request.payload.data["code_challenge"], request.user)

    def query_authorization_code(self, code: str, client: OAuthClient) -> StoredCode | None:
        return self.server.grants.take_code(code, client.get_client_id())  # single use, even under a race

    def delete_authorization_code(self, authorization_code: StoredCode) -> None:
        pass  # already deleted when it was taken

    def authenticate_user(self, authorization_code: StoredCode) -> Grantee:
        return authorization_code.grantee


class _RefreshToken(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: AuthServer

    def authenticate_refresh_token(self, refresh_token: str) -> StoredRefresh | None:
        stored = self.server.grants.find_refresh(refresh_token)
        if stored is None or stored.revoked or stored.is_expired():
            return None
        if stored.used:  # a rotated-away token came back: someone has a copy
            self.server.grants.revoke_family(stored.family)
            return None
        return stored

    def authenticate_user(self, refresh_token: StoredRefresh) -> Grantee:
        return refresh_token.grantee

    def revoke_old_credential(self, refresh_token: StoredRefresh) -> None:
        pass  # rotated in issue_token, before the new token exists

    def issue_token(self, user: Grantee, refresh_token: StoredRefresh) -> dict[str, Any]:
        if not self.server.grants.rotate(refresh_token):
            self.server.grants.revoke_family(refresh_token.family)
            raise InvalidGrantError("The refresh token has already been used")
        scope = self.request.payload.scope or refresh_token.get_scope()
        return self.server.issue(self.request.client, user, scope, "refresh_token",
                                 family=refresh_token.family)


class _ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", AssertionAuth.METHOD]

    def validate_token_request(self) -> None:
        super().validate_token_request()
        if self.request.client.get_allowed_scope(self.request.payload.scope) is None:
            raise InvalidScopeError("None of the requested scopes is allowed for this client")


class _AccessTokenRecord:
    """A presented access token, for revocation and introspection (Authlib's TokenMixin)."""

    def __init__(self, claims: dict[str, Any], revoked: bool) -> None:
        self.claims = claims
        self.revoked = revoked

    def check_client(self, client: OAuthClient) -> bool:
        return bool(self.claims.get("client_id") == client.get_client_id())

    def get_scope(self) -> str:
        return str(self.claims.get("scope", ""))

    def get_expires_in(self) -> int:
        return max(0, int(self.claims["exp"] - time.time()))

    def is_expired(self) -> bool:
        return bool(self.claims["exp"] < time.time())

    def is_revoked(self) -> bool:
        return self.revoked


def _find_token(server: AuthServer, token: str, hint: str | None) -> Any:
    if hint != "access_token":
        stored = server.grants.find_refresh(token)
        if stored is not None:
            return stored
    try:
        claims = server.tokens.claims(token, check_revoked=False)
    except TokenError:
        return None
    return _AccessTokenRecord(claims, server.grants.is_spent("access", claims["jti"]))


class _Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS  # a public app may revoke its own tokens (RFC 7009 2.1)
    server: AuthServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _find_token(self.server, token_string, token_type_hint)

    def revoke_token(self, token: Any, request: Any) -> None:
        if isinstance(token, StoredRefresh):
            self.server.grants.revoke_family(token.family)
        else:
            self.server.tokens.revoke(token.claims)


class _Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS[:-1]
    server: AuthServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _find_token(self.server, token_string, token_type_hint)

    def check_permission(self, token: Any, client: OAuthClient, request: Any) -> bool:
        return bool(client.kind == "system" or token.check_client(client))

    def introspect_token(self, token: Any) -> dict[str, Any]:
        if isinstance(token, StoredRefresh):
            g = token.grantee
            return {"active": True, "token_type": "refresh_token", "client_id": token.client_id,
                    "scope": token.scope, "sub": g.subject, "exp": token.expires_us // 1_000_000}
        c = token.claims
        out = {"active": True, "token_type": "Bearer", **{k: c[k] for k in (
            "client_id", "scope", "sub", "exp", "iat", "iss", "aud", "jti", "patient", "encounter") if k in c}}
        if c.get("kind") != "system":
            out["fhirUser"] = c["sub"]
        return out


class AuthServer(AuthorizationServer):  # type: ignore[misc]
    """The authorisation server of one database and one public base URL."""

    def __init__(self, tokens: AccessTokens, clients: Clients, remote: RemoteKeys, *, fhir_base: str,
                 access_seconds: int, refresh_seconds: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.clients = clients
        self.grants: Grants = tokens.grants
        self.fhir_base = fhir_base
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        self.token_url = f"{tokens.issuer}/oauth/token"
        self.register_client_auth_method(AssertionAuth.METHOD, AssertionAuth(self.token_url, self.grants, remote))
        self.register_grant(_AuthorizationCode, [S256Required(required=True)])
        self.register_grant(_RefreshToken)
        self.register_grant(_ClientCredentials)
        self.register_endpoint(_Revocation)
        self.register_endpoint(_Introspection)

    # -- Authlib's integration points --------------------------------------------------------------
    def query_client(self, client_id: str) -> OAuthClient | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        pass  # access tokens are self-contained; refresh tokens are saved when issued

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def create_json_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def generate_token(self, grant_type: str, client: OAuthClient, user: Grantee | None = None,
                       scope: str | None = None, expires_in: int | None = None,
                       include_refresh_token: bool = True) -> dict[str, Any]:
        if user is None:  # client credentials: the client is the subject
            user = Grantee("system", client.get_client_id(), purpose=client.purpose)
        return self.issue(client, user, scope, grant_type, refresh=include_refresh_token)

    # -- tokens ----------------------------------------------------------------------------------------
    def issue(self, client: OAuthClient, grantee: Grantee, scope: str | None, grant_type: str, *,
              refresh: bool = True, family: str | None = None) -> dict[str, Any]:
        """The token response: an access token for the granted scopes (what was asked and the
        client may have, in the grantee's context), the launch context, and when asked for an
        id_token and a refresh token."""
        granted = client.get_allowed_scope(scope)
        if granted is None:
            raise InvalidScopeError()
        scopes = ScopeSet.parse(granted)
        system = grantee.kind == "system"
        kept = tuple(s for s in scopes.resources if (s.context == "system") == system)
        scopes = ScopeSet(kept, scopes.others if not system else frozenset())
        text = scopes.text()
        access, claims = self.tokens.mint(client.get_client_id(), text, grantee, self.access_seconds)
        out: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                               "expires_in": self.access_seconds, "scope": text}
        if grantee.patient:
            out["patient"] = grantee.patient
        if grantee.encounter:
            out["encounter"] = grantee.encounter
        if not system:
            out["need_patient_banner"] = grantee.need_patient_banner
        if not system and scopes.has("openid") and (scopes.has("fhirUser") or scopes.has("profile")):
            out["id_token"] = self.id_token(client, grantee)
        if refresh and not system and (scopes.has("offline_access") or scopes.has("online_access")):
            out["refresh_token"] = self.grants.issue_refresh(client.get_client_id(), text, grantee,
                                                             self.refresh_seconds, family)
        return out

    def id_token(self, client: OAuthClient, grantee: Grantee) -> str:
        """An OpenID Connect id_token whose ``fhirUser`` is the person's resource URL."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.tokens.issuer, "sub": grantee.get_user_id(), "aud": client.get_client_id(),
            "iat": now, "exp": now + ID_TOKEN_SECONDS, "fhirUser": f"{self.fhir_base}/{grantee.subject}"}
        if grantee.nonce:
            claims["nonce"] = grantee.nonce
        if grantee.auth_time:
            claims["auth_time"] = grantee.auth_time
        if grantee.display:
            claims["name"] = grantee.display
        return self.tokens.sign(claims, typ="JWT")
