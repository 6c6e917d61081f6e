"""Search as an interaction (http://hl7.org/fhir/R4/search.html, http.html#search): GET and
POST _search, compartment and system-level search, parameters for all resources (_id,
_lastUpdated, _tag, _profile, _security, _source, _text, _list), and how unknown parameters
and bad values are answered."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.search import oracle
from tests.search.support import Fhir, check, link, matches, outcomes

TAGS = "http://example.org/tags"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PROFILE = "http://example.org/StructureDefinition/special-patient"
LOINC = "http://loinc.org"


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def narrative(text: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{text}</p></div>'}


def dataset() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Able"}],
         "meta": {"tag": [{"system": TAGS, "code": "vip"}], "source": "http://gp.example/ehr#1",
                  "profile": [PROFILE]},
         "text": narrative("Able has a penicillin allergy")},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Baker"}],
         "meta": {"tag": [{"system": TAGS, "code": "test"}], "security": [{"system": CONF, "code": "R"}],
                  "source": "http://hospital.example/pas"},
         "text": narrative("Baker, no known allergies")},
        {"resourceType": "Patient", "id": "p3", "name": [{"family": "Cole"}]},
        {"resourceType": "Observation", "id": "o1", "status": "final", "subject": ref("Patient/p1"),
         "code": {"coding": [{"system": LOINC, "code": "8867-4"}]}, "meta": {"tag": [{"system": TAGS, "code": "vip"}]}},
        {"resourceType": "Observation", "id": "o2", "status": "final", "subject": ref("Patient/p2"),
         "code": {"coding": [{"system": LOINC, "code": "8867-4"}]}},
        {"resourceType": "Observation", "id": "o3", "status": "final", "subject": ref("Patient/p2"),
         "performer": [ref("Patient/p1")], "code": {"coding": [{"system": LOINC, "code": "8480-6"}]}},
        {"resourceType": "Observation", "id": "o4", "status": "final", "subject": ref("Patient/p3"),
         "code": {"coding": [{"system": LOINC, "code": "8867-4"}]}},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
         "subject": ref("Patient/p1")},
        {"resourceType": "List", "id": "shortlist", "status": "current", "mode": "working",
         "entry": [{"item": ref("Patient/p1")}, {"item": ref("Patient/p3")}, {"item": ref("Observation/o2")}]},
    ]


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    stored = list(db.load(dataset()).values())
    for i in range(3):  # created one by one, so their lastUpdated differ
        time.sleep(0.002)
        stored.append(db.put({"resourceType": "Patient", "id": f"late{i}", "name": [{"family": f"Late{i}"}]}))
    return oracle.Oracle(stored)


def key(r: dict[str, Any]) -> str:
    return f"{r['resourceType']}/{r['id']}"


# -- GET and POST ----------------------------------------------------------------------------------------
def test_post_search_is_the_same_as_get(db: Fhir, data: oracle.Oracle) -> None:
    params = [("code", "8867-4"), ("subject", "Patient/p1,Patient/p2"), ("_include", "Observation:subject")]
    got = db.bundle("Observation", params)
    r = db.http.post("/Observation/_search", data=dict(params[:2]) | {"_include": params[2][1]})
    assert r.status_code == 200, r.text
    posted = r.json()
    assert sorted(map(key, matches(posted))) == sorted(map(key, matches(got))) == ["Observation/o1", "Observation/o2"]
    assert len(posted["entry"]) == len(got["entry"]) == 4


def test_post_search_combines_url_and_body_parameters(db: Fhir, data: oracle.Oracle) -> None:
    r = db.http.post("/Observation/_search?code=8867-4", data={"subject": "Patient/p2"})
    assert r.status_code == 200 and [key(x) for x in matches(r.json())] == ["Observation/o2"]


def test_post_search_paging_links_work(db: Fhir, data: oracle.Oracle) -> None:
    r = db.http.post("/Observation/_search", data={"code": "8867-4", "_count": "1"})
    assert r.status_code == 200
    seen = [key(x) for x in matches(r.json())]
    nxt = link(r.json(), "next")
    while nxt:
        body = db.bundle(nxt)
        seen += [key(x) for x in matches(body)]
        nxt = link(body, "next")
    assert sorted(seen) == ["Observation/o1", "Observation/o2", "Observation/o4"]


def test_post_search_needs_a_form_body(db: Fhir) -> None:
    r = db.http.post("/Observation/_search", json={"code": "8867-4"})
    assert r.status_code == 415, r.text


def test_post_search_with_a_bad_value_is_400(db: Fhir) -> None:
    r = db.http.post("/Patient/_search", data={"birthdate": "2023-02-30"})
    assert r.status_code == 400 and "2023-02-30" in r.text


# -- compartments ------------------------------------------------------------------------------------------
def test_compartment_search(db: Fhir, data: oracle.Oracle) -> None:
    assert db.ids("Patient/p1/Observation") == {"o1", "o3"}  # subject or performer
    assert db.ids("Patient/p2/Observation") == {"o2", "o3"}
    assert db.ids("Patient/p1/Observation", {"code": "8480-6"}) == {"o3"}
    assert db.ids("Patient/p1/Encounter") == {"e1"}
    assert db.ids("Patient/p3/Encounter") == set()


def test_compartment_search_with_includes_and_paging(db: Fhir, data: oracle.Oracle) -> None:
    found = db.search("Patient/p2/Observation", {"_count": 1, "_sort": "code"})
    assert [key(x) for x in found] == ["Observation/o3", "Observation/o2"]
    body = db.bundle("Patient/p2/Observation", {"_include": "Observation:subject"})
    assert [key(e["resource"]) for e in body["entry"] if e["search"]["mode"] == "include"] == ["Patient/p2"]
    assert all(urlsplit(x["url"]).path.endswith("/Patient/p2/Observation") for x in body["link"])


def test_compartment_of_an_unknown_patient_is_404(db: Fhir, data: oracle.Oracle) -> None:
    db.error("Patient/nobody/Observation", status=404)


# -- system level -------------------------------------------------------------------------------------------
def test_system_search_across_types(db: Fhir, data: oracle.Oracle) -> None:
    assert db.keys("", {"_type": "Patient,Observation", "_id": "p1,o2,e1"}) == {"Patient/p1", "Observation/o2"}
    assert db.keys("", {"_id": "p1,o2,e1"}) == {"Patient/p1", "Observation/o2", "Encounter/e1"}
    assert db.keys("", [("_type", "Patient"), ("_type", "Encounter"), ("_id", "p1,e1,o1")]) == \
        {"Patient/p1", "Encounter/e1"}


def test_system_search_on_parameters_of_every_resource(db: Fhir, data: oracle.Oracle) -> None:
    assert db.keys("", {"_tag": f"{TAGS}|vip"}) == {"Patient/p1", "Observation/o1"}
    assert db.keys("", {"_type": "Observation", "_tag": "vip"}) == {"Observation/o1"}


def test_system_search_by_post_and_with_paging(db: Fhir, data: oracle.Oracle) -> None:
    r = db.http.post("/_search", data={"_type": "Patient,Encounter", "_count": "2"})
    assert r.status_code == 200
    seen = [key(x) for x in matches(r.json())]
    nxt = link(r.json(), "next")
    while nxt:
        assert "_type=Patient" in nxt
        body = db.bundle(nxt)
        seen += [key(x) for x in matches(body)]
        nxt = link(body, "next")
    assert sorted(seen) == ["Encounter/e1", "Patient/late0", "Patient/late1", "Patient/late2",
                            "Patient/p1", "Patient/p2", "Patient/p3"]


def test_system_search_with_an_unknown_type_is_an_error(db: Fhir) -> None:
    r = db.get("", {"_type": "Patient,Nonsense"})
    assert r.status_code in (400, 404) and "Nonsense" in r.text


# -- parameters for all resources ----------------------------------------------------------------------------
def test_id(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("_id", "p1")]) == {"p1"}
    assert check(db, data, "Patient", [("_id", "p1,p3,o1")]) == {"p1", "p3"}
    assert check(db, data, "Patient", [("_id", "p1,p2"), ("_id", "p2,p3")]) == {"p2"}


def test_last_updated(db: Fhir, data: oracle.Oracle) -> None:
    late = [data.by_key[("Patient", f"late{i}")]["meta"]["lastUpdated"] for i in range(3)]
    assert check(db, data, "Patient", [("_lastUpdated", f"gt{late[0]}")]) == {"late1", "late2"}
    assert check(db, data, "Patient", [("_lastUpdated", f"ge{late[1]}")]) == {"late1", "late2"}
    assert check(db, data, "Patient", [("_lastUpdated", f"lt{late[1]}")]) >= {"late0", "p1", "p2", "p3"}
    assert check(db, data, "Patient", [("_lastUpdated", late[2])]) == {"late2"}
    assert check(db, data, "Patient", [("_lastUpdated", f"gt{late[0]}"), ("_lastUpdated", f"le{late[1]}")]) \
        == {"late1"}
    year = late[0][:4]
    assert len(check(db, data, "Patient", [("_lastUpdated", year)])) == 6
    assert check(db, data, "Patient", [("_lastUpdated", f"sa{year}")]) == set()
    assert "2023-02-30" in db.error("Patient", {"_lastUpdated": "2023-02-30"})


def test_tag_security_profile_source(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("_tag", f"{TAGS}|vip")]) == {"p1"}
    assert check(db, data, "Patient", [("_tag", "vip,test")]) == {"p1", "p2"}
    assert check(db, data, "Patient", [("_tag:not", "vip")]) == {"p2", "p3", "late0", "late1", "late2"}
    assert check(db, data, "Patient", [("_tag:missing", "false")]) == {"p1", "p2"}
    assert check(db, data, "Patient", [("_security", f"{CONF}|R")]) == {"p2"}
    assert check(db, data, "Patient", [("_profile", PROFILE)]) == {"p1"}
    assert check(db, data, "Patient", [("_source", "http://gp.example/ehr#1")]) == {"p1"}
    assert check(db, data, "Patient", [("_source:below", "http://hospital.example/")]) == {"p2"}


def test_text_searches_the_narrative(db: Fhir, data: oracle.Oracle) -> None:
    assert db.ids("Patient", {"_text": "penicillin"}) == {"p1"}
    assert db.ids("Patient", {"_text": "allerg"}) == {"p1", "p2"}
    assert db.ids("Patient", {"_text": "ALLERGY PENICILLIN"}) == {"p1"}
    assert db.ids("Patient", {"_text": "known,penicillin"}) == {"p1", "p2"}


def test_list(db: Fhir, data: oracle.Oracle) -> None:
    assert db.ids("Patient", {"_list": "shortlist"}) == {"p1", "p3"}
    assert db.ids("Observation", {"_list": "shortlist"}) == {"o2"}
    assert db.ids("Patient", {"_list": "nolist"}) == set()


def test_content_searches_the_whole_resource(db: Fhir, data: oracle.Oracle) -> None:
    assert db.ids("Patient", {"_content": "baker"}) == {"p2"}


def test_contained_resources_are_searched_with_contained_true(db: Fhir, data: oracle.Oracle) -> None:
    db.put({"resourceType": "DiagnosticReport", "id": "withpat", "status": "final", "code": {"text": "x"},
            "contained": [{"resourceType": "Patient", "id": "inner", "name": [{"family": "Insider"}]}],
            "subject": {"reference": "#inner"}})
    body = db.bundle("Patient", {"name": "insider", "_contained": "true"})
    assert [r["id"] for r in matches(body)] == ["inner"] and not outcomes(body)


# -- unknown parameters and bad values ------------------------------------------------------------------------
def test_unknown_parameters_are_ignored_and_reported(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"family": "able", "colour": "blue", "_nonsense": "1"})
    assert [r["id"] for r in matches(body)] == ["p1"]
    [oo] = outcomes(body)
    assert oo["resourceType"] == "OperationOutcome"
    text = " ".join(i.get("diagnostics", "") for i in oo["issue"])
    assert "colour" in text and "_nonsense" in text
    assert all(i["severity"] in ("warning", "information") for i in oo["issue"])


def test_unknown_parameters_are_left_out_of_the_self_link(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"family": "able", "colour": "blue"})
    used = dict(parse_qsl(urlsplit(link(body, "self") or "").query))
    assert used.get("family") == "able" and "colour" not in used


def test_lenient_handling_is_the_default_and_can_be_asked_for(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"colour": "blue"}, headers={"Prefer": "handling=lenient"})
    assert len(matches(body)) == 6 and outcomes(body)


def test_strict_handling_refuses_unknown_parameters(db: Fhir, data: oracle.Oracle) -> None:
    message = db.error("Patient", {"family": "able", "colour": "blue"}, headers={"Prefer": "handling=strict"})
    assert "colour" in message
    db.bundle("Patient", {"family": "able"}, headers={"Prefer": "handling=strict"})


def test_a_parameter_of_another_type_is_unknown_here(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Observation", {"birthdate": "2020"})
    assert outcomes(body) and len(matches(body)) == 4
    assert "birthdate" in db.error("Observation", {"birthdate": "2020"}, headers={"Prefer": "handling=strict"})


@pytest.mark.parametrize(("url", "params", "needle"), [
    ("Patient", {"birthdate": "2023-02-30"}, "2023-02-30"),
    ("Patient", {"identifier": "a|b|c"}, "a|b|c"),
    ("RiskAssessment", {"probability": "high"}, "high"),
    ("Observation", {"value-quantity": "lots||mg"}, "lots"),
    ("Observation", {"subject": "patient/1"}, "patient/1"),
    ("Patient", {"gender:missing": "maybe"}, "maybe"),
    ("Patient", {"_count": "many"}, "many"),
    ("Patient", {"_cursor": "not-a-cursor"}, "_cursor"),
])
def test_bad_values_are_400_with_a_clear_message(db: Fhir, url: str, params: dict[str, str], needle: str) -> None:
    assert needle in db.error(url, params)
    assert needle in db.error(url, params, headers={"Prefer": "handling=lenient"})


def test_an_unknown_resource_type_is_404(db: Fhir) -> None:
    db.error("Nonsense", {"name": "x"}, status=404)


@pytest.mark.parametrize(("url", "params"), [
    ("", {"_lastUpdated": "2023-02-30"}),  # system level
    ("Patient/p1/Observation", {"date": "2023-02-30"}),  # compartment
    ("Observation", {"subject:Patient.birthdate": "2023-02-30"}),  # chain
    ("Patient", {"_has:Observation:patient:date": "2023-02-30"}),  # reverse chain
    ("Observation", {"combo-code-value-quantity": "8480-6$ninety"}),  # composite part
    ("Patient", {"_id": "p1", "birthdate": "2020,2023-02-30"}),  # one of several OR values
])
def test_bad_values_are_400_wherever_they_appear(db: Fhir, data: oracle.Oracle, url: str,
                                                 params: dict[str, str]) -> None:
    message = db.error(url, params)
    assert "2023-02-30" in message or "ninety" in message


@pytest.mark.parametrize(("url", "params"), [
    ("Patient", {"family:below": "x"}),
    ("Patient", {"gender:contains": "male"}),
    ("Patient", {"identifier:exact": "x"}),
    pytest.param("Patient", {"birthdate:exact": "2020"}),
    pytest.param("Observation", {"subject:contains": "p1"}),
    pytest.param("RiskAssessment", {"probability:text": "1"}),
    pytest.param("Observation", {"value-quantity:exact": "5"}),
    pytest.param("ValueSet", {"url:contains": "acme"}),
    pytest.param("Patient", {"_id:exact": "p1"}),
])
def test_an_unsupported_modifier_is_400(db: Fhir, data: oracle.Oracle, url: str, params: dict[str, str]) -> None:
    name = next(iter(params))
    assert name.split(":")[1] in db.error(url, params)


def test_missing_on_a_composite_parameter(db: Fhir, data: oracle.Oracle) -> None:
    assert db.ids("Observation", {"code-value-quantity:missing": "false"}) == set()
    assert db.ids("Observation", {"code-value-quantity:missing": "true"}) == {"o1", "o2", "o3", "o4"}
