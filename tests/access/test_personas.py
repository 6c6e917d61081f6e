"""The adversarial persona suite of issue 4 (part 2, the guard) over real HTTP against the demo
community: each persona tries what they should and should not reach, on every path (read,
search, chains, _has, _include, _revinclude, page links, compartments, transactions, patches,
history), and unknown and forbidden answer alike. Runs on SQLite and PostgreSQL.

The module loads the demo once; tests that change data (consent, labels, flags) each work on
their own person or their own added resources, so they do not depend on each other."""

from __future__ import annotations

from typing import Any

import httpx

from tests.access.personas import (
    ACT,
    CARE_WORKER,
    CONF,
    GP,
    OTHER_PATIENT,
    PARAMEDIC,
    PATIENT,
    PHARMACIST,
    PRIVACY_OFFICER,
    PROXY,
    RECEPTIONIST,
    WARD_NURSE,
    deny_to,
    entries,
    new_id,
    observation,
    open_encounter,
    pid,
    practice_privacy_officer,
    privacy_consent,
    put,
    refs,
    same_answer,
)


# -- relationships -------------------------------------------------------------------------------
def test_the_gp_reads_registered_patients_and_their_records(demo: httpx.Client, as_: Any) -> None:
    h = as_(GP)
    assert demo.get(f"/Patient/{pid(0)}", headers=h).status_code == 200
    assert entries(demo.get("/Observation", params={"subject": f"Patient/{pid(4)}"}, headers=h))
    assert demo.get(f"/Patient/{pid(0)}", headers=h).headers["cache-control"] == "no-store"


def test_a_care_worker_cannot_read_a_resident_of_another_home(demo: httpx.Client, as_: Any) -> None:
    other = new_id("carehome")
    resident = new_id("resident")
    put(demo, {"resourceType": "Organization", "id": other, "name": "Another care home"})
    put(demo, {"resourceType": "Patient", "id": resident, "name": [{"family": "Elsewhere"}]})
    put(demo, {"resourceType": "EpisodeOfCare", "id": new_id("eoc"), "status": "active",
               "patient": {"reference": f"Patient/{resident}"}, "managingOrganization": {"reference": f"Organization/{other}"}})
    plan = put(demo, {"resourceType": "CarePlan", "id": new_id("plan"), "status": "active", "intent": "plan",
                      "subject": {"reference": f"Patient/{resident}"}})
    h = as_(CARE_WORKER)
    assert demo.get(f"/Patient/{resident}", headers=h).status_code == 404
    assert demo.get(f"/CarePlan/{plan['id']}", headers=h).status_code == 404
    assert entries(demo.get("/CarePlan", params={"subject": f"Patient/{resident}"}, headers=h)) == []
    # their own resident (person 3, an active episode at their home): the social care record only
    assert demo.get(f"/Patient/{pid(3)}", headers=h).status_code == 200
    assert entries(demo.get("/AllergyIntolerance", params={"patient": pid(3)}, headers=h))
    assert demo.get("/Observation", params={"subject": f"Patient/{pid(3)}"}, headers=h).status_code == 403


def test_a_receptionist_sees_demographics_and_appointments_but_no_clinical_record(demo: httpx.Client, as_: Any) -> None:
    h = as_(RECEPTIONIST)
    assert demo.get(f"/Patient/{pid(0)}", headers=h).status_code == 200
    assert entries(demo.get("/Appointment", params={"patient": pid(0)}, headers=h))
    [obs] = entries(demo.get("/Observation", params={"subject": f"Patient/{pid(0)}", "_count": "1"}))
    assert demo.get(f"/Observation/{obs['id']}", headers=h).status_code == 403
    assert demo.get("/Observation", headers=h).status_code == 403
    found = entries(demo.get("/Patient", params={"_id": pid(0), "_revinclude": "Observation:subject"}, headers=h))
    assert {x["resourceType"] for x in found} == {"Patient"}


