"""Bad requests of every kind get the right status and an OperationOutcome pointing at the
fault, and change nothing (http://hl7.org/fhir/R4/http.html#2.21.0.3, operationoutcome.html).

Structural faults (not parseable, not FHIR-shaped) are 400; a well-formed resource that breaks
a rule (cardinality, binding, NHS number) is 422. The ``client`` fixture also checks that no
response of any test carries a stack trace."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import JSON, NHS, base, history, nothing_written, outcome, patient, put

RAW = {"Content-Type": JSON}


@pytest.mark.parametrize("body", [b"{nope", b'{"resourceType": "Patient",}', b"", b"\xff\xfe{}",
                                  b'{"resourceType": "Patient", "multipleBirthInteger": 1e999}'])
def test_malformed_json_is_400_invalid_and_writes_nothing(client: httpx.Client, body: bytes) -> None:
    outcome(client.post("/Patient", content=body, headers=RAW), 400, "invalid")
    outcome(client.put("/Patient/m", content=body, headers=RAW), 400, "invalid")
    outcome(client.post(base(client), content=body, headers=RAW), 400, "invalid")
    nothing_written(client)


@pytest.mark.parametrize("body", [b"[]", b'[{"resourceType": "Patient"}]', b'"Patient"', b"42", b"null",
                                  b"true"])
def test_json_that_is_not_an_object_is_400_and_writes_nothing(client: httpx.Client, body: bytes) -> None:
    issue = outcome(client.post("/Patient", content=body, headers=RAW), 400, "invalid")
    assert "object" in issue["diagnostics"]
    nothing_written(client)


def test_body_nested_beyond_what_can_be_stored_is_400_and_writes_nothing(client: httpx.Client) -> None:
    for depth in (130, 300, 600):
        leaf = '{"url": "http://x", "valueString": "v"}'
        ext = '{"url": "http://x", "extension": [' * depth + leaf + "]}" * depth
        body = '{"resourceType": "Patient", "extension": [' + ext + "]}"
        outcome(client.post("/Patient", content=body, headers=RAW), 400, "invalid")
    nothing_written(client)


def test_unknown_element_is_400_naming_it(client: httpx.Client) -> None:
    outcome(client.post("/Patient", json=patient(foo=1)), 400, "structure", "Patient.foo")
    outcome(client.post("/Patient", json=patient(name=[{"family": "X", "surname": "Y"}])), 400, "structure",
            "Patient.name[0].surname")
    nothing_written(client)


@pytest.mark.parametrize("field, value, expression", [
    ("birthDate", 123, "Patient.birthDate"), ("active", "yes", "Patient.active"),
    ("name", {"family": "X"}, "Patient.name"), ("name", [5], "Patient.name[0]"),
    ("multipleBirthInteger", 1.5, "Patient.multipleBirthInteger"),
    ("gender", None, "Patient.gender"),
])
def test_wrong_json_type_points_at_the_element_and_writes_nothing(client: httpx.Client, field: str,
                                                                  value: object, expression: str) -> None:
    r = client.post("/Patient", json=patient(**{field: value}))
    outcome(r, r.status_code, expression=expression)
    assert r.status_code in (400, 422)
    nothing_written(client)


@pytest.mark.parametrize("field, value", [("birthDate", 123), ("active", "yes")])
def test_wrong_json_type_for_a_primitive_is_400_like_other_structural_faults(
        client: httpx.Client, field: str, value: object) -> None:
    outcome(client.post("/Patient", json=patient(**{field: value})), 400, "structure", f"Patient.{field}")


def test_bad_nhs_number_is_422_naming_the_identifier_value(client: httpx.Client) -> None:
    bad = [{"system": NHS, "value": "9000000001"}]
    issue = outcome(client.post("/Patient", json=patient(identifier=bad)), 422, "value",
                    "Patient.identifier[0].value")
    assert "9000000001" in issue["diagnostics"]
    nothing_written(client)


def test_bad_nhs_number_on_update_is_422_and_changes_nothing(client: httpx.Client) -> None:
    good = [{"system": NHS, "value": "9000000009"}]
    before = put(client, patient(id="n", identifier=good), 201)
    bad = [{"system": "urn:other", "value": "x"}, {"system": NHS, "value": "123"}]
    outcome(client.put("/Patient/n", json=patient(id="n", identifier=bad)), 422, "value",
            "Patient.identifier[1].value")
    assert client.get("/Patient/n").json() == before


def test_missing_required_elements_are_422_listing_each(client: httpx.Client) -> None:
    r = client.post("/Observation", json={"resourceType": "Observation"})
    outcome(r, 422, "required")
    assert sorted(e for i in r.json()["issue"] for e in i["expression"]) == [
        "Observation.code", "Observation.status"]
    nothing_written(client)


def test_code_outside_a_required_value_set_is_422(client: httpx.Client) -> None:
    outcome(client.post("/Patient", json=patient(gender="banana")), 422, "code-invalid", "Patient.gender")
    nothing_written(client)


@pytest.mark.parametrize("method, path", [
    ("POST", "/Spaceship"), ("GET", "/Spaceship/1"), ("GET", "/Spaceship"), ("PUT", "/Spaceship/1"),
    ("DELETE", "/Spaceship/1"), ("GET", "/Spaceship/_history"), ("GET", "/Spaceship/1/_history/1"),
    ("POST", "/Spaceship/$validate"), ("GET", "/patient/1")])
def test_unknown_resource_type_is_404(client: httpx.Client, method: str, path: str) -> None:
    body = b'{"resourceType": "Spaceship", "id": "1"}' if method in ("POST", "PUT") else None
    outcome(client.request(method, path, content=body, headers=RAW), 404, "not-found")
    nothing_written(client)


def test_unknown_path_is_404_with_an_outcome(client: httpx.Client) -> None:
    outcome(client.get("/Patient/1/2/3/4/5"), 404, "not-found")


def test_body_of_another_type_than_the_url_is_400_naming_resource_type(client: httpx.Client) -> None:
    obs = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}}
    outcome(client.post("/Patient", json=obs), 400, "invalid", "resourceType")
    outcome(client.put("/Patient/o", json=obs), 400, "invalid", "resourceType")
    outcome(client.post("/Patient", json={"id": "x"}), 400, "invalid", "resourceType")
    nothing_written(client)


def test_id_mismatch_between_url_and_body_is_400_and_changes_nothing(client: httpx.Client) -> None:
    before = put(client, patient(id="a"), 201)
    outcome(client.put("/Patient/a", json=patient(id="b", active=True)), 400, "invalid", "id")
    assert client.get("/Patient/a").json() == before
    assert client.get("/Patient/b").status_code == 404


def test_reference_to_a_missing_or_deleted_resource_is_400_naming_it(client: httpx.Client) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/nobody"}}
    outcome(client.post("/Observation", json=obs), 400, "not-found", "Observation.subject.reference")
    put(client, patient(id="gone"), 201)
    assert client.delete("/Patient/gone").status_code == 204
    obs["subject"] = {"reference": "Patient/gone"}
    outcome(client.post("/Observation", json=obs), 400, "not-found", "Observation.subject.reference")
    assert [e["request"]["method"] for e in history(client)] == ["DELETE", "PUT"]


@pytest.mark.parametrize("method, path, allow", [
    ("PUT", "/metadata", "GET, HEAD"), ("POST", "/metadata", "GET, HEAD"),
    ("DELETE", "/metadata", "GET, HEAD"), ("PATCH", "/metadata", "GET, HEAD"),
    ("DELETE", "/Patient/_history", "GET, HEAD"), ("PUT", "/Patient/_history", "GET, HEAD"),
    ("POST", "/_history", "GET, HEAD"), ("DELETE", "/_history", "GET, HEAD"),
    ("GET", "/Patient/_search", "POST"), ("DELETE", "/Patient/$validate", "POST"),
    ("PUT", "/Patient/p/_history", "GET, HEAD"), ("DELETE", "/Patient/p/$validate", "POST"),
    ("POST", "/Patient/p", "DELETE, GET, HEAD, PATCH, PUT"), ("PATCH", "", "GET, HEAD, POST"),
    ("DELETE", "/Patient/p/_history/1", "GET, HEAD"),
])
def test_method_not_allowed_on_a_path_is_405_with_allow(client: httpx.Client, method: str, path: str,
                                                       allow: str) -> None:
    before = put(client, patient(id="p"), 201)
    r = client.request(method, f"{base(client)}{path}", content=b'{"resourceType": "Patient", "id": "p"}',
                       headers=RAW)
    outcome(r, 405, "not-supported")
    assert r.headers["allow"] == allow
    assert client.get("/Patient/p").json() == before
    assert len(history(client)) == 1


def test_405_comes_in_the_negotiated_format(client: httpx.Client) -> None:
    r = client.put("/metadata", content=b"{}", headers={**RAW, "Accept": "application/fhir+xml"})
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert '<code value="not-supported"/>' in r.text


def test_error_outcomes_name_no_internals(client: httpx.Client) -> None:
    get = {"request": {"method": "GET", "url": "Patient?x=1&_count=-1"}}
    for r in (client.post("/Patient", content=b"{nope", headers=RAW),
              client.get("/Patient/nobody"),
              client.post("/Patient", json=patient(foo=1)),
              client.post(base(client), json={"resourceType": "Bundle", "type": "transaction",
                                              "entry": [get]})):
        assert 400 <= r.status_code < 500
        for word in ("Traceback", "sqlalchemy", "psycopg", "sqlite3", "site-packages", "carerecord/"):
            assert word not in r.text
