"""PATCH with JSON Patch (application/json-patch+json) and FHIRPath Patch (a Parameters body)
(http://hl7.org/fhir/R4/http.html#patch, http://hl7.org/fhir/R4/fhirpatch.html)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import history, outcome, patient, put

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def fhirpath_op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    part = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    part += [{"name": k, **v} for k, v in parts.items()]
    return {"name": "operation", "part": part}


def parameters(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(ops)}


def unchanged(client: httpx.Client, before: dict[str, Any]) -> None:
    r = client.get(f"/Patient/{before['id']}")
    assert r.json() == before
    assert len(history(client, f"/Patient/{before['id']}/_history")) == int(before["meta"]["versionId"])


def test_json_patch_replaces_a_value_as_a_new_version(client: httpx.Client) -> None:
    put(client, patient(id="p", active=True, name=[{"family": "Old"}]), 201)
    r = client.patch("/Patient/p", content=b'[{"op": "replace", "path": "/active", "value": false},'
                     b'{"op": "add", "path": "/gender", "value": "female"}]', headers=JSON_PATCH)
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"2"'
    body = r.json()
    assert body["active"] is False and body["gender"] == "female" and body["name"] == [{"family": "Old"}]
    assert body["meta"]["versionId"] == "2"
    assert client.get("/Patient/p").json() == body


def test_fhirpath_patch_replaces_a_nested_value(client: httpx.Client) -> None:
    put(client, patient(id="p", name=[{"family": "Old", "given": ["Ann"]}]), 201)
    body = parameters(fhirpath_op("replace", "Patient.name[0].family", value={"valueString": "New"}),
                      fhirpath_op("add", "Patient", name={"valueString": "birthDate"},
                                  value={"valueDate": "1980-02-03"}))
    r = client.patch("/Patient/p", json=body)
    assert r.status_code == 200
    assert r.json()["name"] == [{"family": "New", "given": ["Ann"]}]
    assert r.json()["birthDate"] == "1980-02-03"
    assert client.get("/Patient/p").headers["etag"] == 'W/"2"'


def test_fhirpath_patch_in_xml(client: httpx.Client) -> None:
    put(client, patient(id="p", active=True), 201)
    xml = ('<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>'
           '<part><name value="type"/><valueCode value="delete"/></part>'
           '<part><name value="path"/><valueString value="Patient.active"/></part>'
           '</parameter></Parameters>')
    r = client.patch("/Patient/p", content=xml, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 200
    assert "active" not in r.json()


def test_json_patch_that_makes_the_resource_invalid_is_4xx_and_changes_nothing(client: httpx.Client) -> None:
    before = put(client, patient(id="p", active=True), 201)
    r = client.patch("/Patient/p", content=b'[{"op": "replace", "path": "/active", "value": "yes"}]',
                     headers=JSON_PATCH)
    assert 400 <= r.status_code < 500
    outcome(r, r.status_code, expression="Patient.active")
    r = client.patch("/Patient/p", content=b'[{"op": "add", "path": "/foo", "value": 1}]', headers=JSON_PATCH)
    outcome(r, 400, "structure", "Patient.foo")
    unchanged(client, before)


def test_fhirpath_patch_that_makes_the_resource_invalid_is_422_and_changes_nothing(
        client: httpx.Client) -> None:
    before = put(client, patient(id="p", active=True), 201)
    body = parameters(fhirpath_op("add", "Patient", name={"valueString": "gender"},
                                  value={"valueCode": "banana"}))
    outcome(client.patch("/Patient/p", json=body), 422, "code-invalid", "Patient.gender")
    unchanged(client, before)


def test_patch_may_not_change_the_id_or_type(client: httpx.Client) -> None:
    before = put(client, patient(id="p"), 201)
    for op in (b'[{"op": "replace", "path": "/id", "value": "q"}]',
               b'[{"op": "replace", "path": "/resourceType", "value": "Group"}]'):
        outcome(client.patch("/Patient/p", content=op, headers=JSON_PATCH), 422, "processing",
                "Patch.operation[0]")
    unchanged(client, before)
    assert client.get("/Patient/q").status_code == 404


def test_failed_json_patch_test_operation_is_422_and_changes_nothing(client: httpx.Client) -> None:
    before = put(client, patient(id="p", active=True), 201)
    r = client.patch("/Patient/p", content=b'[{"op": "add", "path": "/gender", "value": "male"},'
                     b'{"op": "test", "path": "/active", "value": false}]', headers=JSON_PATCH)
    outcome(r, 422, "processing", "Patch.operation[1]")
    unchanged(client, before)


def test_malformed_patch_documents_are_400(client: httpx.Client) -> None:
    before = put(client, patient(id="p", active=True), 201)
    outcome(client.patch("/Patient/p", content=b"[{", headers=JSON_PATCH), 400, "invalid")
    outcome(client.patch("/Patient/p", content=b'{"op": "remove"}', headers=JSON_PATCH), 400, "invalid",
            "Patch")
    outcome(client.patch("/Patient/p", content=b'[{"op": "frobnicate", "path": "/active"}]',
                         headers=JSON_PATCH), 400, "invalid", "Patch.operation[0]")
    outcome(client.patch("/Patient/p", json=patient(active=False)), 400, "invalid", "resourceType")
    outcome(client.patch("/Patient/p", json=parameters({"name": "operation"})), 400, "invalid",
            "Parameters.parameter[0]")
    unchanged(client, before)


def test_patch_with_another_content_type_is_415(client: httpx.Client) -> None:
    before = put(client, patient(id="p", active=True), 201)
    r = client.patch("/Patient/p", content=b"active=false",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    outcome(r, 415, "not-supported")
    unchanged(client, before)


def test_patch_honours_if_match(client: httpx.Client) -> None:
    put(client, patient(id="p", active=True), 201)
    before = put(client, patient(id="p", active=True, gender="male"))
    op = b'[{"op": "replace", "path": "/active", "value": false}]'
    outcome(client.patch("/Patient/p", content=op, headers={**JSON_PATCH, "If-Match": 'W/"1"'}), 412,
            "conflict")
    unchanged(client, before)
    r = client.patch("/Patient/p", content=op, headers={**JSON_PATCH, "If-Match": 'W/"2"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"3"'


def test_patch_of_a_missing_resource_is_404_and_of_a_deleted_one_410(client: httpx.Client) -> None:
    op = b'[{"op": "add", "path": "/active", "value": true}]'
    outcome(client.patch("/Patient/none", content=op, headers=JSON_PATCH), 404, "not-found")
    put(client, patient(id="p"), 201)
    assert client.delete("/Patient/p").status_code == 204
    outcome(client.patch("/Patient/p", content=op, headers=JSON_PATCH), 410, "deleted")


def test_conditional_patch_patches_the_one_match(client: httpx.Client) -> None:
    put(client, patient(id="p", identifier=[{"system": "urn:s", "value": "1"}]), 201)
    op = b'[{"op": "add", "path": "/active", "value": true}]'
    r = client.patch("/Patient?identifier=urn:s|1", content=op, headers=JSON_PATCH)
    assert r.status_code == 200 and r.json()["id"] == "p" and r.json()["active"] is True
    outcome(client.patch("/Patient?identifier=urn:s|2", content=op, headers=JSON_PATCH), 404, "not-found")
