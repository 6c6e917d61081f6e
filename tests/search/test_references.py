"""Reference search, chaining, reverse chaining and composites
(http://hl7.org/fhir/R4/search.html#reference, #chaining, #has, #composite), compared with the
oracle, which resolves references in the dataset itself."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.search import oracle
from tests.search.support import FEW, Fhir, check

LOINC = "http://loinc.org"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
UCUM = "http://unitsofmeasure.org"
SYS, DIA, BP, HR = "8480-6", "8462-4", "85354-9", "8867-4"


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def qty(v: float, unit: str = "mm[Hg]") -> dict[str, Any]:
    return {"value": v, "system": UCUM, "code": unit, "unit": unit}


def code(c: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": c}]}


def obs(oid: str, subject: dict[str, Any] | None, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": fields.pop("code", code(HR)), **({"subject": subject} if subject else {}), **fields}


def dataset() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Organization", "id": "acme", "name": "Acme Health"},
        {"resourceType": "Organization", "id": "beta", "name": "Beta Care", "partOf": ref("Organization/acme")},
        {"resourceType": "Organization", "id": "gamma", "name": "Gamma", "alias": ["Smith & Co"]},
        {"resourceType": "Practitioner", "id": "house", "name": [{"family": "House", "given": ["Greg"]}]},
        {"resourceType": "Practitioner", "id": "wilson", "name": [{"family": "Wilson"}]},
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}],
         "managingOrganization": ref("Organization/acme"), "generalPractitioner": [ref("Practitioner/house")]},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Jones"}],
         "managingOrganization": ref("Organization/beta"), "generalPractitioner": [ref("Practitioner/wilson")]},
        {"resourceType": "Patient", "id": "p3", "name": [{"family": "Brown"}]},
        {"resourceType": "Patient", "id": "p4", "name": [{"family": "Smithers"}],
         "managingOrganization": ref("Organization/gamma"), "generalPractitioner": [ref("Organization/acme")]},
        {"resourceType": "Location", "id": "ward", "name": "Smith ward"},
        {"resourceType": "Group", "id": "g1", "type": "person", "actual": True},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
         "subject": ref("Patient/p1"), "serviceProvider": ref("Organization/acme")},
        {"resourceType": "Encounter", "id": "e2", "status": "finished", "class": {"code": "AMB"},
         "subject": ref("Patient/p2"), "serviceProvider": ref("Organization/beta")},
        obs("o1", ref("Patient/p1"), encounter=ref("Encounter/e1"), performer=[ref("Practitioner/house")],
            code=code(SYS), valueQuantity=qty(130)),
        obs("o2", ref("Patient/p2"), encounter=ref("Encounter/e2"), performer=[ref("Practitioner/wilson")],
            code=code(SYS), valueQuantity=qty(110)),
        obs("o3", ref("Group/g1")),
        obs("o4", ref("Location/ward"), performer=[ref("Organization/gamma")]),
        obs("o5", {"identifier": {"system": NHS, "value": "9000000009"}, "display": "someone"}),
        obs("o6", ref("Patient/p4"), performer=[ref("Patient/p4")], code=code(BP),
            component=[{"code": code(SYS), "valueQuantity": qty(120)},
                       {"code": code(DIA), "valueQuantity": qty(80)}]),
        obs("o7", ref("Patient/p3"), code=code(BP),
            component=[{"code": code(SYS), "valueQuantity": qty(80)},
                       {"code": code(DIA), "valueQuantity": qty(120)}]),
        obs("o8", None, code={"coding": [{"system": LOINC, "code": "x$y"}]}, valueString="a$b,c"),
        {"resourceType": "Provenance", "id": "prov1", "target": [ref("Observation/o1")],
         "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": ref("Practitioner/house")}]},
        {"resourceType": "Provenance", "id": "prov2", "target": [ref("Patient/p2"), ref("Encounter/e2")],
         "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": ref("Practitioner/wilson")}]},
        {"resourceType": "Provenance", "id": "prov3", "target": [ref("Observation/o6")],
         "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": ref("Organization/acme")}]},
    ]


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    return oracle.Oracle(db.load(dataset()).values())


def test_reference_forms(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Observation", [("subject", "Patient/p1")]) == {"o1"}
    assert check(db, data, "Observation", [("subject", "p1")]) == {"o1"}
    assert check(db, data, "Observation", [("subject:Patient", "p1")]) == {"o1"}
    assert check(db, data, "Observation", [("subject:Group", "p1")]) == set()
    assert check(db, data, "Observation", [("subject", f"{db.base}/Patient/p1")]) == {"o1"}
    assert check(db, data, "Observation", [("patient", "p1,p2")]) == {"o1", "o2"}
    assert check(db, data, "Observation", [("patient", "Location/ward")]) == set()
    assert check(db, data, "Observation", [("subject", "Location/ward")]) == {"o4"}


def test_identifier_modifier(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Observation", [("subject:identifier", f"{NHS}|9000000009")]) == {"o5"}
    assert check(db, data, "Observation", [("subject:identifier", "9000000009")]) == {"o5"}


def test_missing(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Observation", [("encounter:missing", "true")]) == {"o3", "o4", "o5", "o6", "o7", "o8"}
    assert check(db, data, "Observation", [("encounter:missing", "false")]) == {"o1", "o2"}


def test_a_reference_by_identifier_is_not_missing(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Observation", [("subject:missing", "true")]) == {"o8"}


@pytest.mark.parametrize("value", ["patient/1", "Patient/", "1 2/x", ""])
def test_malformed_references_are_400(db: Fhir, value: str) -> None:
    db.error("Observation", {"subject": value})


def test_an_absolute_reference_to_another_server_is_not_a_local_one(db: Fhir, data: oracle.Oracle) -> None:
    other = "http://other.example.org/fhir/Patient/p1"
    db.load([{"resourceType": "DiagnosticReport", "id": "ext", "status": "final", "code": {"text": "x"},
              "subject": ref(other)},
             {"resourceType": "DiagnosticReport", "id": "loc", "status": "final", "code": {"text": "x"},
              "subject": ref("Patient/p1")}])
    assert db.ids("DiagnosticReport", {"subject": other}) == {"ext"}
    assert db.ids("DiagnosticReport", {"subject": "Patient/p1"}) == {"loc"}
    assert db.ids("DiagnosticReport", {"subject:Patient.name": "smith"}) == {"loc"}


def test_chains(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Observation", [("subject:Patient.name", "smith")]) == {"o1", "o6"}
    assert check(db, data, "Observation", [("subject.name", "smith")]) == {"o1", "o4", "o6"}
    assert check(db, data, "Observation", [("patient.family", "jones")]) == {"o2"}
    assert check(db, data, "Observation", [("performer:Practitioner.family", "house")]) == {"o1"}
    assert check(db, data, "Encounter", [("service-provider.name", "beta")]) == {"e2"}


def test_chains_of_two_and_three_levels(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Observation", [("subject.organization.name", "acme")]) == {"o1"}
    assert check(db, data, "Observation", [("subject:Patient.organization.name", "smith")]) == {"o6"}
    assert check(db, data, "Observation", [("subject:Patient.organization.partof.name", "acme")]) == {"o2"}
    assert check(db, data, "Observation", [("encounter.subject:Patient.general-practitioner.name", "wilson")]) \
        == {"o2"}
    assert check(db, data, "Patient", [("general-practitioner:Organization.name", "acme")]) == {"p4"}


def test_chains_and_with_other_parameters(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Observation", [("subject:Patient.name", "smith"), ("code", SYS)]) == {"o1"}
    assert check(db, data, "Observation", [("subject:Patient.name", "smith,jones"),
                                           ("subject:Patient.name", "j")]) == {"o2"}


def test_bad_chains_are_400(db: Fhir) -> None:
    assert "reference" in db.error("Observation", {"code.name": "x"})
    assert "foo" in db.error("Observation", {"subject.foo": "x"})
    db.error("Observation", {"subject:Patient.birthdate": "2023-02-30"})


def test_has(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("_has:Observation:patient:code", SYS)]) == {"p1", "p2"}
    assert check(db, data, "Patient", [("_has:Observation:subject:component-code-value-quantity",
                                        f"{SYS}$120")]) == {"p4"}
    assert check(db, data, "Practitioner", [("_has:Observation:performer:subject", "Patient/p2")]) == {"wilson"}
    assert check(db, data, "Patient", [("_has:Provenance:target:agent", "Practitioner/wilson")]) == {"p2"}
    assert check(db, data, "Encounter", [("_has:Observation:encounter:code", f"{LOINC}|{SYS}"),
                                         ("_has:Provenance:target:agent", "wilson")]) == {"e2"}


def test_nested_has(db: Fhir, data: oracle.Oracle) -> None:
    pairs = [("_has:Observation:patient:_has:Provenance:target:agent", "Practitioner/house")]
    assert check(db, data, "Patient", pairs) == {"p1"}
    pairs = [("_has:Encounter:patient:_has:Observation:encounter:performer", "wilson")]
    assert check(db, data, "Patient", pairs) == {"p2"}
    pairs = [("_has:Patient:organization:_has:Observation:patient:code", SYS)]
    assert check(db, data, "Organization", pairs) == {"acme", "beta"}


def test_has_with_a_chain_inside(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Practitioner", [("_has:Observation:performer:subject:Patient.name", "smith")]) \
        == {"house"}


def test_bad_has_is_400(db: Fhir) -> None:
    db.error("Patient", {"_has:Observation:patient": "x"})
    assert "nope" in db.error("Patient", {"_has:Observation:nope:code": "x"})
    assert "nope" in db.error("Patient", {"_has:Observation:patient:nope": "x"})


CHAINS = ["subject.name", "subject:Patient.name", "subject:Location.name", "subject.organization.name",
          "subject:Patient.organization.partof.name", "subject:Patient.general-practitioner.name",
          "performer.name", "performer:Practitioner.family", "encounter.service-provider.name",
          "encounter.subject:Patient.organization.name", "_has:Provenance:target:agent"]
NAMES = ["smith", "acme", "beta", "jones", "house", "wilson", "gamma", "b", "s", "Practitioner/house",
         "Organization/acme", "g"]


@FEW
@given(st.lists(st.tuples(st.sampled_from(CHAINS), st.lists(st.sampled_from(NAMES), min_size=1, max_size=2)),
                min_size=1, max_size=2))
def test_random_chains_agree_with_the_oracle(db: Fhir, data: oracle.Oracle,
                                             clauses: list[tuple[str, list[str]]]) -> None:
    check(db, data, "Observation", [(name, ",".join(values)) for name, values in clauses])


def test_composites_pair_values_from_the_same_element(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Observation", [("code-value-quantity", f"{LOINC}|{SYS}$gt120")]) == {"o1"}
    assert check(db, data, "Observation", [("code-value-quantity", f"{SYS}$110|{UCUM}|mm[Hg]")]) == {"o2"}
    assert check(db, data, "Observation", [("component-code-value-quantity", f"{SYS}$120")]) == {"o6"}
    assert check(db, data, "Observation", [("component-code-value-quantity", f"{DIA}$120")]) == {"o7"}
    assert check(db, data, "Observation", [("component-code-value-quantity", f"{DIA}$gt100")]) == {"o7"}
    assert check(db, data, "Observation", [("combo-code-value-quantity", f"{SYS}$ge110")]) == {"o1", "o2", "o6"}
    assert check(db, data, "Observation", [("combo-code-value-quantity", f"{SYS}$120,{DIA}$120")]) == {"o6", "o7"}
    assert check(db, data, "Observation", [("component-code-value-quantity", f"{SYS}$120"),
                                           ("component-code-value-quantity", f"{DIA}$80")]) == {"o6"}


def test_escaped_dollar_in_composites(db: Fhir, data: oracle.Oracle) -> None:
    assert db.ids("Observation", {"code-value-string": f"{LOINC}|x\\$y$a\\$b\\,c"}) == {"o8"}
    assert db.ids("Observation", {"code-value-string": "x\\$y$a\\$"}) == {"o8"}
    assert db.ids("Observation", {"code-value-string": "x\\$y$b"}) == set()


@pytest.mark.parametrize("value", [f"{SYS}", f"{SYS}$1$2", f"{SYS}$abc", "a|b|c$1"])
def test_malformed_composites_are_400(db: Fhir, value: str) -> None:
    db.error("Observation", {"component-code-value-quantity": value})


@FEW
@given(st.sampled_from(["code-value-quantity", "component-code-value-quantity", "combo-code-value-quantity"]),
       st.lists(st.tuples(st.sampled_from([SYS, DIA, BP, HR, f"{LOINC}|{SYS}", f"|{SYS}"]),
                          st.sampled_from(["", "gt", "lt", "ge", "le", "ne"]),
                          st.sampled_from(["80", "110", "120", "130", "120.0", "1e2"]),
                          st.sampled_from(["", f"|{UCUM}|mm[Hg]", "||mm[Hg]", f"|{UCUM}|kg"])),
                min_size=1, max_size=2))
def test_random_composites_agree_with_the_oracle(db: Fhir, data: oracle.Oracle, name: str,
                                                 values: list[tuple[str, str, str, str]]) -> None:
    check(db, data, "Observation", [(name, ",".join(f"{c}${p}{n}{u}" for c, p, n, u in values))])
