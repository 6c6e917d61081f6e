"""Access tokens at the API edge: what is refused (expired, revoked, foreign audience or
issuer, forged), revocation (RFC 7009) and introspection (RFC 7662) over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from carerecord.access.clients import Clients
from carerecord.access.grants import Grantee
from carerecord.access.tokens import LEEWAY, AccessTokens, TokenError, mint_system_token
from tests.access.support import Community, Flow, origin


def _tokens(engine: object, live_server: str, audience: str | None = None) -> AccessTokens:
    return AccessTokens(engine, origin(live_server), audience or live_server)  # type: ignore[arg-type]


def _get(live_server: str, token: str, path: str = "/Patient") -> httpx.Response:
    return httpx.get(f"{live_server}{path}", headers={"Authorization": f"Bearer {token}"})


def _refused(r: httpx.Response, words: str) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["issue"][0]["code"] == "login"
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert words in r.json()["issue"][0]["diagnostics"]


def test_an_expired_token_is_refused(client: httpx.Client, live_server: str, engine: object) -> None:
    token, _ = _tokens(engine, live_server).mint("c", "system/*.rs", Grantee("system", "c"), -120)
    _refused(_get(live_server, token), "expired")


def test_a_token_for_another_fhir_server_is_refused(client: httpx.Client, live_server: str, engine: object) -> None:
    token, _ = _tokens(engine, live_server, "https://elsewhere.example/fhir").mint(
        "c", "system/*.rs", Grantee("system", "c"), 60)
    _refused(_get(live_server, token), "audience")


def test_a_token_signed_by_a_key_that_is_not_ours_is_refused(client: httpx.Client, live_server: str,
                                                               engine: object) -> None:
    _, claims = _tokens(engine, live_server).mint("c", "system/*.rs", Grantee("system", "c"), 60)
    forger = RSAKey.generate_key(2048, parameters={"kid": "forged"}, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": "forged", "typ": "at+jwt"}, claims, forger)
    _refused(_get(live_server, forged), "signature")
    _refused(_get(live_server, forged.rsplit(".", 1)[0] + "."), "signature")  # signature stripped


def test_a_revoked_access_token_is_refused_on_the_very_next_request(
        browser: httpx.Client, live_server: str, community: Community) -> None:
    client_id, _ = community.app()
    body = Flow(browser, live_server, client_id).token(community.user("patient"))
    assert _get(live_server, body["access_token"], "/Patient/pat-1").status_code == 200
    other = Clients(community.engine).add("not-the-owner", "system/*.rs")
    r = browser.post("/oauth/revoke", data={"token": body["access_token"]},
                     auth=(other.client.client_id, other.secret or ""))
    assert r.status_code == 400  # another client cannot revoke it
    assert _get(live_server, body["access_token"], "/Patient/pat-1").status_code == 200
    r = browser.post("/oauth/revoke", data={"token": body["access_token"], "client_id": client_id})
    assert r.status_code == 200  # the (public) app that holds it can
    _refused(_get(live_server, body["access_token"], "/Patient/pat-1"), "revoked")


def test_a_system_revokes_its_own_token_and_introspection_then_says_inactive(
        browser: httpx.Client, live_server: str, client: httpx.Client, engine: object) -> None:
    made = Clients(engine).add("rev-intro", "system/*.rs")  # type: ignore[arg-type]
    auth = (made.client.client_id, made.secret or "")
    token = browser.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                         auth=auth).json()["access_token"]
    info = browser.post("/oauth/introspect", data={"token": token}, auth=auth).json()
    assert info["active"] is True and info["scope"] == "system/*.rs" and info["client_id"] == auth[0]
    assert browser.post("/oauth/revoke", data={"token": token}, auth=auth).status_code == 200
    _refused(_get(live_server, token), "revoked")
    assert browser.post("/oauth/introspect", data={"token": token}, auth=auth).json() == {"active": False}


def test_introspection_of_nonsense_is_inactive_not_an_error(browser: httpx.Client, client: httpx.Client,
                                                             engine: object) -> None:
    made = Clients(engine).add("intro", "system/*.rs")  # type: ignore[arg-type]
    r = browser.post("/oauth/introspect", data={"token": "not-a-token"},
                     auth=(made.client.client_id, made.secret or ""))
    assert r.status_code == 200 and r.json() == {"active": False}


def test_mint_system_token_gives_tools_a_working_token(client: httpx.Client, live_server: str,
                                                        engine: object) -> None:
    token = mint_system_token(engine, "system/Patient.rs", audience=live_server)  # type: ignore[arg-type]
    assert _get(live_server, token).status_code == 200
    assert _get(live_server, token, "/Observation").status_code == 403


def test_a_token_seen_before_is_still_refused_once_it_expires(live_server: str, engine: object) -> None:
    """Verified tokens are kept per process to skip the signature check; expiry is not skipped."""
    tokens = _tokens(engine, live_server)
    # exp is in whole seconds from the second of minting, so this is valid for 1 to 2 s: at least
    # a second for the two checks below (a token valid "for ~1 s" expired at once when minted
    # late in a second on a busy machine), and surely expired after 2.2 s
    token, _ = tokens.mint("c", "system/*.rs", Grantee("system", "c"), 2 - LEEWAY)
    assert tokens.principal(token).subject == "c"
    assert tokens.principal(token).subject == "c"  # from the verified-token cache
    time.sleep(2.2)
    with pytest.raises(TokenError, match="expired"):
        tokens.principal(token)
