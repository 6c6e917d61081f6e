"""Persona tests of security labels (issue 4; hazard H048): being allowed to write a record does
not make its writer the one to lift or add its sensitivity labels, or a Patient's S-flag. On
every write path (PUT, PATCH, conditional update, transaction and batch entries) a label change
needs the labelling activity: clinicians on what their organisation wrote, privacy officers also
on the records of patients registered with their organisation. Over real HTTP against the demo
community, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from carerecord.access.audit import balp
from carerecord.access.audit_store import AuditStore
from tests.access.personas import (
    ACT,
    CONF,
    GP,
    PARAMEDIC,
    PATIENT,
    PRIVACY_OFFICER,
    RECEPTIONIST,
    WARD_NURSE,
    new_id,
    observation,
    open_encounter,
    pid,
    practice_privacy_officer,
    privacy_consent,
    put,
    same_answer,
)

GP_SOURCE = "https://gp.example/Organization/demo-org-gp0"
SEX = {"system": ACT, "code": "SEX"}
MH = {"system": ACT, "code": "MH"}
S_FLAG = {"system": CONF, "code": "R"}
PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture(scope="module")
def shared(demo: httpx.Client) -> str:
    """Person 4, whom the ambulance trust reaches (an open encounter) and has explicit consent to
    see sexual health records of: the paramedic may read, and write, the GP's labelled notes."""
    open_encounter(demo, pid(4), "demo-org-ambulance")
    put(demo, privacy_consent(pid(4), {"type": "permit", "securityLabel": [SEX]}))
    return pid(4)


def labelled_note(demo: httpx.Client, patient: str, *labels: dict[str, str]) -> dict[str, Any]:
    """A note about ``patient`` written by the first GP practice, with ``labels``."""
    return put(demo, observation(patient, meta={"source": GP_SOURCE, "security": list(labels)}))


def without_labels(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in resource.get("meta", {}).items() if k != "security"}
    return {**resource, "meta": meta}


def codes(resource: dict[str, Any]) -> set[str]:
    return {c["code"] for c in resource.get("meta", {}).get("security", [])}


def refused_at(r: httpx.Response, expression: str) -> None:
    assert r.status_code == 403, r.text
    [issue] = r.json()["issue"]
    assert issue["code"] == "forbidden" and issue["expression"] == [expression], issue


# -- another organisation's labels --------------------------------------------------------------------
def test_another_organisation_cannot_lift_a_sensitive_label_by_put_or_patch(
        demo: httpx.Client, as_: Any, shared: str) -> None:
    note = labelled_note(demo, shared, SEX)
    path, h = f"/Observation/{note['id']}", as_(PARAMEDIC)
    assert demo.get(path, headers=h).status_code == 200  # they may read it (consent) and write Observations
    refused_at(demo.put(path, headers=h, json=without_labels(note)), "Observation.meta.security")
    refused_at(demo.patch(path, headers={**h, **PATCH}, json=[{"op": "remove", "path": "/meta/security"}]),
               "Observation.meta.security")
    refused_at(demo.patch(path, headers={**h, **PATCH}, json=[{"op": "replace", "path": "/meta/security/0/code",
                                                                "value": "N"}]), "Observation.meta.security")
    refused_at(demo.put("/Observation", params={"_id": note["id"]}, headers=h, json=without_labels(note)),
               "Observation.meta.security")
    # adding one is a change of labels too
    refused_at(demo.put(path, headers=h, json={**note, "meta": {"security": [SEX, MH]}}), "Observation.meta.security")
    stored = demo.get(path).json()
    assert codes(stored) == {"SEX"} and stored["meta"]["versionId"] == note["meta"]["versionId"]
    assert demo.get(path, headers=as_(WARD_NURSE)).status_code == 404  # still hidden from everyone else
    # the labels kept, the same writer may still amend the note
    amended = demo.put(path, headers=h, json={**note, "status": "amended"})
    assert amended.status_code == 200, amended.text
    assert codes(amended.json()) == {"SEX"}


