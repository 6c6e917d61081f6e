"""Result parameters (http://hl7.org/fhir/R4/search.html#return): _include and _revinclude
(with :iterate and *), _sort, _count, _total, _summary and _elements."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import pytest

from tests.search import oracle
from tests.search.support import Fhir, included, matches, outcomes

LOINC = "http://loinc.org"
SUBSETTED = "SUBSETTED"
FAMILIES = ["adams", "baker", "baker", "clark", "davis", "evans", "baker", "adams", "fox", "green"]
BORN = ["1980-01-01", "1975-05-05", "1990-09-09", "1960-01-01", None, "2001-02-03", "1985-06-07",
        "1980-01-02", "1999-12-31", "1970-07-07"]


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def dataset() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": "gp1", "name": [{"family": "Grey"}]},
        {"resourceType": "Practitioner", "id": "gp2", "name": [{"family": "Black"}]},
        {"resourceType": "Organization", "id": "org", "name": "Acme"},
    ]
    for i, (fam, born) in enumerate(zip(FAMILIES, BORN, strict=True)):
        p: dict[str, Any] = {"resourceType": "Patient", "id": f"p{i}", "active": True,
                             "name": [{"family": fam, "given": [f"g{i}"]}], "gender": "female" if i % 2 else "male",
                             "generalPractitioner": [ref(f"Practitioner/gp{1 + i % 2}")],
                             "managingOrganization": ref("Organization/org"),
                             "contact": [{"name": {"family": "Contact"}}],
                             "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{fam}</div>'}}
        if born:
            p["birthDate"] = born
        out.append(p)
    for i in range(10):
        out.append({"resourceType": "Observation", "id": f"o{i}", "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "8867-4" if i < 6 else "8480-6"}]},
                    "subject": ref(f"Patient/p{i % 3}"), "performer": [ref("Practitioner/gp1")],
                    "effectiveDateTime": f"2020-01-{10 + i:02d}", "valueQuantity": {"value": 60 + (i * 7) % 13},
                    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">obs</div>'}})
    out.append({"resourceType": "Provenance", "id": "prov0", "target": [ref("Observation/o0")],
                "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": ref("Practitioner/gp2")}]})
    out.append({"resourceType": "Provenance", "id": "provp", "target": [ref("Patient/p0")],
                "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": ref("Organization/org")}]})
    return out


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    return oracle.Oracle(db.load(dataset()).values())


def keys(resources: list[dict[str, Any]]) -> list[str]:
    return [f"{r['resourceType']}/{r['id']}" for r in resources]


# -- _include / _revinclude --------------------------------------------------------------------------
def test_include_adds_the_referenced_resources_once(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Observation", {"code": "8867-4", "_include": "Observation:subject"})
    assert sorted(keys(matches(body))) == [f"Observation/o{i}" for i in range(6)]
    assert sorted(keys(included(body))) == ["Patient/p0", "Patient/p1", "Patient/p2"]
    assert all(e["fullUrl"].endswith(f"{e['resource']['resourceType']}/{e['resource']['id']}")
               for e in body["entry"])


def test_include_with_a_target_type(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"_id": "p0,p1", "_include": "Patient:general-practitioner:Practitioner"})
    assert sorted(keys(included(body))) == ["Practitioner/gp1", "Practitioner/gp2"]
    body = db.bundle("Patient", {"_id": "p0,p1", "_include": "Patient:general-practitioner:Organization"})
    assert included(body) == []


def test_include_of_every_reference(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Observation", {"_id": "o0", "_include": "Observation:*"})
    assert sorted(keys(included(body))) == ["Patient/p0", "Practitioner/gp1"]
    body = db.bundle("Patient", {"_id": "p1", "_include": "*"})
    assert sorted(keys(included(body))) == ["Organization/org", "Practitioner/gp2"]


def test_include_without_iterate_applies_to_matches_only(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Observation", {"_id": "o1", "_include": ["Observation:subject",
                                                                 "Patient:general-practitioner"]})
    assert keys(included(body)) == ["Patient/p1"]


def test_include_iterate_follows_included_resources(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Observation", [("_id", "o1"), ("_include", "Observation:subject"),
                                     ("_include:iterate", "Patient:general-practitioner"),
                                     ("_include:iterate", "Patient:organization")])
    assert sorted(keys(included(body))) == ["Organization/org", "Patient/p1", "Practitioner/gp2"]


def test_revinclude(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"_id": "p0", "_revinclude": "Observation:subject"})
    assert keys(matches(body)) == ["Patient/p0"]
    assert sorted(keys(included(body))) == ["Observation/o0", "Observation/o3", "Observation/o6", "Observation/o9"]
    body = db.bundle("Patient", {"_id": "p0", "_revinclude": "Provenance:target"})
    assert keys(included(body)) == ["Provenance/provp"]


def test_revinclude_iterate(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", [("_id", "p0"), ("_revinclude", "Observation:subject"),
                                 ("_revinclude:iterate", "Provenance:target")])
    assert set(keys(included(body))) == {"Observation/o0", "Observation/o3", "Observation/o6", "Observation/o9",
                                         "Provenance/prov0", "Provenance/provp"}


def test_include_and_revinclude_together(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Observation", {"_id": "o0", "_include": "Observation:performer",
                                     "_revinclude": "Provenance:target"})
    assert sorted(keys(included(body))) == ["Practitioner/gp1", "Provenance/prov0"]


def test_matches_are_not_repeated_as_includes(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Practitioner", [("_revinclude", "Observation:performer"),
                                      ("_include:iterate", "Observation:performer")])
    assert sorted(keys(matches(body))) == ["Practitioner/gp1", "Practitioner/gp2"]
    assert sorted(keys(included(body))) == [f"Observation/o{i}" for i in range(10)]


@pytest.mark.parametrize("value", ["Observation", "Observation:code", "Observation:nope", "Nope:subject"])
def test_bad_includes_are_400(db: Fhir, value: str) -> None:
    db.error("Observation", {"_include": value})


# -- _sort -------------------------------------------------------------------------------------------
def sort_key(r: dict[str, Any], code: str) -> Any:
    if code == "family":
        return r["name"][0]["family"]
    if code == "birthdate":
        return r.get("birthDate")
    if code == "_lastUpdated":
        return r["meta"]["lastUpdated"]
    if code == "date":
        return r["effectiveDateTime"]
    if code == "gender":
        return r["gender"]
    raise AssertionError(code)


def assert_sorted(found: list[dict[str, Any]], spec: str) -> None:
    """Resources with every key present come in the order of the keys (ties in any order);
    which end resources without a key go to is the server's choice."""
    codes = [(k.lstrip("-"), k.startswith("-")) for k in spec.split(",")]
    rows = [[sort_key(r, c) for c, _ in codes] for r in found]
    rows = [row for row in rows if None not in row]
    expected = list(rows)
    for i in reversed(range(len(codes))):
        expected.sort(key=itemgetter(i), reverse=codes[i][1])
    assert rows == expected, f"_sort={spec}: got {rows}"


