"""The CapabilityStatement at /metadata (http://hl7.org/fhir/R4/http.html#capabilities): FHIR
4.0.1, and every interaction, flag and search parameter it lists for a resource type is really
answered by the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.conftest import JSON, XML, base, create, history, outcome, patient, put, search

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def capability(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{JSON}; charset=utf-8"
    return r.json()  # type: ignore[no-any-return]


def resource_entry(capability: dict[str, Any], res_type: str) -> dict[str, Any]:
    [entry] = [r for r in capability["rest"][0]["resource"] if r["type"] == res_type]
    return entry


def test_metadata_is_a_fhir_4_0_1_server_capability_statement(capability: dict[str, Any],
                                                               client: httpx.Client) -> None:
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"
    assert capability["kind"] == "instance"
    assert capability["status"] == "active"
    assert capability["implementation"]["url"] == base(client)
    assert {JSON, XML} <= set(capability["format"])
    assert capability["rest"][0]["mode"] == "server"
    assert {"Patient", "Observation", "Bundle", "OperationOutcome"} <= {
        r["type"] for r in capability["rest"][0]["resource"]}


def test_the_capability_statement_is_valid_fhir_by_the_servers_own_validate(
        capability: dict[str, Any], client: httpx.Client) -> None:
    r = client.post("/CapabilityStatement/$validate", json=capability)
    assert r.status_code == 200
    assert [i["severity"] for i in r.json()["issue"]] == ["information"]


def test_no_resource_lists_a_search_parameter_twice(capability: dict[str, Any]) -> None:
    for res in capability["rest"][0]["resource"]:
        names = [p["name"] for p in res["searchParam"]]
        assert len(names) == len(set(names)), res["type"]


def test_metadata_in_xml(client: httpx.Client) -> None:
    r = client.get("/metadata", headers={"Accept": XML})
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{XML}; charset=utf-8"
    assert r.text.startswith('<?xml version="1.0" encoding="UTF-8"?><CapabilityStatement xmlns="http://hl7.org/fhir">')
    assert '<fhirVersion value="4.0.1"/>' in r.text


def _exercise(client: httpx.Client) -> dict[str, Callable[[], None]]:
    """One real request per interaction code, each asserting the server carried it out."""

    def create_() -> None:
        assert client.post("/Patient", json=patient(active=True)).status_code == 201

    def read() -> None:
        assert client.get("/Patient/cap").json()["id"] == "cap"

    def vread() -> None:
        assert client.get("/Patient/cap/_history/1").headers["etag"] == 'W/"1"'

    def update() -> None:
        r = client.put("/Patient/cap", json=patient(id="cap", gender="other"))
        assert r.status_code == 200 and r.json()["gender"] == "other"

    def patch() -> None:
        r = client.patch("/Patient/cap", content=b'[{"op": "add", "path": "/active", "value": true}]',
                         headers=JSON_PATCH)
        assert r.status_code == 200 and r.json()["active"] is True

    def history_instance() -> None:
        assert len(history(client, "/Patient/cap/_history")) >= 1

    def history_type() -> None:
        assert len(history(client, "/Patient/_history")) >= 1

    def search_type() -> None:
        assert "cap" in [p["id"] for p in search(client, "Patient?_id=cap")]

    def delete() -> None:
        put(client, patient(id="doomed"), 201)
        assert client.delete("/Patient/doomed").status_code == 204
        assert client.get("/Patient/doomed").status_code == 410

    return {"create": create_, "read": read, "vread": vread, "update": update, "patch": patch,
            "history-instance": history_instance, "history-type": history_type,
            "search-type": search_type, "delete": delete}


def test_every_listed_patient_interaction_is_answered(capability: dict[str, Any],
                                                      client: httpx.Client) -> None:
    put(client, patient(id="cap"), 201)
    listed = [i["code"] for i in resource_entry(capability, "Patient")["interaction"]]
    exercise = _exercise(client)
    assert set(listed) <= set(exercise), "an interaction is listed that this test cannot exercise"
    for code in listed:
        exercise[code]()


def test_listed_system_interactions_are_answered(capability: dict[str, Any], client: httpx.Client) -> None:
    listed = {i["code"] for i in capability["rest"][0]["interaction"]}
    assert listed == {"transaction", "batch", "search-system", "history-system"}
    for kind in ("transaction", "batch"):
        r = client.post(base(client), json={"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}}]})
        assert r.status_code == 200 and r.json()["type"] == f"{kind}-response"
    r = client.get(base(client), params={"_type": "Patient"})
    assert r.status_code == 200 and r.json()["type"] == "searchset" and len(r.json()["entry"]) == 2
    assert len(history(client, "/_history")) == 2


def test_listed_flags_hold(capability: dict[str, Any], client: httpx.Client) -> None:
    entry = resource_entry(capability, "Patient")
    assert entry["updateCreate"] is True
    assert client.put("/Patient/flag", json=patient(id="flag")).status_code == 201
    assert entry["versioning"] == "versioned-update"
    outcome(client.put("/Patient/flag", json=patient(id="flag"), headers={"If-Match": 'W/"7"'}), 412)
    assert entry["conditionalCreate"] is True
    r = client.post("/Patient", json=patient(), headers={"If-None-Exist": "_id=flag"})
    assert r.status_code == 200 and r.json()["id"] == "flag"
    assert entry["conditionalRead"] == "full-support"
    assert client.get("/Patient/flag", headers={"If-None-Match": 'W/"1"'}).status_code == 304
    modified = client.get("/Patient/flag").headers["last-modified"]
    assert client.get("/Patient/flag", headers={"If-Modified-Since": modified}).status_code == 304
    assert entry["conditionalUpdate"] is True
    assert client.put("/Patient?_id=flag", json=patient(active=True)).status_code == 200
    assert "enforced" in entry["referencePolicy"]
    r = client.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                          "code": {"text": "x"}, "subject": {"reference": "Patient/nobody"}})
    outcome(r, 400, expression="Observation.subject.reference")
    assert entry["conditionalDelete"] == "multiple"
    put(client, patient(id="flag2", active=True), 201)
    assert client.delete("/Patient?active=true").status_code == 200
    assert search(client, "Patient") == []
    assert entry["operation"][0] == {"name": "validate",
                                     "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
    assert client.post("/Patient/$validate", json=patient()).status_code == 200


def test_patch_formats_listed_are_accepted(capability: dict[str, Any], client: httpx.Client) -> None:
    put(client, patient(id="pf"), 201)
    assert set(capability["patchFormat"]) == {"application/json-patch+json", JSON}
    r = client.patch("/Patient/pf", content=b'[{"op": "add", "path": "/active", "value": true}]',
                     headers=JSON_PATCH)
    assert r.status_code == 200
    op = {"name": "operation", "part": [{"name": "type", "valueCode": "delete"},
                                        {"name": "path", "valueString": "Patient.active"}]}
    r = client.patch("/Patient/pf", json={"resourceType": "Parameters", "parameter": [op]})
    assert r.status_code == 200 and "active" not in r.json()


_SAMPLE = {"token": "x", "string": "x", "date": "2000-01-01", "reference": "Patient/x",
           "quantity": "5", "number": "5", "uri": "http://example.org/x"}


def sample(param: dict[str, str]) -> str:
    """A well-formed value for a listed parameter; a composite's second part is named by its
    suffix (code-value-quantity, code-value-date, ...)."""
    if param["type"] != "composite":
        return _SAMPLE[param["type"]]
    last = param["name"].rsplit("-", 1)[1]
    return "x$" + {"quantity": "5", "date": "2000-01-01"}.get(last, "y")


@pytest.mark.parametrize("res_type", ["Patient", "Observation"])
def test_every_listed_search_parameter_is_accepted_under_strict_handling(
        capability: dict[str, Any], client: httpx.Client, res_type: str) -> None:
    create(client, patient())
    for param in resource_entry(capability, res_type)["searchParam"]:
        r = client.get(f"/{res_type}", params={param["name"]: sample(param)},
                       headers={"Prefer": "handling=strict"})
        assert r.status_code == 200, (param, r.text)
        assert r.json()["type"] == "searchset"
    outcome(client.get(f"/{res_type}", params={"shoe-size": "9"}, headers={"Prefer": "handling=strict"}),
            400, "invalid")


def test_text_searches_are_listed(capability: dict[str, Any]) -> None:
    """_text and _content have no FHIRPath expression but are answered (fhir/text.py)."""
    names = {p["name"] for p in resource_entry(capability, "Patient")["searchParam"]}
    assert {"_text", "_content"} <= names
    assert "_content" in {p["name"] for p in resource_entry(capability, "Bundle")["searchParam"]}
