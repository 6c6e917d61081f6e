"""The API edge: deny by default (401 with WWW-Authenticate, as an OperationOutcome), SMART
scopes per interaction and resource type (403), and the few open documents."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from carerecord.access.tokens import mint_system_token
from tests.api.conftest import outcome

PATHS = [("GET", "/Patient"), ("GET", "/Patient/1"), ("POST", "/Patient"), ("PUT", "/Patient/1"),
         ("DELETE", "/Patient/1"), ("PATCH", "/Patient/1"), ("GET", "/Patient/1/_history"),
         ("GET", "/Patient/1/_history/1"), ("GET", "/_history"), ("GET", ""), ("POST", ""),
         ("POST", "/Patient/_search"), ("POST", "/Patient/$validate"), ("GET", "/Patient/1/Observation"),
         ("GET", "/NoSuchType/1/2/3/4")]


@pytest.fixture
def anonymous(live_server: str) -> Any:
    with httpx.Client(base_url=live_server, headers={"Accept": "application/fhir+json"}) as c:
        yield c


@pytest.mark.parametrize(("method", "path"), PATHS)
def test_every_fhir_route_refuses_a_request_without_a_token(anonymous: httpx.Client, method: str, path: str) -> None:
    r = anonymous.request(method, path or "", json={"resourceType": "Patient", "id": "1"})
    outcome(r, 401, "login")
    assert r.headers["www-authenticate"].startswith('Bearer realm="')
    assert "error=" not in r.headers["www-authenticate"]  # RFC 6750 3.1: no error without credentials
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("header", ["Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "bearer abc"])
def test_a_malformed_or_foreign_authorization_header_is_401_invalid_token(anonymous: httpx.Client,
                                                                           header: str) -> None:
    r = anonymous.get("/Patient", headers={"Authorization": header})
    outcome(r, 401, "login")


def test_xml_clients_get_the_401_outcome_in_xml(anonymous: httpx.Client) -> None:
    r = anonymous.get("/Patient", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 401 and "<OperationOutcome xmlns=\"http://hl7.org/fhir\">" in r.text


@pytest.mark.parametrize("path", ["/fhir/metadata", "/.well-known/smart-configuration",
                                  "/fhir/.well-known/smart-configuration", "/.well-known/openid-configuration",
                                  "/oauth/jwks", "/healthz"])
def test_the_capability_statement_discovery_documents_and_keys_are_open(live_server: str, path: str) -> None:
    r = httpx.get(live_server[: -len("/fhir")] + path)
    assert r.status_code == 200, r.text


def test_smart_configuration_advertises_pkce_s256_and_backend_assertion_algorithms(live_server: str) -> None:
    doc = httpx.get(f"{live_server}/.well-known/smart-configuration").json()
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert {"launch-ehr", "launch-standalone", "permission-v1", "permission-v2"} <= set(doc["capabilities"])
    assert doc["token_endpoint"] == live_server[: -len("/fhir")] + "/oauth/token"
    keys = httpx.get(doc["jwks_uri"]).json()["keys"]
    assert keys and all("d" not in k for k in keys)  # public halves only


def _as(live_server: str, engine: Engine, scopes: str) -> httpx.Client:
    token = mint_system_token(engine, scopes, audience=live_server)
    return httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}",
                                                       "Accept": "application/fhir+json"})


def test_a_read_only_token_reads_and_searches_but_any_write_is_403(client: httpx.Client, live_server: str,
                                                                    engine: Engine) -> None:
    assert client.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    with _as(live_server, engine, "system/*.rs") as reader:
        assert reader.get("/Patient/p1").status_code == 200
        assert reader.get("/Patient").status_code == 200
        r = reader.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1", "active": True})
        outcome(r, 403, "forbidden")
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
        outcome(reader.delete("/Patient/p1"), 403, "forbidden")


def test_a_token_for_one_type_cannot_touch_another_even_through_revinclude_or_a_compartment(
        client: httpx.Client, live_server: str, engine: Engine) -> None:
    with _as(live_server, engine, "system/Patient.rs") as only_patients:
        assert only_patients.get("/Patient").status_code == 200
        outcome(only_patients.get("/Observation"), 403, "forbidden")
        outcome(only_patients.get("/Patient", params={"_revinclude": "Observation:subject"}), 403)
        outcome(only_patients.get("/Patient/1/Observation"), 403)
        outcome(only_patients.get("/_history"), 403)  # every type: needs a wildcard scope
        outcome(only_patients.get("", params={"_type": "Patient,Observation"}), 403)


def test_each_entry_of_a_transaction_must_be_allowed_and_a_refused_one_writes_nothing(
        client: httpx.Client, live_server: str, engine: Engine) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "t1"}, "request": {"method": "PUT", "url": "Patient/t1"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    with _as(live_server, engine, "system/Patient.cruds") as writer:
        outcome(writer.post("", json=bundle), 403, "forbidden")
    assert client.get("/Patient/t1").status_code == 404
    with _as(live_server, engine, "system/Patient.cruds system/Observation.c") as writer:
        assert writer.post("", json=bundle).status_code == 200


def test_a_query_restricted_scope_allows_matching_searches_and_reads_only(client: httpx.Client, live_server: str,
                                                                          engine: Engine) -> None:
    cat = "http://terminology.hl7.org/CodeSystem/observation-category"
    for oid, code in (("lab", "laboratory"), ("vit", "vital-signs")):
        r = client.put(f"/Observation/{oid}", json={
            "resourceType": "Observation", "id": oid, "status": "final", "code": {"text": oid},
            "category": [{"coding": [{"system": cat, "code": code}]}]})
        assert r.status_code == 201, r.text
    with _as(live_server, engine, "system/Observation.rs?category=laboratory") as lab_only:
        assert lab_only.get("/Observation", params={"category": "laboratory"}).status_code == 200
        outcome(lab_only.get("/Observation"), 403)
        outcome(lab_only.get("/Observation", params={"category": "laboratory,vital-signs"}), 403)
        assert lab_only.get("/Observation/lab").status_code == 200
        outcome(lab_only.get("/Observation/vit"), 403)