@pytest.mark.parametrize("spec", ["family", "-family", "birthdate", "-birthdate", "family,birthdate",
                                  "family,-birthdate", "-family,birthdate", "gender,-family,birthdate",
                                  "_lastUpdated", "-_lastUpdated"])
def test_sort(db: Fhir, data: oracle.Oracle, spec: str) -> None:
    found = db.search("Patient", {"_sort": spec})
    assert len(found) == 10
    assert_sorted(found, spec)


@pytest.mark.parametrize("count", [1, 3, 4])
def test_sorted_results_page_in_the_same_order(db: Fhir, data: oracle.Oracle, count: int) -> None:
    whole = keys(db.search("Patient", {"_sort": "family,-birthdate,_lastUpdated"}))
    paged = keys(db.search("Patient", {"_sort": "family,-birthdate,_lastUpdated", "_count": count}))
    assert paged == whole


def test_sort_observations_by_date_with_a_filter(db: Fhir, data: oracle.Oracle) -> None:
    found = db.search("Observation", {"code": "8867-4", "_sort": "-date", "_count": 2})
    assert keys(found) == [f"Observation/o{i}" for i in (5, 4, 3, 2, 1, 0)]


def test_sort_by_id_is_by_the_id_not_the_creation_order(db: Fhir, data: oracle.Oracle) -> None:
    for i in ("b", "c", "a"):
        db.put({"resourceType": "Basic", "id": i, "code": {"text": "x"}})
    assert keys(db.search("Basic", {"_sort": "_id"})) == ["Basic/a", "Basic/b", "Basic/c"]
    assert keys(db.search("Basic", {"_sort": "-_id"})) == ["Basic/c", "Basic/b", "Basic/a"]


