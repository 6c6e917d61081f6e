"""The $validate operation at type and instance level
(http://hl7.org/fhir/R4/resource-operation-validate.html): always 200 with an OperationOutcome,
and nothing is ever written."""

from __future__ import annotations

import httpx

from tests.api.conftest import NHS, nothing_written, outcome, patient, put


def issues(r: httpx.Response) -> list[dict[str, object]]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]  # type: ignore[no-any-return]


def test_valid_resource_is_200_with_one_information_issue_and_writes_nothing(client: httpx.Client) -> None:
    r = client.post("/Patient/$validate", json=patient(active=True, birthDate="1970-01-01"))
    found = issues(r)
    assert len(found) == 1
    assert found[0]["severity"] == "information" and found[0]["code"] == "informational"
    nothing_written(client)


def test_invalid_resource_is_200_listing_every_error_and_writes_nothing(client: httpx.Client) -> None:
    r = client.post("/Patient/$validate", json=patient(
        foo=1, gender="banana", identifier=[{"system": NHS, "value": "1234567890"}]))
    found = issues(r)
    assert all(i["severity"] == "error" for i in found)
    assert {e for i in found for e in i["expression"]} == {  # type: ignore[attr-defined]
        "Patient.foo", "Patient.gender", "Patient.identifier[0].value"}
    nothing_written(client)


def test_validate_takes_the_resource_in_a_parameters_body(client: httpx.Client) -> None:
    ok = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient()}]}
    assert issues(client.post("/Patient/$validate", json=ok))[0]["severity"] == "information"
    bad = {"resourceType": "Parameters", "parameter": [
        {"name": "mode", "valueCode": "create"},
        {"name": "resource", "resource": {"resourceType": "Observation", "status": "final"}}]}
    found = issues(client.post("/Observation/$validate", json=bad))
    assert {"Observation.code"} == {e for i in found for e in i["expression"]}  # type: ignore[attr-defined]
    nothing_written(client)


def test_validate_of_another_type_than_the_url_is_an_error_issue(client: httpx.Client) -> None:
    found = issues(client.post("/Observation/$validate", json=patient()))
    assert found[0]["severity"] == "error" and found[0]["expression"] == ["resourceType"]


def test_instance_validate_checks_the_id_against_the_url_and_writes_nothing(client: httpx.Client) -> None:
    before = put(client, patient(id="v", active=True), 201)
    found = issues(client.post("/Patient/v/$validate", json=patient(id="v", active=False)))
    assert [i["severity"] for i in found] == ["information"]
    found = issues(client.post("/Patient/v/$validate", json=patient(id="w")))
    assert found[0]["severity"] == "error" and found[0]["expression"] == ["id"]
    assert client.get("/Patient/v").json() == before
    assert client.get("/Patient/w").status_code == 404


def test_validate_in_xml(client: httpx.Client) -> None:
    xml = '<Patient xmlns="http://hl7.org/fhir"><gender value="x"/></Patient>'
    r = client.post("/Patient/$validate", content=xml,
                    headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert '<severity value="error"/>' in r.text and '<expression value="Patient.gender"/>' in r.text
    nothing_written(client)


def test_validate_with_an_unparseable_body_is_400(client: httpx.Client) -> None:
    outcome(client.post("/Patient/$validate", content=b"{nope",
                        headers={"Content-Type": "application/fhir+json"}), 400, "invalid")
    outcome(client.post("/Patient/$validate", json={"resourceType": "Parameters"}), 400, "invalid",
            "Parameters.parameter")


def test_validate_with_malformed_parameters_is_400_not_a_server_error(client: httpx.Client) -> None:
    for params in (5, [5], [{"name": "resource", "resource": 5}]):
        outcome(client.post("/Patient/$validate", json={"resourceType": "Parameters", "parameter": params}),
                400, "invalid", "Parameters.parameter")
    nothing_written(client)


def test_validate_takes_only_post(client: httpx.Client) -> None:
    r = client.get("/Patient/$validate")
    outcome(r, 405, "not-supported")
    assert r.headers["allow"] == "POST"