def test_the_ward_nurse_and_the_pharmacist_reach_no_one_without_a_relationship(demo: httpx.Client, as_: Any) -> None:
    for who in (WARD_NURSE, PHARMACIST, PARAMEDIC):
        assert demo.get(f"/Patient/{pid(7)}", headers=as_(who)).status_code == 404
        assert entries(demo.get("/Patient", headers=as_(who))) == []


def test_an_open_encounter_gives_the_paramedic_a_relationship(demo: httpx.Client, as_: Any) -> None:
    h = as_(PARAMEDIC)
    assert demo.get(f"/Patient/{pid(7)}", headers=h).status_code == 404
    open_encounter(demo, pid(7), "demo-org-ambulance")
    assert demo.get(f"/Patient/{pid(7)}", headers=h).status_code == 200
    assert refs(entries(demo.get("/Patient", headers=h))) == {f"Patient/{pid(7)}"}


def test_the_privacy_officer_sees_no_clinical_record_without_a_relationship(demo: httpx.Client, as_: Any) -> None:
    assert demo.get(f"/Patient/{pid(0)}", headers=as_(PRIVACY_OFFICER)).status_code == 404


# -- patients and proxies --------------------------------------------------------------------------
def test_a_patient_cannot_reach_another_patient_by_chain_include_has_or_compartment(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    assert entries(demo.get("/Observation", params={"subject.name": "Martin"}, headers=h)) == []
    assert entries(demo.get("/Observation", params={"subject": f"Patient/{pid(2)}"}, headers=h)) == []
    assert refs(entries(demo.get("/Patient", params={"_has:Observation:subject:status": "final"}, headers=h))) \
        == {f"Patient/{pid(0)}"}
    included = entries(demo.get("/Observation", params={"_include": "Observation:subject", "_count": "100"}, headers=h),
                       "include")
    assert refs(included) == {f"Patient/{pid(0)}"}
    everything = entries(demo.get("/Patient", params={"_revinclude": "*", "_count": "100"}, headers=h))
    assert all(pid(2) not in str(x) for x in everything)
    assert demo.get(f"/Patient/{pid(2)}/Observation", headers=h).status_code == 404
    system = str(demo.base_url).rstrip("/")  # whole-system search: [base]?_type=
    everyone = entries(demo.get(system, params={"_type": "Observation,Patient", "_count": "200"}, headers=h))
    assert everyone and all(pid(2) not in str(x) for x in everyone)


def test_a_tampered_page_link_reaches_nothing_new(demo: httpx.Client, as_: Any) -> None:
    page = demo.get("/Observation", params={"subject": f"Patient/{pid(2)}", "_count": "1"})
    [nxt] = [link["url"] for link in page.json()["link"] if link["relation"] == "next"]
    assert entries(demo.get(nxt, headers=as_(PATIENT))) == []
    mine = demo.get("/Observation", params={"_count": "1"}, headers=as_(PATIENT))
    [own_next] = [link["url"] for link in mine.json()["link"] if link["relation"] == "next"]
    tampered = own_next.replace("_count=1", f"_count=1&subject=Patient/{pid(2)}")
    assert entries(demo.get(tampered, headers=as_(PATIENT))) == []


def test_a_proxy_reaches_the_patient_granted_and_no_one_else(demo: httpx.Client, as_: Any) -> None:
    h = as_(PROXY)
    assert demo.get(f"/Patient/{pid(1)}", headers=h).status_code == 200
    assert demo.get(f"/Patient/{pid(0)}", headers=h).status_code == 404
    assert refs(entries(demo.get("/Patient", headers=h))) == {f"Patient/{pid(1)}"}


def test_a_token_for_one_patient_used_with_anothers_id_finds_nothing(demo: httpx.Client, as_: Any) -> None:
    h = as_(OTHER_PATIENT)
    same_answer(demo.get(f"/Patient/{pid(0)}", headers=h), demo.get("/Patient/no-such-person", headers=h),
                pid(0), "no-such-person")
    assert demo.get(f"/Patient/{pid(0)}/_history", headers=h).status_code == 404
    launched = as_(GP, "patient/*.rs launch", launch=pid(0))  # an app launched for person 0
    assert demo.get(f"/Patient/{pid(0)}", headers=launched).status_code == 200
    assert demo.get(f"/Patient/{pid(4)}", headers=launched).status_code == 404


def test_unknown_and_forbidden_look_the_same(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    [obs] = entries(demo.get("/Observation", params={"subject": f"Patient/{pid(2)}", "_count": "1"}))
    same_answer(demo.get(f"/Observation/{obs['id']}", headers=h), demo.get("/Observation/nope", headers=h),
                obs["id"], "nope")
    same_answer(demo.get(f"/Observation/{obs['id']}/_history/1", headers=h),
                demo.get("/Observation/nope/_history/1", headers=h), obs["id"], "nope")
    a = demo.get("/Observation", params={"subject": f"Patient/{pid(2)}", "_total": "accurate"}, headers=h)
    b = demo.get("/Observation", params={"subject": "Patient/nope", "_total": "accurate"}, headers=h)
    assert a.json().get("total") == b.json().get("total") == 0
    same_answer(demo.get(f"/Patient/{pid(2)}/Observation", headers=h), demo.get("/Patient/nope/Observation", headers=h),
                pid(2), "nope")


# -- writes and transactions -------------------------------------------------------------------------
def test_a_transaction_conditional_reference_to_a_forbidden_patient_fails_as_for_an_unknown_one(
        demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    nhs = entries(demo.get(f"/Patient?_id={pid(2)}"))[0]["identifier"][0]["value"]

    def bundle(ref: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b9a3b38-9d4a-4f0e-8c3e-1a2b3c4d5e6f",
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Weight"},
                          "subject": {"reference": ref}},
             "request": {"method": "POST", "url": "Observation"}}]}

    forbidden = demo.post("", json=bundle(f"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"), headers=h)
    unknown = demo.post("", json=bundle("Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9999999999"), headers=h)
    assert forbidden.status_code >= 400
    same_answer(forbidden, unknown, nhs, "9999999999")
    same_answer(demo.post("", json=bundle(f"Patient/{pid(2)}"), headers=h),
                demo.post("", json=bundle("Patient/nope"), headers=h), pid(2), "nope")
    assert entries(demo.get("/Observation", params={"subject": f"Patient/{pid(2)}", "code:text": "Weight"})) == []