def test_another_organisation_cannot_lift_a_label_in_a_transaction_or_batch(
        demo: httpx.Client, as_: Any, shared: str) -> None:
    note = labelled_note(demo, shared, SEX)
    entry = {"resource": without_labels(note), "request": {"method": "PUT", "url": f"Observation/{note['id']}"}}
    r = demo.post("", headers=as_(PARAMEDIC), json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    refused_at(r, "Bundle.entry[0].resource.meta.security")
    patch = {"resourceType": "Binary", "contentType": "application/json-patch+json",
             "data": "W3sib3AiOiJyZW1vdmUiLCJwYXRoIjoiL21ldGEvc2VjdXJpdHkifV0="}  # [{"op":"remove","path":"/meta/security"}]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        entry, {"resource": patch, "request": {"method": "PATCH", "url": f"Observation/{note['id']}"}}]}
    r = demo.post("", headers=as_(PARAMEDIC), json=batch)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["403", "403"]
    assert codes(demo.get(f"/Observation/{note['id']}").json()) == {"SEX"}


def test_the_authoring_organisation_changes_its_own_labels(demo: httpx.Client, as_: Any, shared: str) -> None:
    note = labelled_note(demo, shared, SEX)
    path, h = f"/Observation/{note['id']}", as_(GP)
    r = demo.patch(path, headers={**h, **PATCH}, json=[{"op": "add", "path": "/meta/security/-", "value": MH}])
    assert r.status_code == 200, r.text
    assert codes(r.json()) == {"SEX", "MH"}
    r = demo.put(path, headers=h, json=without_labels(r.json()))
    assert r.status_code == 200, r.text
    assert codes(r.json()) == set() and r.json()["meta"]["source"] == GP_SOURCE
    # created with labels by a clinician of their own organisation: no change of labels to decide
    made = demo.post("/Observation", headers=as_(PARAMEDIC), json={
        k: v for k, v in observation(shared, meta={"security": [MH]}).items() if k != "id"})
    assert made.status_code == 201, made.text
    assert codes(made.json()) == {"MH"}


def test_a_label_change_to_an_invisible_record_answers_as_one_to_an_unknown_id(
        demo: httpx.Client, as_: Any, shared: str) -> None:
    hidden = labelled_note(demo, shared, MH)  # no consent to MH: hidden from the ambulance trust
    unknown = new_id("obs")
    h = as_(PARAMEDIC)

    def lift(oid: str) -> httpx.Response:
        return demo.put(f"/Observation/{oid}", headers=h, json={**without_labels(hidden), "id": oid})

    forbidden, missing = lift(hidden["id"]), lift(unknown)
    assert forbidden.status_code == 404
    same_answer(forbidden, missing, hidden["id"], unknown)
    assert codes(demo.get(f"/Observation/{hidden['id']}").json()) == {"MH"}


def test_a_refused_label_change_is_audited_as_denied(
        demo: httpx.Client, as_: Any, engine: Engine, shared: str) -> None:
    note = labelled_note(demo, shared, SEX)
    store = AuditStore(engine)
    before = store.position()
    refused_at(demo.put(f"/Observation/{note['id']}", headers=as_(PARAMEDIC), json=without_labels(note)),
               "Observation.meta.security")
    [event] = [balp(e.seq, e.recorded_us, e.patient, e.content, e.shard) for e in store.since(before)]
    assert event["outcome"] == "4" and event["action"] == "U"
    assert event["outcomeDesc"].startswith("denied")
    assert {x["what"]["reference"] for x in event["entity"] if "what" in x} >= {f"Patient/{shared}"}


def test_patients_keep_the_labels_of_their_own_records(demo: httpx.Client, as_: Any) -> None:
    note = labelled_note(demo, pid(0), MH)
    h = as_(PATIENT)
    assert demo.get(f"/Observation/{note['id']}", headers=h).status_code == 200
    refused_at(demo.put(f"/Observation/{note['id']}", headers=h, json=without_labels(note)),
               "Observation.meta.security")
    made = demo.post("/Observation", headers=h, json={k: v for k, v in observation(pid(0), meta={
        "security": [MH]}).items() if k != "id"})
    assert made.status_code == 201 and codes(made.json()) == {"MH"}


def test_a_system_client_states_labels_as_it_states_the_source(demo: httpx.Client) -> None:
    note = labelled_note(demo, pid(0), SEX)
    assert codes(put(demo, without_labels(note))) == set()


# -- the S-flag -------------------------------------------------------------------------------------------
def registered_patient(demo: httpx.Client, *labels: dict[str, str]) -> dict[str, Any]:
    """A new Patient registered with the first GP practice (created by the system client, so no
    organisation wrote it), with ``labels``."""
    body: dict[str, Any] = {"resourceType": "Patient", "id": new_id("pat"), "name": [{"family": "Flagged"}],
                            "address": [{"line": ["1 Safe Street"], "city": "Leeds"}],
                            "generalPractitioner": [{"reference": "Organization/demo-org-gp0"}]}
    if labels:
        body["meta"] = {"security": list(labels)}
    return put(demo, body)


def test_the_receptionist_updates_a_patient_but_cannot_set_or_lift_the_s_flag(demo: httpx.Client, as_: Any) -> None:
    h = as_(RECEPTIONIST)  # who registers patients at the first practice
    plain, flagged = registered_patient(demo), registered_patient(demo, S_FLAG)
    refused_at(demo.put(f"/Patient/{plain['id']}", headers=h, json={**plain, "meta": {"security": [S_FLAG]}}),
               "Patient.meta.security")
    refused_at(demo.put(f"/Patient/{flagged['id']}", headers=h, json=without_labels(flagged)), "Patient.meta.security")
    refused_at(demo.patch(f"/Patient/{flagged['id']}", headers={**h, **PATCH},
                          json=[{"op": "remove", "path": "/meta/security"}]), "Patient.meta.security")
    assert codes(demo.get(f"/Patient/{flagged['id']}").json()) == {"R"}
    assert codes(demo.get(f"/Patient/{plain['id']}").json()) == set()
    moved = demo.put(f"/Patient/{flagged['id']}", headers=h, json={**flagged, "address": [{"line": ["2 New Road"]}]})
    assert moved.status_code == 200, moved.text  # the flag kept: an ordinary update
    assert codes(moved.json()) == {"R"}
    made = demo.post("/Patient", headers=h, json={"resourceType": "Patient", "name": [{"family": "Arrived"}],
                                                  "meta": {"security": [S_FLAG]}})
    assert made.status_code == 201 and codes(made.json()) == {"R"}  # registered with the flag PDS holds


def test_the_practice_privacy_officer_sets_and_lifts_the_s_flag_and_changes_nothing_else(
        demo: httpx.Client, as_: Any) -> None:
    h = as_(practice_privacy_officer(demo))
    patient = registered_patient(demo)
    path = f"/Patient/{patient['id']}"
    r = demo.patch(path, headers={**h, **PATCH}, json=[{"op": "add", "path": "/meta/security", "value": [S_FLAG]}])
    assert r.status_code == 200, r.text
    assert codes(r.json()) == {"R"} and r.json()["address"] == patient["address"]
    assert codes(demo.get(path).json()) == {"R"}
    r = demo.post("", headers=h, json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": without_labels(demo.get(path).json()), "request": {"method": "PUT", "url": path[1:]}}]})
    assert r.status_code == 200, r.text
    assert codes(demo.get(path).json()) == set()
    # their role writes no Patient: a change of anything but the labels is refused as such
    r = demo.put(path, headers=h, json={**patient, "meta": {"security": [S_FLAG]}, "name": [{"family": "Renamed"}]})
    assert r.status_code == 403 and "may not write Patient" in r.json()["issue"][0]["diagnostics"]
    r = demo.put(path, headers=h, json={**patient, "name": [{"family": "Renamed"}]})
    assert r.status_code == 403
    assert demo.get(path).json()["name"] == patient["name"]


def test_another_organisations_privacy_officer_cannot_flag_a_patient_it_does_not_register(
        demo: httpx.Client, as_: Any) -> None:
    patient = registered_patient(demo)
    path = f"/Patient/{patient['id']}"
    h = as_(PRIVACY_OFFICER)  # the hospital trust's
    flag = {**patient, "meta": {"security": [S_FLAG]}}
    assert demo.put(path, headers=h, json=flag).status_code == 404  # no relationship: as an unknown id
    open_encounter(demo, patient["id"], "demo-org-hospital")  # now the trust reaches them, not registers
    assert demo.get(path, headers=h).status_code == 200
    refused_at(demo.put(path, headers=h, json=flag), "Patient.meta.security")
    assert codes(demo.get(path).json()) == set()
