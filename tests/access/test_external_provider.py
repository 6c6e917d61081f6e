"""Trusting an external OpenID Connect provider by configuration only: a small real OIDC
issuer runs on 127.0.0.1 in the test (discovery and JWKS over HTTP), and a carerecord server
configured to trust it maps its tokens' claims to a Principal (staff by their linked account
and selected role, as NHS CIS2 does; patients by NHS number, as NHS login does)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from carerecord.access.users import Users
from carerecord.config import Settings, TrustedProvider
from carerecord.store.repository import Repository
from tests.access.support import Community

AUDIENCE = "carerecord-test-audience"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    return server, thread


class Issuer:
    """A minimal OpenID provider: discovery, JWKS, and tokens it signs for the tests."""

    def __init__(self) -> None:
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "use": "sig"}, private=True)
        self.key.ensure_kid()

        async def discovery(request: Request) -> JSONResponse:
            return JSONResponse({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse({"keys": [self.key.as_dict(private=False)]})

        self.app = Starlette(routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks)])

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, body, self.key)


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    it = Issuer()
    server, thread = _serve(it.app, it.port)
    yield it
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def trusting(issuer: Issuer, engine: Engine, database_url: str) -> Iterator[str]:
    """A carerecord server that trusts ``issuer`` for staff and for patients (two providers
    would be two issuers; one issuer with two audiences would be configured twice)."""
    from carerecord.api.app import create_app

    port = _port()
    jwks_uri = httpx.get(f"{issuer.url}/.well-known/openid-configuration").json()["jwks_uri"]
    settings = Settings(database=database_url, host="127.0.0.1", port=port, jwks_allow_list=[jwks_uri],
                        trusted_providers=[TrustedProvider(issuer=issuer.url, audience=AUDIENCE,
                                                           jwks_uri=jwks_uri, kind="staff")])
    server, thread = _serve(create_app(settings, Repository(engine)), port)
    yield f"http://127.0.0.1:{port}/fhir"
    server.should_exit = True
    thread.join(timeout=10)


def _get(base: str, token: str, path: str) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})


def test_a_staff_token_from_the_trusted_provider_acts_in_the_role_it_names(
        community: Community, issuer: Issuer, trusting: str) -> None:
    Users(community.engine).add(f"cis2-{community.tag}", None, "staff", "Practitioner/dr-who",
                                external_subject=f"{issuer.url}|uid-{community.tag}")
    token = issuer.token(sub=f"uid-{community.tag}", selected_roleid="role-gp")
    r = _get(trusting, token, "/Patient/pat-1")
    assert r.status_code == 200, r.text
    unknown_role = issuer.token(sub=f"uid-{community.tag}", selected_roleid="someone-elses-role")
    assert _get(trusting, unknown_role, "/Patient/pat-1").status_code == 401


def test_a_person_the_provider_knows_but_we_do_not_is_refused(
        community: Community, issuer: Issuer, trusting: str) -> None:
    r = _get(trusting, issuer.token(sub="stranger", selected_roleid="role-gp"), "/Patient/pat-1")
    assert r.status_code == 401 and "no staff account" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("problem", ["audience", "expired", "key"])
def test_provider_tokens_with_the_wrong_audience_an_expiry_in_the_past_or_a_foreign_key_are_refused(
        problem: str, community: Community, issuer: Issuer, trusting: str) -> None:
    Users(community.engine).add(f"cis2b-{community.tag}", None, "staff", "Practitioner/dr-who",
                                external_subject=f"{issuer.url}|u2-{community.tag}")
    claims: dict[str, Any] = {"sub": f"u2-{community.tag}", "selected_roleid": "role-gp"}
    if problem == "audience":
        token = issuer.token(**claims, aud="someone-else")
    elif problem == "expired":
        token = issuer.token(**claims, exp=int(time.time()) - 600)
    else:
        genuine = issuer.key
        issuer.key = RSAKey.generate_key(2048, parameters={"alg": "RS256", "kid": genuine.kid}, private=True)
        token = issuer.token(**claims)  # same kid, another key: a forgery
        issuer.key = genuine
    assert _get(trusting, token, "/Patient/pat-1").status_code == 401


def test_a_patient_provider_maps_the_nhs_number_it_asserts_to_that_patient(
        community: Community, issuer: Issuer, engine: Engine, database_url: str) -> None:
    from carerecord.access.directory import Directory
    from carerecord.access.external import TrustedProviders
    from carerecord.access.remote_keys import RemoteKeys

    community.put({"resourceType": "Patient", "id": "pat-nhs", "identifier": [{"system": NHS, "value": "9000000009"}]})
    jwks_uri = f"{issuer.url}/jwks"
    provider = TrustedProvider(issuer=issuer.url, audience=AUDIENCE, jwks_uri=jwks_uri, kind="patient",
                               scope="patient/*.rs")
    repo = Repository(engine)
    providers = TrustedProviders([provider], RemoteKeys([jwks_uri]), Users(engine), Directory(repo))
    who = providers.principal(issuer.token(sub="nhs-login-1", nhs_number="9000000009"), issuer.url)
    assert who.kind.value == "patient" and who.subject == "Patient/pat-nhs" and who.patients == ("pat-nhs",)
    assert [s.text() for s in who.scopes.resources] == ["patient/*.rs"]


def test_keys_are_never_fetched_from_a_url_that_is_not_on_the_allow_list(issuer: Issuer) -> None:
    from carerecord.access.remote_keys import RemoteKeyError, RemoteKeys

    with pytest.raises(RemoteKeyError):
        RemoteKeys([f"{issuer.url}/other"]).keyset(f"{issuer.url}/jwks")