def test_a_patch_cannot_move_a_resource_to_another_patient(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    r = demo.post("/Observation", json={k: v for k, v in observation(pid(0)).items() if k != "id"}, headers=h)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]

    def move(to: str) -> httpx.Response:
        return demo.patch(f"/Observation/{oid}", headers={**h, "Content-Type": "application/json-patch+json"},
                          json=[{"op": "replace", "path": "/subject/reference", "value": to}])

    moved, unknown = move(f"Patient/{pid(2)}"), move("Patient/nope")
    assert moved.status_code == 400
    same_answer(moved, unknown, pid(2), "nope")
    assert demo.get(f"/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid(0)}"
    # nor may a patient write into another's record directly
    assert demo.put(f"/Patient/{pid(2)}", json={"resourceType": "Patient", "id": pid(2)}, headers=h).status_code == 404


def test_a_bundle_get_entry_is_guarded_too(demo: httpx.Client, as_: Any) -> None:
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{pid(2)}"}},
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{pid(2)}"}}]}
    r = demo.post("", json=batch, headers=as_(PATIENT))
    assert r.status_code == 200, r.text
    first, second = r.json()["entry"]
    assert first["response"]["status"].startswith("404")
    assert second["resource"].get("entry", []) == []


def test_type_and_system_history_are_for_system_clients_only(demo: httpx.Client, as_: Any) -> None:
    assert demo.get("/Observation/_history", headers=as_(GP)).status_code == 403
    assert demo.get("/_history", headers=as_(PATIENT)).status_code == 403
    assert demo.get("/Observation/_history").status_code == 200


# -- consent, labels, flags, break-glass -----------------------------------------------------------------
def test_consent_withdrawn_then_a_cached_read_is_refused_not_confirmed(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(5), "demo-org-ambulance")
    h = as_(PARAMEDIC)
    first = demo.get(f"/Patient/{pid(5)}", headers=h)
    assert first.status_code == 200
    assert first.headers["cache-control"] == "no-store"
    consent = put(demo, privacy_consent(pid(5), deny_to("demo-org-ambulance")))
    again = demo.get(f"/Patient/{pid(5)}", headers={**h, "If-None-Match": first.headers["etag"]})
    assert again.status_code == 404
    assert demo.get(f"/Patient/{pid(5)}", headers=as_(GP)).status_code == 200  # their GP is not dissented from
    demo.delete(f"/Consent/{consent['id']}")
    assert demo.get(f"/Patient/{pid(5)}", headers=h).status_code == 200  # withdrawn dissent: at once


def test_a_sensitive_record_needs_the_authoring_organisation_or_explicit_consent(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(4), "demo-org-ambulance")
    sensitive = put(demo, observation(pid(4), meta={"source": "https://gp.example/Organization/demo-org-gp0",
                                                    "security": [{"system": ACT, "code": "SEX"}]}))
    path = f"/Observation/{sensitive['id']}"
    assert demo.get(path, headers=as_(GP)).status_code == 200
    assert demo.get(path, headers=as_(PARAMEDIC)).status_code == 404
    assert sensitive["id"] not in str(entries(demo.get("/Observation", params={"subject": f"Patient/{pid(4)}"},
                                                      headers=as_(PARAMEDIC))))
    put(demo, privacy_consent(pid(4), {"type": "permit", "securityLabel": [{"system": ACT, "code": "SEX"}]}))
    assert demo.get(path, headers=as_(PARAMEDIC)).status_code == 200


def test_break_glass_needs_a_reason_and_is_listed_for_the_privacy_officer(demo: httpx.Client, as_: Any) -> None:
    h = as_(PARAMEDIC)
    patient = pid(6)
    assert demo.get(f"/Patient/{patient}", headers=h).status_code == 404

    def glass(reason: str, text: str, who: dict[str, str] = h) -> httpx.Response:
        return demo.post(f"/Patient/{patient}/$break-glass", headers=who, json={"resourceType": "Parameters", "parameter": [
            {"name": "reason", "valueCode": reason}, {"name": "text", "valueString": text}]})

    assert glass("emergency-care", "  ").status_code == 400
    assert glass("because", "I want to").status_code == 400
    assert glass("emergency-care", "Unconscious at home", as_(RECEPTIONIST)).status_code == 403
    assert demo.get(f"/Patient/{patient}", headers=h).status_code == 404
    assert glass("emergency-care", "Unconscious at home, no history available").status_code == 200
    assert demo.get(f"/Patient/{patient}", headers=h).status_code == 200
    queue = demo.get("/$access-queue", headers=as_(practice_privacy_officer(demo)))  # the patient's practice's
    assert queue.status_code == 200
    assert "Unconscious at home, no history available" in queue.text and patient in queue.text
    assert demo.get("/$access-queue", headers=as_(RECEPTIONIST)).status_code == 403


def test_a_restricted_patients_address_never_leaks_through_include_bundles_or_narrative(
        demo: httpx.Client, as_: Any) -> None:
    patient = demo.get(f"/Patient/{pid(6)}").json()
    address = patient["address"][0]["line"][0]
    patient["meta"] = {"security": [{"system": CONF, "code": "R"}]}
    patient["text"] = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Lives at {address}</div>'}
    put(demo, patient)
    h = as_(PARAMEDIC)
    glass = demo.post(f"/Patient/{pid(6)}/$break-glass", headers=h, json={"resourceType": "Parameters", "parameter": [
        {"name": "reason", "valueCode": "emergency-care"}, {"name": "text", "valueString": "Collapsed in the street"}]})
    assert glass.status_code == 200
    paths = [demo.get(f"/Patient/{pid(6)}", headers=h),
             demo.get("/Observation", params={"subject": f"Patient/{pid(6)}", "_include": "Observation:subject"}, headers=h),
             demo.get("/Patient", params={"_id": pid(6)}, headers=h),
             demo.post("", headers=h, json={"resourceType": "Bundle", "type": "batch", "entry": [
                 {"request": {"method": "GET", "url": f"Patient/{pid(6)}"}}]})]
    for r in paths:
        assert r.status_code == 200, r.text
        assert address not in r.text
        assert "REDACTED" in r.text
    assert address in demo.get(f"/Patient/{pid(6)}", headers=as_(GP)).text  # their own GP sees it


def test_the_system_client_keeps_full_access(demo: httpx.Client) -> None:
    assert demo.get(f"/Patient/{pid(2)}").status_code == 200
    assert len(entries(demo.get("/Patient", params={"_count": "100"}))) >= 8


# -- contained resources (search.html#contained) -----------------------------------------------------
def report_containing(patient: str, text: str, **extra: Any) -> dict[str, Any]:
    """A DiagnosticReport about ``patient`` holding an Observation and a Patient of its own."""
    return {"resourceType": "DiagnosticReport", "id": new_id("dr"), "status": "final", "code": {"text": "Report"},
            "subject": {"reference": f"Patient/{patient}"}, "result": [{"reference": "#o"}],
            "performer": [{"reference": "#author"}],
            "contained": [{"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": text}},
                          {"resourceType": "Practitioner", "id": "author", "name": [{"family": text}]}],
            **extra}


