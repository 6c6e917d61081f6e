"""OAuth 2.0 / OpenID Connect / SMART App Launch endpoints and the sign-in pages.

- ``/.well-known/smart-configuration`` (also under ``/fhir``) and
  ``/.well-known/openid-configuration``: discovery
  (https://hl7.org/fhir/smart-app-launch/conformance.html).
- ``/oauth/authorize``: sign-in (username and password), then the choice of role (staff) or
  patient (a proxy with several), then a redirect with the code. Plain server-rendered HTML;
  a later UI issue restyles it. CSRF: a double-submit cookie. Passwords travel only in POST
  bodies and are never logged.
- ``/oauth/token``, ``/oauth/revoke`` (RFC 7009), ``/oauth/introspect`` (RFC 7662),
  ``/oauth/jwks``, and ``/oauth/launch`` (an EHR launch value for a staff member's current
  patient and encounter).

The protocol itself is :mod:`carerecord.access.authorization` (Authlib); this module only turns
HTTP into its calls and its answers into HTTP.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from authlib.oauth2.rfc6749.errors import OAuth2Error
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from carerecord.access.authorization import FormRequest
from carerecord.access.launch import mint_launch
from carerecord.access.principal import Kind
from carerecord.access.roles import Activity
from carerecord.access.signin import SignInError
from carerecord.api.auth import Access, bearer, challenge
from carerecord.errors import Forbidden, Invalid, Unauthorized

PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud", "launch",
          "code_challenge", "code_challenge_method", "nonce")
CSRF_COOKIE = "carerecord_csrf"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGES = Environment(loader=PackageLoader("carerecord.api", "templates"), autoescape=select_autoescape(["html"]))
CAPABILITIES = ["launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
                "client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter",
                "context-standalone-patient", "context-banner", "sso-openid-connect", "permission-offline",
                "permission-online", "permission-patient", "permission-user", "permission-v1", "permission-v2",
                "authorize-post"]


def _access(request: Request) -> Access:
    return request.app.state.access  # type: ignore[no-any-return]


def _json(body: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    out = dict(NO_STORE)
    out.update({k: v for k, v in headers or [] if k.lower() != "content-type"})
    return JSONResponse(body, status, headers=out)


# -- discovery ---------------------------------------------------------------------------------------------
def _endpoints(a: Access) -> dict[str, Any]:
    iss = a.tokens.issuer
    return {"issuer": iss, "jwks_uri": f"{iss}/oauth/jwks", "authorization_endpoint": f"{iss}/oauth/authorize",
            "token_endpoint": f"{iss}/oauth/token", "revocation_endpoint": f"{iss}/oauth/revoke",
            "introspection_endpoint": f"{iss}/oauth/introspect",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post",
                                                      "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"]}


async def smart_configuration(request: Request) -> Response:
    doc = _endpoints(_access(request))
    doc.update({"scopes_supported": ["openid", "fhirUser", "profile", "launch", "launch/patient",
                                     "launch/encounter", "offline_access", "online_access", "patient/*.rs",
                                     "user/*.cruds", "system/*.rs", "system/*.cruds"],
                "capabilities": CAPABILITIES})
    return _json(doc)


async def openid_configuration(request: Request) -> Response:
    doc = _endpoints(_access(request))
    doc.update({"subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["sub", "fhirUser", "name", "nonce", "auth_time"],
                "scopes_supported": ["openid", "fhirUser", "profile"]})
    return _json(doc)


async def jwks(request: Request) -> Response:
    return _json(_access(request).tokens.keys.public_jwks())


# -- token, revocation, introspection -----------------------------------------------------------------------
async def _protocol(request: Request, endpoint: str) -> Response:
    a = _access(request)
    form = await request.form()
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    uri = f"{a.tokens.issuer}{request.url.path}"
    req = FormRequest("POST", uri, request.headers, [], pairs)  # type: ignore[arg-type]

    def run() -> tuple[int, Any, list[tuple[str, str]]]:
        if endpoint == "token":
            return a.server.create_token_response(req)  # type: ignore[no-any-return]
        return a.server.create_endpoint_response(endpoint, req)  # type: ignore[no-any-return]

    status, body, headers = await anyio.to_thread.run_sync(run)  # argon2 and the database
    return _json(body, status, headers)


async def token(request: Request) -> Response:
    return await _protocol(request, "token")


async def revoke(request: Request) -> Response:
    return await _protocol(request, "revocation")


async def introspect(request: Request) -> Response:
    return await _protocol(request, "introspection")


# -- EHR launch ------------------------------------------------------------------------------------------------
async def launch(request: Request) -> Response:
    """``POST /oauth/launch`` with a staff member's token and ``{"patient": id, "encounter": id}``:
    a launch value to open a SMART app in that context."""
    a = _access(request)
    try:
        who = await anyio.to_thread.run_sync(a.authenticate, bearer(request.headers))
        if who.kind is not Kind.STAFF or not who.may(Activity.LAUNCH_APPS):
            raise Forbidden("Only staff in a role that may launch apps can start an EHR launch")
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("patient"), str):
            raise Invalid("Send {\"patient\": id} and optionally \"encounter\"")
    except (Unauthorized, Forbidden, Invalid) as e:
        headers = {"WWW-Authenticate": challenge(e, a.settings.fhir_base())} if e.status in (401, 403) else {}
        return _json({"error": e.code, "error_description": e.message}, e.status, list(headers.items()))
    value = mint_launch(a.tokens, who.subject, body["patient"], body.get("encounter"))
    return _json({"launch": value, "iss": a.settings.fhir_base()})


# -- authorisation and sign-in pages ------------------------------------------------------------------------
def _page(name: str, status: int = 200, cookie: str | None = None, **values: Any) -> Response:
    """A sign-in page; ``cookie`` (on the first page only) sets the CSRF double-submit cookie,
    whose value the page's form carries as ``csrf_token``."""
    if cookie:
        values["csrf"] = cookie
    response = HTMLResponse(_PAGES.get_template(name).render(**values), status, headers={
        **NO_STORE, "X-Frame-Options": "DENY", "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'"})
    if cookie:
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict", path="/oauth/")
    return response


