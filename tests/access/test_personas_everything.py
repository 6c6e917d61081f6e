"""Persona tests of ``Patient/{id}/$everything`` (issue 4): the patient's own record for the
patient (the NHS App path), a proxy's granted record, what staff may see through their role,
relationship and the patient's consent; unknown and forbidden patients alike; paging, _since
and _type; audited like a search. Over real HTTP against the demo community."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine

from carerecord.access.audit import balp
from carerecord.access.audit_store import AuditStore
from tests.access.personas import (
    ACT,
    CARE_WORKER,
    GP,
    PARAMEDIC,
    PATIENT,
    PROXY,
    RECEPTIONIST,
    WARD_NURSE,
    deny_to,
    new_id,
    observation,
    open_encounter,
    pid,
    privacy_consent,
    put,
    refs,
    same_answer,
)


def pages(demo: httpx.Client, first: str, headers: dict[str, str] | None = None, **params: str) -> list[dict[str, Any]]:
    """Every entry of every page, following the next links from ``first``."""
    out: list[dict[str, Any]] = []
    r = demo.get(first, params=params, headers=headers)
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["type"] == "searchset"
        out += body.get("entry", [])
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        if not nxt:
            return out
        r = demo.get(nxt[0], headers=headers)


def everything(demo: httpx.Client, patient: str, headers: dict[str, str] | None = None, **params: str) -> list[dict[str, Any]]:
    """The resources of every page (not the OperationOutcome entries of notes and warnings)."""
    return [e["resource"] for e in pages(demo, f"/Patient/{patient}/$everything", headers, _count="1000", **params)
            if e["search"]["mode"] != "outcome"]


def test_a_patient_gets_their_whole_record_and_who_recorded_it(demo: httpx.Client, as_: Any) -> None:
    mine = everything(demo, pid(0), as_(PATIENT))
    assert refs(mine) == refs(everything(demo, pid(0)))  # all of it, as the system client sees it
    types = {x["resourceType"] for x in mine}
    assert {"Patient", "Observation", "Condition", "Encounter"} <= types
    patient = next(x for x in mine if x["resourceType"] == "Patient")
    assert {g["reference"] for g in patient["generalPractitioner"]} <= refs(mine)  # the GP, referenced
    assert "Organization" in types and "Practitioner" in types
    for other in (pid(1), pid(2)):
        assert other not in orjson.dumps(mine).decode()


def test_paging_walks_the_whole_record_once(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    whole = everything(demo, pid(0), h)
    entries = pages(demo, f"/Patient/{pid(0)}/$everything", h, _count="7")
    matches = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries if e["search"]["mode"] == "match"]
    assert len(matches) == len(set(matches))
    assert set(matches) | {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries} == refs(whole)
    first = demo.get(f"/Patient/{pid(0)}/$everything", params={"_count": "7"}, headers=h).json()
    assert len([e for e in first["entry"] if e["search"]["mode"] == "match"]) == 7
    assert {link["relation"] for link in first["link"]} >= {"self", "first", "next"}


def test_since_and_type_narrow_what_is_returned(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    typed = everything(demo, pid(0), h, _type="Encounter,Organization")  # and the Organizations they name
    assert {x["resourceType"] for x in typed} == {"Encounter", "Organization"}
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert everything(demo, pid(0), h, _since=later) == []
    now = datetime.now(UTC).replace(microsecond=0)
    before = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    fresh = demo.post("/Observation", headers=h, json={k: v for k, v in observation(pid(0)).items() if k != "id"})
    assert fresh.status_code == 201
    since = everything(demo, pid(0), h, _since=before)
    assert f"Observation/{fresh.json()['id']}" in refs(since)
    # _since narrows the patient's compartment; the reference data its resources name (the
    # organisations, practitioners, places and medicines included with them) comes as it is.
    reference = {"Organization", "Practitioner", "PractitionerRole", "Location", "Medication", "HealthcareService"}
    assert all(datetime.fromisoformat(x["meta"]["lastUpdated"]) >= now for x in since
               if x["resourceType"] not in reference), [(x["resourceType"], x["meta"]["lastUpdated"]) for x in since]
    bad = demo.get(f"/Patient/{pid(0)}/$everything", params={"_since": "yesterday"}, headers=h)
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["_since"]
    bad = demo.get(f"/Patient/{pid(0)}/$everything", params={"_type": "Nonsense"}, headers=h)
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["_type"]
    posted = demo.post(f"/Patient/{pid(0)}/$everything", headers=h, json={"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Observation"}, {"name": "_count", "valueInteger": 1000}]})
    assert posted.status_code == 200, posted.text
    assert {e["resource"]["resourceType"] for e in posted.json()["entry"]} == {"Observation"}


def test_unknown_and_forbidden_patients_look_the_same(demo: httpx.Client, as_: Any) -> None:
    stranger = put(demo, {"resourceType": "Patient", "id": new_id("stranger"), "name": [{"family": "Stranger"}]})["id"]
    for who, forbidden in ((PATIENT, pid(2)), (PROXY, pid(0)), (WARD_NURSE, pid(7)), (GP, stranger)):
        h = as_(who)
        a = demo.get(f"/Patient/{forbidden}/$everything", headers=h)
        assert a.status_code == 404, (who, a.text)
        same_answer(a, demo.get("/Patient/nobody/$everything", headers=h), forbidden, "nobody")


def test_a_proxy_gets_the_record_granted_to_them(demo: httpx.Client, as_: Any) -> None:
    theirs = everything(demo, pid(1), as_(PROXY))
    assert f"Patient/{pid(1)}" in refs(theirs) and len(theirs) > 5
    assert refs(theirs) == refs(everything(demo, pid(1)))


def test_staff_get_what_their_role_and_relationship_allow(demo: httpx.Client, as_: Any) -> None:
    desk = {x["resourceType"] for x in everything(demo, pid(0), as_(RECEPTIONIST))}
    assert "Patient" in desk and "Observation" not in desk and "Condition" not in desk
    assert desk <= {"Patient", "RelatedPerson", "Person", "Appointment", "AppointmentResponse", "Schedule", "Slot",
                    "Organization", "Practitioner", "PractitionerRole", "Location", "HealthcareService"}
    care = {x["resourceType"] for x in everything(demo, pid(3), as_(CARE_WORKER))}
    assert "Patient" in care and "Observation" not in care
    assert "Observation" in {x["resourceType"] for x in everything(demo, pid(0), as_(GP))}


def test_labels_and_consent_apply_to_everything(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(4), "demo-org-ambulance")
    sensitive = put(demo, observation(pid(4), meta={"source": "https://gp.example/Organization/demo-org-gp0",
                                                    "security": [{"system": ACT, "code": "SEX"}]}))
    key = f"Observation/{sensitive['id']}"
    assert key in refs(everything(demo, pid(4), as_(GP)))
    seen = everything(demo, pid(4), as_(PARAMEDIC))
    assert key not in refs(seen) and "Observation" in {x["resourceType"] for x in seen}
    consent = put(demo, privacy_consent(pid(4), deny_to("demo-org-ambulance", "Observation")))
    try:
        assert "Observation" not in {x["resourceType"] for x in everything(demo, pid(4), as_(PARAMEDIC))}
    finally:
        demo.delete(f"/Consent/{consent['id']}")


def test_a_narrow_token_gets_only_the_types_its_scopes_allow(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT, "patient/Patient.rs patient/Observation.rs", launch=pid(0))
    assert {x["resourceType"] for x in everything(demo, pid(0), h)} == {"Patient", "Observation"}
    assert demo.get(f"/Patient/{pid(0)}/$everything", headers=as_(PATIENT, "patient/Observation.rs",
                                                                    launch=pid(0))).status_code == 403


def test_everything_is_audited_with_the_patient_and_what_was_returned(
        demo: httpx.Client, as_: Any, engine: Engine) -> None:
    store = AuditStore(engine)
    before = store.position()
    r = demo.get(f"/Patient/{pid(0)}/$everything", params={"_count": "5"}, headers=as_(PATIENT))
    returned = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json()["entry"]}
    events = [balp(e.seq, e.recorded_us, e.patient, e.content, e.shard) for e in store.since(before)]
    [event] = [e for e in events if any(s.get("code") == "$everything" for s in e["subtype"])]
    assert event["action"] == "E" and event["outcome"] == "0"
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "PATRQT"
    what = {x["what"]["reference"] for x in event["entity"] if "what" in x}
    assert f"Patient/{pid(0)}" in what and returned <= what


def test_the_capability_statement_offers_everything(demo: httpx.Client) -> None:
    cap = demo.get("/metadata").json()
    [patient] = [r for r in cap["rest"][0]["resource"] if r["type"] == "Patient"]
    assert {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"} \
        in patient["operation"]


# -- care dates: start and end ------------------------------------------------------------------------
def care_record(demo: httpx.Client, patient: str) -> dict[str, str]:
    """Resources of ``patient`` with known care dates, all recorded now, by what each is."""
    subject = {"reference": f"Patient/{patient}"}
    snomed = {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"

    def enc(start: str, end: str | None = None) -> dict[str, Any]:
        period = {"start": start, **({"end": end} if end else {})}
        return {"resourceType": "Encounter", "id": new_id("enc"), "status": "finished" if end else "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": subject, "period": period}

    def condition(status: str, onset: str, abatement: str | None = None) -> dict[str, Any]:
        return {"resourceType": "Condition", "id": new_id("cond"), "subject": subject, "code": snomed,
                "clinicalStatus": {"coding": [{"system": clinical, "code": status}]}, "onsetDateTime": onset,
                **({"abatementDateTime": abatement} if abatement else {})}

    def prescription(status: str, authored: str) -> dict[str, Any]:
        return {"resourceType": "MedicationRequest", "id": new_id("med"), "status": status, "intent": "order",
                "medicationCodeableConcept": {"text": "Ramipril 5mg capsules"}, "subject": subject,
                "authoredOn": authored}

    made = {
        "obs 2019": observation(patient, effectiveDateTime="2019-06-01"),
        "obs 2024": observation(patient, effectiveDateTime="2024-03-01T10:00:00Z"),
        "obs 2025": observation(patient, effectiveDateTime="2025-02-01"),
        "obs undated": observation(patient),
        "open encounter": enc("2020-01-01"),
        "closed encounter": enc("2021-01-01", "2021-02-01"),
        "spanning encounter": enc("2023-12-20", "2024-01-03"),
        "active condition": condition("active", "2015-05-01"),
        "resolved condition": condition("resolved", "2015-05-01", "2016-01-01"),
        "active prescription": prescription("active", "2022-01-10"),
        "completed prescription": prescription("completed", "2022-01-10"),
        "allergy": {"resourceType": "AllergyIntolerance", "id": new_id("allergy"), "patient": subject,
                    "code": {"text": "Penicillin"}, "recordedDate": "2010-01-01"},
    }
    return {what: f"{r['resourceType']}/{put(demo, r)['id']}" for what, r in made.items()}


def test_start_and_end_select_the_care_of_a_date_range_not_when_it_was_recorded(
        demo: httpx.Client, as_: Any) -> None:
    made = care_record(demo, pid(0))
    h = as_(PATIENT)
    found = refs(everything(demo, pid(0), h, start="2024-01-01", end="2024-12-31")) & set(made.values())
    inside = {"obs 2024", "obs undated", "open encounter", "spanning encounter", "active condition",
              "active prescription", "allergy"}
    assert found == {made[w] for w in inside}, sorted(w for w, ref in made.items() if ref in found)
    assert f"Patient/{pid(0)}" in refs(everything(demo, pid(0), h, start="2024-01-01"))  # no care date: included
    only_start = refs(everything(demo, pid(0), h, start="2024")) & set(made.values())
    assert only_start == {made[w] for w in inside | {"obs 2025"}}
    only_end = refs(everything(demo, pid(0), h, end="2019-12")) & set(made.values())
    assert only_end == {made[w] for w in ("obs 2019", "obs undated", "active condition", "resolved condition",
                                           "allergy")}
    # with _since (when recorded) and _type too: each narrows on its own terms
    typed = everything(demo, pid(0), h, start="2024-01-01", _type="Observation", _since="2000-01-01T00:00:00Z")
    assert {x["resourceType"] for x in typed} == {"Observation"}
    assert refs(typed) & set(made.values()) == {made[w] for w in ("obs 2024", "obs 2025", "obs undated")}


def test_paging_keeps_the_care_dates_and_says_how_they_were_applied(demo: httpx.Client, as_: Any) -> None:
    care_record(demo, pid(0))
    h = as_(PATIENT)
    whole = everything(demo, pid(0), h, start="2024-01-01", end="2024-12-31")
    first = demo.get(f"/Patient/{pid(0)}/$everything", headers=h, params={"start": "2024-01-01", "end": "2024-12-31",
                                                                          "_count": "3"})
    assert first.status_code == 200, first.text
    [nxt] = [link["url"] for link in first.json()["link"] if link["relation"] == "next"]
    assert "start=2024-01-01" in nxt and "end=2024-12-31" in nxt and "_count=3" in nxt
    walked = pages(demo, f"/Patient/{pid(0)}/$everything", h, start="2024-01-01", end="2024-12-31", _count="3")
    matches = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in walked
               if e["search"]["mode"] == "match"]
    assert len(matches) == len(set(matches))
    assert set(matches) | refs([e["resource"] for e in walked if e["search"]["mode"] == "include"]) == refs(whole)
    assert {e["resource"]["resourceType"] for e in walked if e["search"]["mode"] == "outcome"} == {"OperationOutcome"}
    [note] = [e["resource"] for e in first.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert note["issue"][0]["severity"] == "information" and note["issue"][0]["expression"] == ["start", "end"]


def test_care_dates_go_through_the_guard(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(4), "demo-org-ambulance")
    sensitive = put(demo, observation(pid(4), effectiveDateTime="2024-05-01", meta={
        "source": "https://gp.example/Organization/demo-org-gp0", "security": [{"system": ACT, "code": "MH"}]}))
    dated = {"start": "2024-01-01", "end": "2024-12-31"}
    assert f"Observation/{sensitive['id']}" in refs(everything(demo, pid(4), as_(GP), **dated))
    assert f"Observation/{sensitive['id']}" not in refs(everything(demo, pid(4), as_(PARAMEDIC), **dated))
    h = as_(PATIENT)
    a = demo.get(f"/Patient/{pid(2)}/$everything", headers=h, params=dated)
    assert a.status_code == 404
    same_answer(a, demo.get("/Patient/nobody/$everything", headers=h, params=dated), pid(2), "nobody")


def test_bad_parameters_are_400_naming_the_parameter(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    for params, where in (({"start": "yesterday"}, "start"), ({"end": "2024-02-30"}, "end"),
                          ({"start": "2024-06-01", "end": "2024-01-01"}, "end"), ({"start": "2024-13"}, "start"),
                          ({"_count": "0"}, "_count"), ({"_count": "lots"}, "_count"),
                          ({"_type": "Observation,Nonsense"}, "_type"), ({"_since": "2024-01-01T25:00:00Z"}, "_since")):
        r = demo.get(f"/Patient/{pid(0)}/$everything", params=params, headers=h)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["issue"][0]["expression"] == [where], (params, r.text)
    twice = demo.get(f"/Patient/{pid(0)}/$everything?start=2024&start=2023", headers=h)
    assert twice.status_code == 400 and twice.json()["issue"][0]["expression"] == ["start"]
    posted = demo.post(f"/Patient/{pid(0)}/$everything", headers=h, json={"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDate": "2024-01-01"}, {"name": "end", "valueDate": "2023-01-01"}]})
    assert posted.status_code == 400 and posted.json()["issue"][0]["expression"] == ["end"]
    posted = demo.post(f"/Patient/{pid(0)}/$everything", headers=h, json={"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDate": "2024-01-01"}, {"name": "_count", "valueInteger": 1000}]})
    assert posted.status_code == 200, posted.text
