"""Contained resources follow their container's writes (http://hl7.org/fhir/R4/search.html#contained):
an update replaces them, a delete removes them, a compartment holds them with their container,
and ``carerecord check`` finds nothing wrong with their index rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from carerecord.store.integrity import check_integrity
from tests.search.support import Fhir, matches


def report(rid: str, patient: str, inner: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "DiagnosticReport", "id": rid, "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{patient}"}, "contained": inner,
            "result": [{"reference": f"#{c['id']}"} for c in inner]}


def observation(oid: str, status: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}


def contained_ids(fhir: Fhir, url: str, **params: str) -> set[str]:
    body = fhir.bundle(url, {**params, "_contained": "true", "_count": "100"})
    return {e["fullUrl"].rsplit("/", 1)[1] for e in body.get("entry", []) if e["search"]["mode"] == "match"}


def test_update_and_delete_of_the_container(fhir: Fhir, engine: Engine) -> None:
    fhir.load([{"resourceType": "Patient", "id": "pat"}])
    fhir.put(report("r1", "pat", [observation("a", "final"), observation("b", "amended")]))
    assert contained_ids(fhir, "Observation", status="final") == {"r1#a"}
    fhir.put(report("r1", "pat", [observation("b", "final")]))  # a gone, b changed
    assert contained_ids(fhir, "Observation", status="final") == {"r1#b"}
    assert contained_ids(fhir, "Observation", status="amended") == set()
    assert check_integrity(engine)[0] == []
    fhir.delete("DiagnosticReport/r1")
    assert contained_ids(fhir, "Observation") == set()
    assert check_integrity(engine)[0] == []


def test_a_compartment_holds_the_contained_resources_of_its_resources(fhir: Fhir) -> None:
    fhir.load([{"resourceType": "Patient", "id": "one"}, {"resourceType": "Patient", "id": "two"}])
    fhir.put(report("r1", "one", [observation("a", "final")]))
    fhir.put(report("r2", "two", [observation("a", "final")]))
    assert contained_ids(fhir, "Patient/one/Observation") == {"r1#a"}
    assert contained_ids(fhir, "Observation") == {"r1#a", "r2#a"}
    body = fhir.bundle("Patient/two/Observation", {"_contained": "true", "_containedType": "container"})
    assert [r["id"] for r in matches(body)] == ["r2"]


def test_contained_resources_are_in_transactions_and_conditional_searches(fhir: Fhir) -> None:
    """Written in a transaction Bundle, found by a search entry of the same kind of Bundle."""
    fhir.load([{"resourceType": "Patient", "id": "pat"}, report("r1", "pat", [observation("a", "final")])])
    r = fhir.http.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation?status=final&_contained=true"}}]})
    assert r.status_code == 200, r.text
    inner = r.json()["entry"][0]["resource"]
    assert [e["fullUrl"].rsplit("/", 1)[1] for e in inner["entry"]] == ["r1#a"]


def test_a_conditional_write_cannot_match_a_contained_resource(fhir: Fhir) -> None:
    """A contained match is not a resource: conditional interactions refuse _contained."""
    fhir.load([{"resourceType": "Patient", "id": "pat"}, report("r1", "pat", [observation("a", "final")])])
    r = fhir.http.put("/Observation", params={"status": "final", "_contained": "true"},
                      json=observation("x", "amended"))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_contained"], r.text
    r = fhir.http.delete("/Observation", params={"status": "final", "_contained": "true"})
    assert r.status_code == 400, r.text
    assert contained_ids(fhir, "Observation", status="final") == {"r1#a"}