def _oauth_error(e: OAuth2Error) -> Response:
    """Redirect with the error when the redirect URI was validated, else show it."""
    if e.redirect_uri:
        params = {"error": e.error, "error_description": e.description or ""}
        if getattr(e, "state", None):
            params["state"] = e.state
        sep = "&" if "?" in e.redirect_uri else "?"
        return RedirectResponse(f"{e.redirect_uri}{sep}{urlencode(params)}", 302)
    return _page("error.html", 400, title="This sign-in request is not valid", error=e.description or e.error)


async def authorize(request: Request) -> Response:
    a = _access(request)
    form = await request.form() if request.method == "POST" else None
    source = form.multi_items() if form is not None else request.query_params.multi_items()
    pairs = [(k, v) for k, v in source if k in PARAMS and isinstance(v, str)]
    params = dict(pairs)
    uri = f"{a.tokens.issuer}/oauth/authorize"
    req = FormRequest("GET", uri, request.headers, pairs, [])  # type: ignore[arg-type]
    try:
        grant = await anyio.to_thread.run_sync(a.server.get_consent_grant, req)
        if params.get("aud", "").rstrip("/") != a.settings.fhir_base():
            raise _invalid("aud must be this server's FHIR base URL", grant.redirect_uri, params)
    except OAuth2Error as e:
        return _oauth_error(e)
    client = grant.request.client
    shown = {"action": "/oauth/authorize", "params": pairs, "client_name": client.name}
    if form is None:
        csrf = secrets.token_urlsafe(24)
        return _page("signin.html", 200, csrf, title="Sign in", username="", **shown)
    sent = str(form.get("csrf_token", ""))
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not sent or not secrets.compare_digest(sent, cookie):
        return _page("error.html", 400, title="Your sign-in form has expired",
                     error="Please start signing in again from the application.")
    try:
        if form.get("step") == "choose":
            user = a.signin.open_ticket(str(form.get("ticket", "")), params)
            choice: str | None = str(form.get("choice", ""))
        else:
            found = await anyio.to_thread.run_sync(a.signin.check_password, str(form.get("username", "")),
                                                   str(form.get("password", "")))
            if found is None:
                return _page("signin.html", 401, title="Sign in", username=str(form.get("username", "")),
                             error="The username or password is not right.", csrf=sent, **shown)
            user = found
            options = await anyio.to_thread.run_sync(a.signin.options, user)
            if options.roles or options.patients:
                choices = ([(r.practitioner_role, r.label) for r in options.roles] if options.roles
                           else list(options.patients))
                prompt = "Choose the role you are working in." if options.roles else "Choose whose record to open."
                return _page("choose.html", title="Choose", who=user.display or user.username, prompt=prompt,
                             ticket=a.signin.ticket(user, params), choices=choices, csrf=sent, **shown)
            choice = None
        grantee = await anyio.to_thread.run_sync(a.signin.grantee, user, params, grant.request.scope or "", choice)
    except SignInError as e:
        return _page("error.html", 403, title="You cannot sign in here", error=str(e))
    status, _body, headers = await anyio.to_thread.run_sync(
        lambda: a.server.create_authorization_response(req, grant_user=grantee, grant=grant))
    location = dict(headers).get("Location", "")
    return RedirectResponse(location, status if status in (302, 303) else 302, headers=NO_STORE)


def _invalid(description: str, redirect_uri: str | None, params: dict[str, str]) -> OAuth2Error:
    err = OAuth2Error(description=description, redirect_uri=redirect_uri)
    err.error = "invalid_request"
    err.state = params.get("state")
    return err


def routes() -> list[Route]:
    return [
        Route("/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route("/fhir/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/fhir/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/oauth/jwks", jwks, methods=["GET"]),
        Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/oauth/revoke", revoke, methods=["POST"]),
        Route("/oauth/introspect", introspect, methods=["POST"]),
        Route("/oauth/launch", launch, methods=["POST"]),
    ]
