"""Persona tests of writes (issue 4, "Who may see what"): a write must not tell its caller
whether an id they may not see exists (PUT, DELETE, PATCH, conditional update, transaction
entries), the guard stamps the authoring organisation on staff writes, and each role writes
only the resource types its activities allow, on every write path. Over real HTTP against the
demo community, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine

from carerecord.access.audit import balp
from carerecord.access.audit_store import AuditStore
from carerecord.access.tokens import mint_system_token
from tests.access.personas import (
    ACT,
    CARE_WORKER,
    GP,
    PARAMEDIC,
    PATIENT,
    RECEPTIONIST,
    entries,
    new_id,
    observation,
    open_encounter,
    pid,
    put,
    same_answer,
)


def forbidden_observation(demo: httpx.Client) -> str:
    """An Observation of person 2, whom the patient persona (person 0) may not see."""
    return str(put(demo, observation(pid(2)))["id"])


def unregistered_patient(demo: httpx.Client) -> str:
    """A Patient no persona has any relationship with."""
    return str(put(demo, {"resourceType": "Patient", "id": new_id("stranger"), "name": [{"family": "Stranger"}]})["id"])


# -- no existence oracle on writes --------------------------------------------------------------------
def test_a_put_to_a_forbidden_id_answers_as_a_put_to_an_unknown_one(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    hidden, unknown = forbidden_observation(demo), new_id("obs")

    def put_as_patient(oid: str) -> httpx.Response:
        return demo.put(f"/Observation/{oid}", headers=h, json=observation(pid(0)) | {"id": oid})

    forbidden, missing = put_as_patient(hidden), put_as_patient(unknown)
    assert forbidden.status_code == 404
    same_answer(forbidden, missing, hidden, unknown)
    assert demo.get(f"/Observation/{unknown}").status_code == 404  # nothing was created
    assert demo.get(f"/Observation/{hidden}").json()["subject"]["reference"] == f"Patient/{pid(2)}"


def test_staff_cannot_create_with_an_id_of_their_choosing_either(demo: httpx.Client, as_: Any) -> None:
    h = as_(RECEPTIONIST)  # who registers patients at the first practice
    stranger, unknown = unregistered_patient(demo), new_id("pat")

    def put_as_desk(patient_id: str) -> httpx.Response:
        return demo.put(f"/Patient/{patient_id}", headers=h,
                        json={"resourceType": "Patient", "id": patient_id, "name": [{"family": "Written"}]})

    same_answer(put_as_desk(stranger), put_as_desk(unknown), stranger, unknown)
    assert put_as_desk(unknown).status_code == 404
    # their own patient (registered with them) is updated as before
    mine = demo.get(f"/Patient/{pid(0)}").json()
    assert demo.put(f"/Patient/{pid(0)}", headers=h, json=mine).status_code == 200


def test_a_system_client_creates_with_its_own_id_only_with_a_create_scope(
        demo: httpx.Client, engine: Engine, live_server: str) -> None:
    chosen = new_id("pat")
    r = demo.put(f"/Patient/{chosen}", json={"resourceType": "Patient", "id": chosen})
    assert r.status_code == 201, r.text
    updater = mint_system_token(engine, "system/Patient.ru", audience=live_server, client_id="updater")
    other = new_id("pat")
    r = demo.put(f"/Patient/{other}", json={"resourceType": "Patient", "id": other},
                 headers={"Authorization": f"Bearer {updater}"})
    assert r.status_code == 404, r.text
    r = demo.put(f"/Patient/{chosen}", json={"resourceType": "Patient", "id": chosen, "active": True},
                 headers={"Authorization": f"Bearer {updater}"})
    assert r.status_code == 200, r.text


def test_a_transaction_put_of_a_forbidden_id_answers_as_one_of_an_unknown_id(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    hidden, unknown = forbidden_observation(demo), new_id("obs")

    def bundle(oid: str) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation(pid(0)) | {"id": oid}, "request": {"method": "PUT", "url": f"Observation/{oid}"}}]}

    forbidden, missing = demo.post("", headers=h, json=bundle(hidden)), demo.post("", headers=h, json=bundle(unknown))
    assert forbidden.status_code == 404
    same_answer(forbidden, missing, hidden, unknown)
    batch = {"resourceType": "Bundle", "type": "batch",
             "entry": [bundle(hidden)["entry"][0], bundle(unknown)["entry"][0]]}
    first, second = demo.post("", headers=h, json=batch).json()["entry"]
    assert first["response"]["status"] == second["response"]["status"] == "404"
    assert demo.get(f"/Observation/{unknown}").status_code == 404


def test_a_conditional_update_naming_a_forbidden_id_answers_as_an_unknown_one(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    hidden, unknown = forbidden_observation(demo), new_id("obs")

    def conditional(oid: str) -> httpx.Response:
        return demo.put("/Observation", params={"identifier": f"urn:test|{new_id('none')}"}, headers=h,
                        json=observation(pid(0)) | {"id": oid})

    forbidden, missing = conditional(hidden), conditional(unknown)
    assert forbidden.status_code == 404
    same_answer(forbidden, missing, hidden, unknown)
    # with no id, a conditional update that matches nothing still creates, with the server's id
    created = demo.put("/Observation", params={"identifier": f"urn:test|{new_id('none')}"}, headers=h,
                       json={k: v for k, v in observation(pid(0)).items() if k != "id"})
    assert created.status_code == 201, created.text


def test_a_delete_of_a_forbidden_id_answers_as_one_of_an_unknown_id(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    hidden, unknown = forbidden_observation(demo), new_id("obs")
    forbidden, missing = demo.delete(f"/Observation/{hidden}", headers=h), demo.delete(f"/Observation/{unknown}", headers=h)
    assert forbidden.status_code == 404
    same_answer(forbidden, missing, hidden, unknown)
    assert demo.get(f"/Observation/{hidden}").status_code == 200  # still there
    own = demo.post("/Observation", headers=h, json={k: v for k, v in observation(pid(0)).items() if k != "id"})
    assert own.status_code == 201
    for _ in range(2):  # deleting what they could see is repeatable
        assert demo.delete(f"/Observation/{own.json()['id']}", headers=h).status_code == 204


def test_writes_to_a_deleted_forbidden_resource_answer_as_to_an_unknown_one(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    hidden, unknown = forbidden_observation(demo), new_id("obs")
    assert demo.delete(f"/Observation/{hidden}").status_code == 204
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    ph = {**h, "Content-Type": "application/json-patch+json"}
    same_answer(demo.patch(f"/Observation/{hidden}", headers=ph, json=patch),
                demo.patch(f"/Observation/{unknown}", headers=ph, json=patch), hidden, unknown)
    same_answer(demo.put(f"/Observation/{hidden}", headers=h, json=observation(pid(0)) | {"id": hidden}),
                demo.put(f"/Observation/{unknown}", headers=h, json=observation(pid(0)) | {"id": unknown}),
                hidden, unknown)
    same_answer(demo.delete(f"/Observation/{hidden}", headers=h), demo.delete(f"/Observation/{unknown}", headers=h),
                hidden, unknown)
    assert entries(demo.get("/Observation", params={"_id": hidden})) == []


# -- the authoring organisation ------------------------------------------------------------------------
def spoofed(patient: str) -> dict[str, Any]:
    """A sexual health note claiming to come from the ambulance trust."""
    return {k: v for k, v in observation(patient).items() if k != "id"} | {"meta": {
        "source": "https://evil.example/Organization/demo-org-ambulance",
        "security": [{"system": ACT, "code": "SEX"}]}}


def test_staff_writes_carry_their_own_organisation_whatever_the_client_claims(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(0), "demo-org-ambulance")  # the paramedic reaches person 0
    gp, paramedic = as_(GP), as_(PARAMEDIC)
    made = demo.post("/Observation", headers=gp, json=spoofed(pid(0)))
    assert made.status_code == 201, made.text
    oid = made.json()["id"]
    assert made.json()["meta"]["source"].endswith("/fhir/Organization/demo-org-gp0")
    assert demo.get(f"/Observation/{oid}", headers=paramedic).status_code == 404  # not theirs to see
    assert demo.get(f"/Observation/{oid}", headers=gp).status_code == 200
    # an update cannot move the authorship either, whoever sends it
    again = demo.get(f"/Observation/{oid}").json() | {"meta": spoofed(pid(0))["meta"]}
    assert demo.put(f"/Observation/{oid}", headers=gp, json=again).status_code == 200
    assert demo.get(f"/Observation/{oid}").json()["meta"]["source"].endswith("/Organization/demo-org-gp0")
    patch = [{"op": "add", "path": "/meta/source", "value": "Organization/demo-org-ambulance"}]
    assert demo.patch(f"/Observation/{oid}", json=patch, headers={**gp, "Content-Type": "application/json-patch+json"}
                      ).status_code == 200
    assert demo.get(f"/Observation/{oid}", headers=paramedic).status_code == 404


def test_a_transaction_entry_is_stamped_too(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(0), "demo-org-ambulance")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:4b0c5a1e-2a7d-4f0e-9d7a-0f6e5c4b3a21", "resource": spoofed(pid(0)) | {"resourceType": "Observation"},
         "request": {"method": "POST", "url": "Observation"}}]}
    r = demo.post("", headers=as_(GP), json=bundle)
    assert r.status_code == 200, r.text
    oid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    assert demo.get(f"/Observation/{oid}").json()["meta"]["source"].endswith("/Organization/demo-org-gp0")
    assert demo.get(f"/Observation/{oid}", headers=as_(PARAMEDIC)).status_code == 404
    found = entries(demo.get("/Observation", params={"_source": demo.get(f"/Observation/{oid}").json()["meta"]["source"],
                                                     "_id": oid}))
    assert [x["id"] for x in found] == [oid]  # the stamp is indexed, as written


def test_a_patients_own_write_claims_no_organisation(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(0), "demo-org-ambulance")
    made = demo.post("/Observation", headers=as_(PATIENT), json=spoofed(pid(0)))
    assert made.status_code == 201, made.text
    assert made.json()["meta"]["source"].endswith(f"/fhir/Patient/{pid(0)}")
    assert demo.get(f"/Observation/{made.json()['id']}", headers=as_(PARAMEDIC)).status_code == 404
    assert demo.get(f"/Observation/{made.json()['id']}", headers=as_(PATIENT)).status_code == 200


def test_a_system_client_keeps_the_source_it_sends(demo: httpx.Client) -> None:
    made = put(demo, observation(pid(0), meta={"source": "https://gp-system.example/Organization/demo-org-gp0"}))
    assert made["meta"]["source"] == "https://gp-system.example/Organization/demo-org-gp0"


# -- what each role may write --------------------------------------------------------------------------
def condition(patient: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}


def prescription(patient: str) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"text": "Paracetamol 500mg tablets"},
            "subject": {"reference": f"Patient/{patient}"}}


def test_a_receptionist_books_appointments_but_writes_no_clinical_record(demo: httpx.Client, as_: Any) -> None:
    h = as_(RECEPTIONIST)
    booked = demo.post("/Appointment", headers=h, json={
        "resourceType": "Appointment", "status": "booked", "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:10:00Z",
        "participant": [{"actor": {"reference": f"Patient/{pid(0)}"}, "status": "accepted"},
                        {"actor": {"reference": "PractitionerRole/demo-role-gp0-0"}, "status": "accepted"}]})
    assert booked.status_code == 201, booked.text
    for body in (condition(pid(0)), prescription(pid(0))):
        refused = demo.post(f"/{body['resourceType']}", headers=h, json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["issue"][0]["code"] == "forbidden"
    existing = put(demo, condition(pid(0)) | {"id": new_id("cond")})
    path = f"/Condition/{existing['id']}"
    assert demo.put(path, headers=h, json=existing).status_code == 403
    assert demo.patch(path, headers={**h, "Content-Type": "application/json-patch+json"},
                      json=[{"op": "replace", "path": "/code/text", "value": "x"}]).status_code == 403
    assert demo.delete(path, headers=h).status_code == 403
    assert demo.get(path).status_code == 200
    assert demo.delete("/Condition", params={"subject": f"Patient/{pid(0)}"}, headers=h).status_code == 403
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": condition(pid(0)), "request": {"method": "POST", "url": "Condition"}}]}
    refused = demo.post("", headers=h, json=bundle)
    assert refused.status_code == 403, refused.text
    assert refused.json()["issue"][0]["expression"] == ["Bundle.entry[0]"]
    bundle["type"] = "batch"
    [entry] = demo.post("", headers=h, json=bundle).json()["entry"]
    assert entry["response"]["status"] == "403"


def test_a_care_worker_records_observations_and_notes_but_does_not_prescribe(demo: httpx.Client, as_: Any) -> None:
    h = as_(CARE_WORKER)
    resident = pid(3)  # of their care home
    weight = demo.post("/Observation", headers=h, json={k: v for k, v in observation(resident).items() if k != "id"})
    assert weight.status_code == 201, weight.text
    note = demo.post("/Communication", headers=h, json={
        "resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/{resident}"},
        "payload": [{"contentString": "Ate well at lunch, walked in the garden"}]})
    assert note.status_code == 201, note.text
    assert demo.post("/MedicationRequest", headers=h, json=prescription(resident)).status_code == 403
    [order] = entries(demo.get("/MedicationRequest", params={"subject": f"Patient/{resident}", "status": "active",
                                                             "_count": "1"}))
    assert demo.get(f"/MedicationRequest/{order['id']}", headers=h).status_code == 200  # they read medicines
    assert demo.put(f"/MedicationRequest/{order['id']}", headers=h, json=order).status_code == 403
    stopped = demo.post(f"/MedicationRequest/{order['id']}/$stop", headers=h, json={"resourceType": "Parameters", "parameter": [
        {"name": "reason", "valueString": "Refusing it"}]})
    assert stopped.status_code == 403, stopped.text
    assert demo.get(f"/MedicationRequest/{order['id']}").json()["status"] == order["status"]


def test_patients_write_their_own_record_but_no_reference_data(demo: httpx.Client, as_: Any) -> None:
    h = as_(PATIENT)
    org = demo.get("/Organization/demo-org-gp0").json()
    assert demo.put("/Organization/demo-org-gp0", headers=h, json=org | {"name": "Renamed"}).status_code == 403
    assert demo.post("/Practitioner", headers=h, json={"resourceType": "Practitioner", "name": [{"family": "Fake"}]}
                     ).status_code == 403
    assert demo.get("/Organization/demo-org-gp0").json()["name"] == org["name"]


def test_a_refused_write_is_audited_as_denied(demo: httpx.Client, as_: Any, engine: Engine) -> None:
    store = AuditStore(engine)
    before = store.position()
    assert demo.post("/Condition", headers=as_(RECEPTIONIST), json=condition(pid(0))).status_code == 403
    [event] = [balp(e.seq, e.recorded_us, e.patient, e.content, e.shard) for e in store.since(before)]
    assert event["outcome"] == "4" and event["action"] == "C"
    assert event["outcomeDesc"].startswith("denied")
    assert {x["what"]["reference"] for x in event["entity"] if "what" in x} == {f"Patient/{pid(0)}"}