def test_sort_by_an_unknown_parameter_is_400(db: Fhir) -> None:
    assert "nope" in db.error("Patient", {"_sort": "nope"})


# -- _count and _total --------------------------------------------------------------------------------
def test_count_limits_a_page(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"_count": 3})
    assert len(matches(body)) == 3
    assert len(db.search("Patient", {"_count": 3})) == 10


def test_count_zero_returns_no_resources(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"_count": 0, "_total": "accurate"})
    assert matches(body) == [] and body["total"] == 10


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_bad_count_is_400(db: Fhir, value: str) -> None:
    assert "_count" in db.error("Patient", {"_count": value})


def test_total_accurate_counts_matches_not_includes(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Observation", {"code": "8867-4", "_total": "accurate", "_count": 2,
                                     "_include": "Observation:subject"})
    assert body["total"] == 6 and len(matches(body)) == 2
    nxt = [x["url"] for x in body["link"] if x["relation"] == "next"][0]
    assert db.bundle(nxt)["total"] == 6


def test_total_none_and_estimate(db: Fhir, data: oracle.Oracle) -> None:
    assert "total" not in db.bundle("Patient", {"_total": "none"})
    assert db.bundle("Patient", {"_total": "estimate"}).get("total", 10) >= 0
    assert "_total" in db.error("Patient", {"_total": "some"})


# -- _summary and _elements ------------------------------------------------------------------------------
def subsetted(resource: dict[str, Any]) -> bool:
    return any(t.get("code") == SUBSETTED for t in resource.get("meta", {}).get("tag", []))


def test_summary_count(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"gender": "male", "_summary": "count"})
    assert body["total"] == 5 and not matches(body)


def test_summary_true_keeps_summary_elements(db: Fhir, data: oracle.Oracle) -> None:
    for p in matches(db.bundle("Patient", {"_summary": "true"})):
        assert subsetted(p)
        assert "name" in p and "gender" in p and "text" not in p and "contact" not in p


def test_summary_text(db: Fhir, data: oracle.Oracle) -> None:
    for o in matches(db.bundle("Observation", {"_summary": "text"})):
        assert subsetted(o) and "text" in o
        assert {"status", "code"} <= set(o)  # mandatory elements
        assert "valueQuantity" not in o and "subject" not in o


def test_summary_data_drops_the_narrative(db: Fhir, data: oracle.Oracle) -> None:
    for o in matches(db.bundle("Observation", {"_summary": "data"})):
        assert subsetted(o) and "text" not in o and "valueQuantity" in o


def test_summary_false_is_the_whole_resource(db: Fhir, data: oracle.Oracle) -> None:
    for o in matches(db.bundle("Observation", {"_summary": "false"})):
        assert not subsetted(o) and "text" in o


def test_elements(db: Fhir, data: oracle.Oracle) -> None:
    for p in matches(db.bundle("Patient", {"_elements": "name,birthDate"})):
        assert subsetted(p)
        assert set(p) <= {"resourceType", "id", "meta", "name", "birthDate"}
        assert "name" in p


def test_elements_keeps_mandatory_elements(db: Fhir, data: oracle.Oracle) -> None:
    for o in matches(db.bundle("Observation", {"_elements": "subject"})):
        assert {"subject", "status", "code"} <= set(o) and "valueQuantity" not in o


def test_bad_summary_is_400(db: Fhir) -> None:
    assert "_summary" in db.error("Patient", {"_summary": "maybe"})


def test_result_parameters_are_not_reported_as_unknown(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"_count": 2, "_sort": "family", "_total": "accurate", "_summary": "data",
                                 "_include": "Patient:organization", "_format": "json", "_pretty": "true"})
    assert outcomes(body) == []
