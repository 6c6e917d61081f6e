"""SMART Backend Services: client credentials with a signed JWT assertion
(https://hl7.org/fhir/smart-app-launch/backend-services.html), and with a client secret."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from carerecord.access.clients import Clients, NewClient
from tests.access.support import origin


def _assertion(made: NewClient, token_url: str, *, jti: str | None = None, header: dict[str, Any] | None = None,
               exp: int = 240) -> str:
    assert made.private_jwk is not None
    key = (RSAKey if made.private_jwk["kty"] == "RSA" else ECKey).import_key(made.private_jwk)
    cid = made.client.client_id
    now = int(time.time())
    return jwt.encode({"alg": made.private_jwk["alg"], "kid": key.kid, "typ": "JWT", **(header or {})},
                      {"iss": cid, "sub": cid, "aud": token_url, "exp": now + exp, "jti": jti or uuid.uuid4().hex},
                      key, algorithms=[made.private_jwk["alg"]])


def _ask(browser: httpx.Client, assertion: str, scope: str = "system/*.rs") -> httpx.Response:
    return browser.post("/oauth/token", data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_a_backend_service_gets_a_token_with_an_assertion_signed_by_its_generated_key(
        alg: str, browser: httpx.Client, live_server: str, client: httpx.Client, engine: Any) -> None:
    made = Clients(engine).add(f"lab feed {alg}", "system/*.rs", key=alg)
    token_url = f"{origin(live_server)}/oauth/token"
    r = _ask(browser, _assertion(made, token_url))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "system/*.rs" and "refresh_token" not in body
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(f"{live_server}/Patient", headers=auth).status_code == 200
    assert httpx.post(f"{live_server}/Patient", headers=auth, json={"resourceType": "Patient"}).status_code == 403


def test_a_replayed_assertion_is_refused(browser: httpx.Client, live_server: str, client: httpx.Client,
                                         engine: Any) -> None:
    made = Clients(engine).add("replay", "system/*.rs", key="ES384")
    assertion = _assertion(made, f"{origin(live_server)}/oauth/token")
    assert _ask(browser, assertion).status_code == 200
    r = _ask(browser, assertion)
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
    assert "already been used" in r.json()["error_description"]


@pytest.mark.parametrize("problem", ["wrong audience", "too long", "jku not allowed", "HS256", "other key"])
def test_assertions_that_break_the_rules_are_refused(problem: str, browser: httpx.Client, live_server: str,
                                                     client: httpx.Client, engine: Any) -> None:
    made = Clients(engine).add("strict", "system/*.rs", key="RS384")
    token_url = f"{origin(live_server)}/oauth/token"
    if problem == "wrong audience":
        assertion = _assertion(made, "https://elsewhere.example/token")
    elif problem == "too long":
        assertion = _assertion(made, token_url, exp=3600)
    elif problem == "jku not allowed":
        assertion = _assertion(made, token_url, header={"jku": "https://attacker.example/jwks"})
    elif problem == "other key":
        impostor = Clients(engine).add("impostor", "system/*.rs", key="RS384")
        assertion = _assertion(NewClient(made.client, private_jwk=impostor.private_jwk), token_url)
    else:
        assertion = jwt.encode({"alg": "HS256"}, {"iss": made.client.client_id, "sub": made.client.client_id,
                                                  "aud": token_url, "exp": int(time.time()) + 60, "jti": "x"},
                               OctKey.generate_key(256))
    r = _ask(browser, assertion)
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client", r.text


def test_a_client_secret_works_and_the_token_has_only_the_scopes_the_client_may_have(
        browser: httpx.Client, client: httpx.Client, engine: Any) -> None:
    made = Clients(engine).add("reader", "system/Patient.rs system/Observation.r")
    auth = (made.client.client_id, made.secret or "")
    r = browser.post("/oauth/token", data={"grant_type": "client_credentials",
                                           "scope": "system/Patient.rs system/Observation.cruds system/*.*"},
                     auth=auth)
    assert r.status_code == 200 and r.json()["scope"] == "system/Patient.rs"
    nothing = browser.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/*.*"},
                           auth=auth)
    assert nothing.json()["error"] == "invalid_scope"
    wrong = browser.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "system/Patient.rs"},
                         auth=(auth[0], "guess"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
