"""A real FHIR client from PyPI (fhirpy, https://github.com/beda-software/fhir-py) searching the
live server: modifiers and prefixes as fhirpy writes them, chaining, _has, includes, sorting
and paging through its own next-link handling."""

from __future__ import annotations

from typing import Any

import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.searchset import Raw

from tests.search.support import Fhir

LOINC = "http://loinc.org"


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


@pytest.fixture
def client(fhir: Fhir) -> SyncFHIRClient:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "acme", "name": "Acme Health"},
        {"resourceType": "Organization", "id": "beta", "name": "Beta Care", "partOf": ref("Organization/acme")},
        {"resourceType": "Practitioner", "id": "house", "name": [{"family": "House"}]},
    ]
    for i in range(12):
        resources.append({"resourceType": "Patient", "id": f"p{i}", "gender": ["male", "female"][i % 2],
                          "name": [{"family": ["Smith", "Jones", "Brown"][i % 3], "given": [f"G{i}"]}],
                          "birthDate": f"19{70 + i}-01-01",
                          "managingOrganization": ref(f"Organization/{['acme', 'beta'][i % 2]}"),
                          "generalPractitioner": [ref("Practitioner/house")]})
        resources.append({"resourceType": "Observation", "id": f"o{i}", "status": "final",
                          "code": {"coding": [{"system": LOINC, "code": "8867-4" if i % 4 else "8480-6"}]},
                          "subject": ref(f"Patient/p{i}"), "effectiveDateTime": f"2020-0{1 + i % 9}-15",
                          "valueQuantity": {"value": 60 + i, "system": "http://unitsofmeasure.org",
                                            "code": "/min", "unit": "/min"}})
    fhir.load(resources)
    return SyncFHIRClient(fhir.base, authorization=fhir.http.headers["Authorization"],
                          extra_headers={"Accept": "application/fhir+json"})


def ids(resources: list[Any]) -> set[str]:
    return {r["id"] for r in resources}


def test_simple_search_with_modifiers_and_prefixes(client: SyncFHIRClient) -> None:
    patients = client.resources("Patient")
    assert ids(patients.search(family="smi").fetch_all()) == {"p0", "p3", "p6", "p9"}
    assert ids(patients.search(family__exact="Smith", gender="female").fetch_all()) == {"p3", "p9"}
    assert ids(patients.search(name__contains="ONE").fetch_all()) == {"p1", "p4", "p7", "p10"}
    assert ids(patients.search(birthdate__ge="1980", birthdate__lt="1982").fetch_all()) == {"p10", "p11"}
    assert ids(patients.search(gender__not="male").fetch_all()) == {f"p{i}" for i in range(1, 12, 2)}
    observations = client.resources("Observation")
    assert ids(observations.search(value_quantity__gt="70").fetch_all()) == {"o11"}
    assert ids(observations.search(code=f"{LOINC}|8480-6").fetch_all()) == {"o0", "o4", "o8"}


def test_chained_and_reverse_chained_search(client: SyncFHIRClient) -> None:
    observations = client.resources("Observation")
    assert ids(observations.search(subject__Patient__name="brown").fetch_all()) == {"o2", "o5", "o8", "o11"}
    assert ids(observations.search(subject__Patient__organization__name="beta").fetch_all()) == \
        {f"o{i}" for i in range(1, 12, 2)}
    assert ids(observations.search(Raw(**{"subject:Patient.organization.partof.name": "acme"})).fetch_all()) \
        == {f"o{i}" for i in range(1, 12, 2)}
    patients = client.resources("Patient").has("Observation", "subject", code="8480-6")
    assert ids(patients.fetch_all()) == {"p0", "p4", "p8"}


def test_includes(client: SyncFHIRClient) -> None:
    bundle = client.resources("Observation").search(code="8480-6").include("Observation", "subject").fetch_raw()
    kinds = {(e["search"]["mode"], e["resource"]["resourceType"]) for e in bundle["entry"]}
    assert kinds == {("match", "Observation"), ("include", "Patient")}
    bundle = (client.resources("Observation").search(_id="o1").include("Observation", "subject")
              .include("Patient", "general-practitioner", iterate=True).fetch_raw())
    assert {e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"} == {"p1", "house"}
    bundle = client.resources("Patient").search(_id="p2").revinclude("Observation", "subject").fetch_raw()
    assert [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "include"] == ["o2"]


def test_paging_and_sorting(client: SyncFHIRClient) -> None:
    found = client.resources("Patient").sort("-birthdate").limit(5).fetch_all()
    assert [r["id"] for r in found] == [f"p{i}" for i in reversed(range(12))]
    found = client.resources("Observation").search(code="8867-4").sort("date", "_id").limit(2).fetch_all()
    dates = [r["effectiveDateTime"] for r in found]
    assert len(found) == 9 and dates == sorted(dates)
    assert client.resources("Patient").search(_total="accurate", gender="male").count() == 6


def test_first_and_get(client: SyncFHIRClient) -> None:
    first = client.resources("Patient").search(family="jones").sort("birthdate").first()
    assert first is not None and first["id"] == "p1"
    assert client.resources("Patient").search(_id="p5").get()["id"] == "p5"