def contained_found(demo: httpx.Client, h: dict[str, str], res_type: str, params: dict[str, str]) -> set[str]:
    out = set()
    for kind in ("contained", "container"):
        r = demo.get(f"/{res_type}", params={**params, "_contained": "true", "_containedType": kind}, headers=h)
        out |= {e["fullUrl"].rsplit("/", 2)[-1] for e in r.json().get("entry", [])
                if e.get("search", {}).get("mode") == "match"}
        assert r.status_code == 200, r.text
    return out


def test_a_contained_resource_is_found_only_by_who_may_see_its_container(demo: httpx.Client, as_: Any) -> None:
    """Same compartment, same labels, and the container's type: a caller who cannot see the
    container cannot find what it contains, alone or as the container."""
    mine = put(demo, report_containing(pid(0), "Inside-mine"))
    theirs = put(demo, report_containing(pid(2), "Inside-theirs"))
    h = as_(PATIENT)
    assert contained_found(demo, h, "Observation", {"code:text": "inside-mine"}) == {
        f"{mine['id']}#o", mine["id"]}
    assert contained_found(demo, h, "Observation", {"code:text": "inside-theirs"}) == set()
    assert contained_found(demo, as_(GP), "Observation", {"code:text": "inside-theirs"}) == {
        f"{theirs['id']}#o", theirs["id"]}  # their GP does see it
    # A sensitive container (a label no consent of this suite shares): the paramedic may see
    # the patient but not the labelled report, so not what it contains either.
    open_encounter(demo, pid(4), "demo-org-ambulance")
    labelled = put(demo, report_containing(pid(4), "Inside-labelled", meta={
        "source": "https://gp.example/Organization/demo-org-gp0", "security": [{"system": ACT, "code": "PSY"}]}))
    assert contained_found(demo, as_(GP), "Practitioner", {"family": "inside-labelled"}) == {
        f"{labelled['id']}#author", labelled["id"]}
    assert contained_found(demo, as_(PARAMEDIC), "Practitioner", {"family": "inside-labelled"}) == set()
    # A type the role may not read: the receptionist reads Practitioners, not DiagnosticReports.
    assert contained_found(demo, as_(RECEPTIONIST), "Practitioner", {"family": "inside-mine"}) == set()
    assert demo.get("/Practitioner", headers=as_(RECEPTIONIST)).status_code == 200  # the type itself is readable
