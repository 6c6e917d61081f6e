"""The API edge of access control: ``Authorization: Bearer`` in, a Principal on the request out.

Deny by default. Every path needs a valid token except :data:`OPEN_PATHS` (the
CapabilityStatement, the discovery documents, health) and the OAuth endpoints and sign-in pages
under ``/oauth/``. A missing, malformed, expired, revoked or foreign token is a 401
OperationOutcome with ``WWW-Authenticate: Bearer`` (RFC 6750); a valid token whose SMART scopes
do not cover the interaction on the resource type is a 403. The Principal is put in the ASGI
scope's state (``request.state.principal``, :func:`principal`) for the guarded repository of
part 2, which adds relationships, consent and audit on the storage path.

Query-restricted scopes (``patient/Observation.rs?category=laboratory``) allow a search only if
it carries the restriction itself, and a read only if the resource matches it; they allow no
writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from carerecord.access.authorization import AuthServer
from carerecord.access.clients import Clients
from carerecord.access.directory import Directory
from carerecord.access.external import TrustedProviders, unverified_issuer
from carerecord.access.principal import Principal
from carerecord.access.remote_keys import RemoteKeys
from carerecord.access.scopes import Verdict, query_satisfies
from carerecord.access.signin import SignIn
from carerecord.access.tokens import AccessTokens, TokenError
from carerecord.access.users import Users
from carerecord.api.http import error_response, response_format
from carerecord.api.needs import Need, entry_needs, needs
from carerecord.config import Settings
from carerecord.errors import FhirError, Forbidden, NotAcceptable, Unauthorized
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository
from carerecord.store.threads import off_loop

OPEN_PATHS = frozenset({"/", "/healthz", "/fhir/metadata", "/metadata", "/.well-known/smart-configuration",
                        "/fhir/.well-known/smart-configuration", "/.well-known/openid-configuration",
                        "/fhir/.well-known/openid-configuration"})
OPEN_PREFIXES = ("/oauth/",)


@dataclass
class Access:
    """Everything sign-in and token checking needs, built once per application."""

    settings: Settings
    tokens: AccessTokens
    server: AuthServer
    signin: SignIn
    providers: TrustedProviders
    interactions: Interactions
    postgres: bool

    @classmethod
    def build(cls, settings: Settings, repo: Repository) -> Access:
        """Build the access services, generating the signing key on first start."""
        engine = repo.engine
        tokens = AccessTokens(engine, settings.auth_base(), settings.fhir_base())
        tokens.keys.ensure()
        remote = RemoteKeys(settings.jwks_allow_list)
        users = Users(engine)
        directory = Directory(repo)
        server = AuthServer(tokens, Clients(engine), remote, fhir_base=settings.fhir_base(),
                            access_seconds=settings.access_token_seconds,
                            refresh_seconds=settings.refresh_token_seconds)
        providers = TrustedProviders(settings.trusted_providers, remote, users, directory)
        return cls(settings, tokens, server, SignIn(users, directory, tokens), providers,
                   Interactions(repo, settings.fhir_base()), engine.dialect.name == "postgresql")

    def authenticate(self, token: str) -> Principal:
        """The Principal of a bearer token (ours or a trusted provider's); TokenError if none."""
        if self.tokens.seen(token):  # one of ours, verified before: skip parsing it again
            return self.tokens.principal(token)
        issuer = unverified_issuer(token)
        if issuer is not None and issuer != self.tokens.issuer and self.providers.handles(issuer):
            return self.providers.principal(token, issuer)
        return self.tokens.principal(token)

    def authorise(self, principal: Principal, wanted: list[Need], params: list[tuple[str, str]]) -> None:
        """Forbidden unless the principal's scopes cover every need."""
        for need in wanted:
            decision = principal.scopes.decide_any(principal.scope_contexts, need.resource_type, need.letter)
            if decision.verdict is Verdict.ALLOWED:
                continue
            if decision.verdict is Verdict.RESTRICTED and self._within(need, decision.queries, params):
                continue
            what = "every resource type" if need.resource_type == "*" else need.resource_type
            raise Forbidden(f"The token's scopes do not allow this interaction ({need.letter}) on {what}")

    def _within(self, need: Need, queries: tuple[tuple[tuple[str, str], ...], ...],
                params: list[tuple[str, str]]) -> bool:
        if need.letter == "s":
            return any(query_satisfies(params, q) for q in queries)
        if need.letter == "r" and need.res_id is not None:
            for q in queries:
                query = urlencode([("_id", need.res_id), *q])
                with self.interactions.repo.reading() as conn:
                    if self.interactions.find(conn, need.resource_type, query, 1):
                        return True
        return False


def principal(request: Request) -> Principal:
    """The Principal of an authenticated request (the middleware guarantees there is one on
    every path that is not open)."""
    found: Principal | None = request.scope.get("state", {}).get("principal")
    if found is None:
        raise Unauthorized("This request is not authenticated")
    return found


def bearer(headers: Any) -> str:
    """The token of an ``Authorization: Bearer`` header; TokenError if there is none."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        err = TokenError("This request needs an access token: send Authorization: Bearer <token>")
        err.error = ""  # RFC 6750 3.1: no error code when no credentials were sent
        raise err
    return token.strip()


def challenge(exc: FhirError, realm: str) -> str:
    """The WWW-Authenticate value for a 401 or 403."""
    if isinstance(exc, Forbidden):
        return f'Bearer realm="{realm}", error="insufficient_scope"'
    code = getattr(exc, "error", "invalid_token")
    if not code:
        return f'Bearer realm="{realm}"'
    text = exc.message.replace('"', "'")
    return f'Bearer realm="{realm}", error="{code}", error_description="{text}"'


class BearerAuth:
    """ASGI middleware: authenticate and check scopes before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        access: Access = scope["app"].state.access
        request = Request(scope)
        try:
            token = bearer(request.headers)
            if access.postgres:  # a revocation lookup is a network round trip: off the event loop
                found = await off_loop(access.authenticate, token)
            else:
                found = access.authenticate(token)
            scope.setdefault("state", {})["principal"] = found  # known even if refused: audit names them
            params = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            if path == "/fhir" or path.startswith("/fhir/"):
                segments = [s for s in path[len("/fhir"):].split("/") if s]
                access.authorise(found, needs(scope["method"], segments, params), params)
        except (Unauthorized, Forbidden) as exc:
            await self._refuse(request, exc, access)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = found
        await self.app(scope, receive, send)

    @staticmethod
    def _refuse(request: Request, exc: FhirError, access: Access) -> Any:
        try:
            media = response_format(request)
        except NotAcceptable:
            media = "application/fhir+json"
        response = error_response(exc, media)
        response.headers["WWW-Authenticate"] = challenge(exc, access.settings.fhir_base())
        response.headers["Cache-Control"] = "no-store"
        return response


def check_bundle(request: Request, bundle: dict[str, Any]) -> None:
    """Forbidden unless the caller's scopes cover every entry of a transaction or batch."""
    access: Access = request.app.state.access
    who = principal(request)
    for entry in bundle.get("entry", []) if isinstance(bundle.get("entry"), list) else []:
        req = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("url"), str):
            continue  # the transaction processor reports malformed entries itself
        method = str(req.get("method", "")).upper()
        url = req["url"]
        access.authorise(who, entry_needs(method, url), parse_qsl(url.partition("?")[2], keep_blank_values=True))
