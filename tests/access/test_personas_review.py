"""Persona tests of the privacy officer's queue (issue 4): self-claims and break-glass are
closed with an outcome and a note, once, by REVIEW_ACCESS only; an inappropriate access ends at
once; the review is audited; each privacy officer sees and closes the items of their own
organisation only (made by its staff, or about patients registered with it), with two
organisations' privacy officers. Over real HTTP against the demo community, whose people are
registered with the first GP practice (its privacy officer is added here)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from carerecord.access.audit import balp
from carerecord.access.audit_store import AuditStore
from tests.access.personas import (
    PARAMEDIC,
    PRIVACY_OFFICER,
    RECEPTIONIST,
    WARD_NURSE,
    Persona,
    new_id,
    pid,
    practice_privacy_officer,
    put,
    same_answer,
)


@pytest.fixture(scope="module")
def practice_officer(demo: httpx.Client) -> Persona:
    """The first GP practice's privacy officer, with whom the demo's people are registered."""
    return practice_privacy_officer(demo)


def params(**values: str) -> dict[str, Any]:
    kinds = {"grant": "valueString", "outcome": "valueCode", "note": "valueString", "reason": "valueCode",
             "text": "valueString"}
    return {"resourceType": "Parameters", "parameter": [{"name": k, kinds[k]: v} for k, v in values.items()]}


def grants(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return [{p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in g["part"]}
            for g in r.json().get("parameter", [])]


def break_glass(demo: httpx.Client, h: dict[str, str], patient: str, text: str) -> str:
    r = demo.post(f"/Patient/{patient}/$break-glass", headers=h, json=params(reason="emergency-care", text=text))
    assert r.status_code == 200, r.text
    return str(grants(r)[0]["id"])


def test_the_privacy_officer_closes_a_break_glass_with_an_outcome_and_a_note(
        demo: httpx.Client, as_: Any, engine: Engine, practice_officer: Persona) -> None:
    paramedic, officer = as_(PARAMEDIC), as_(practice_officer)
    grant = break_glass(demo, paramedic, pid(6), "Found unresponsive, no history")
    assert grant in {g["id"] for g in grants(demo.get("/$access-queue", headers=officer))}
    store = AuditStore(engine)
    before = store.position()
    r = demo.post("/$review-access", headers=officer,
                  json=params(grant=grant, outcome="appropriate", note="Crew notes confirm the emergency call"))
    [closed] = grants(r)
    assert closed["outcome"] == "appropriate" and closed["note"] == "Crew notes confirm the emergency call"
    assert closed["reviewer"] == {"reference": practice_officer.subject}
    assert grant not in {g["id"] for g in grants(demo.get("/$access-queue", headers=officer))}
    assert grant in {g["id"] for g in grants(demo.get("/$access-queue", params={"reviewed": "true"}, headers=officer))}
    [event] = [e for e in (balp(x.seq, x.recorded_us, x.patient, x.content, x.shard) for x in store.since(before))
               if any(s.get("code") == "$review-access" for s in e["subtype"])]
    assert event["outcome"] == "0" and event["purposeOfEvent"][0]["coding"][0]["code"] == "HCOMPL"
    assert {x["what"]["reference"] for x in event["entity"] if "what" in x} >= {f"Patient/{pid(6)}"}
    assert demo.get(f"/Patient/{pid(6)}", headers=paramedic).status_code == 200  # justified: access goes on


def test_an_inappropriate_access_ends_when_it_is_found(demo: httpx.Client, as_: Any, practice_officer: Persona) -> None:
    paramedic = as_(PARAMEDIC)
    grant = break_glass(demo, paramedic, pid(5), "Curious about a neighbour")
    assert demo.get(f"/Patient/{pid(5)}", headers=paramedic).status_code == 200
    r = demo.post("/$review-access", headers=as_(practice_officer),
                  json=params(grant=grant, outcome="inappropriate", note="No call-out recorded for this patient"))
    assert r.status_code == 200, r.text
    assert demo.get(f"/Patient/{pid(5)}", headers=paramedic).status_code == 404


def test_a_review_needs_a_known_grant_an_outcome_from_the_list_and_a_note(
        demo: httpx.Client, as_: Any, practice_officer: Persona) -> None:
    officer = as_(practice_officer)
    grant = break_glass(demo, as_(PARAMEDIC), pid(7), "Chest pain at the station")

    def review(**values: str) -> httpx.Response:
        return demo.post("/$review-access", headers=officer, json=params(**values))

    bad = review(grant=grant, outcome="fine", note="ok")
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["Parameters.parameter[1].valueCode"]
    empty = review(grant=grant, outcome="appropriate", note="  ")
    assert empty.status_code == 400 and empty.json()["issue"][0]["expression"] == ["Parameters.parameter[2].valueString"]
    missing = review(grant=grant, outcome="appropriate")
    assert missing.status_code == 400
    assert missing.json()["issue"][0]["expression"] == ["Parameters.parameter.where(name='note')"]
    unknown = review(grant="no-such-grant", outcome="appropriate", note="Checked")
    assert unknown.status_code == 404 and unknown.json()["issue"][0]["expression"] == ["Parameters.parameter[0].valueString"]
    assert review(grant=grant, outcome="escalated", note="Referred to the Caldicott Guardian").status_code == 200
    again = review(grant=grant, outcome="appropriate", note="Second thoughts")
    assert again.status_code == 409
    [kept] = [g for g in grants(demo.get("/$access-queue", params={"reviewed": "true"}, headers=officer)) if g["id"] == grant]
    assert kept["outcome"] == "escalated"  # the first review stands


def test_only_review_access_closes_queue_items(demo: httpx.Client, as_: Any, practice_officer: Persona) -> None:
    grant = break_glass(demo, as_(PARAMEDIC), pid(4), "Fall at home")
    for who in (PARAMEDIC, RECEPTIONIST):
        r = demo.post("/$review-access", headers=as_(who), json=params(grant=grant, outcome="appropriate", note="Mine"))
        assert r.status_code == 403, r.text
    assert grant in {g["id"] for g in grants(demo.get("/$access-queue", headers=as_(practice_officer)))}


# -- one queue per organisation -------------------------------------------------------------------------
def claim(demo: httpx.Client, h: dict[str, str], patient: str, text: str) -> str:
    r = demo.post(f"/Patient/{patient}/$claim-relationship", headers=h,
                  json=params(reason="unscheduled-care", text=text))
    assert r.status_code == 200, r.text
    return str(grants(r)[0]["id"])


def queued(demo: httpx.Client, h: dict[str, str], reviewed: bool = False) -> set[str]:
    return {str(g["id"]) for g in grants(demo.get("/$access-queue", headers=h,
                                                  params={"reviewed": "true" if reviewed else "false"}))}


def patient(demo: httpx.Client, registered: bool = True) -> str:
    """A new Patient, registered with the first GP practice or with no one (fresh, so that the
    grants made here, which outlive the module's record, reach no one another test uses)."""
    gp = {"generalPractitioner": [{"reference": "Organization/demo-org-gp0"}]} if registered else {}
    return str(put(demo, {"resourceType": "Patient", "id": new_id("pat"), "name": [{"family": "Queue"}], **gp})["id"])


def test_each_privacy_officer_sees_access_by_their_own_staff_and_to_their_own_patients(
        demo: httpx.Client, as_: Any, practice_officer: Persona) -> None:
    practice, trust = as_(practice_officer), as_(PRIVACY_OFFICER)  # the first GP practice's, the hospital trust's
    by_paramedic = break_glass(demo, as_(PARAMEDIC), patient(demo), "Collapsed in the street")  # a practice patient
    by_nurse = claim(demo, as_(WARD_NURSE), patient(demo, registered=False), "Admitted from A&E, registered nowhere")
    both = break_glass(demo, as_(WARD_NURSE), patient(demo), "Unconscious on arrival")  # trust staff, practice patient
    assert {by_paramedic, both} <= queued(demo, practice) and by_nurse not in queued(demo, practice)
    assert {by_nurse, both} <= queued(demo, trust) and by_paramedic not in queued(demo, trust)
    r = demo.post("/$review-access", headers=practice,
                  json=params(grant=by_paramedic, outcome="appropriate", note="999 call logged"))
    assert r.status_code == 200, r.text
    assert by_paramedic in queued(demo, practice, reviewed=True)
    assert by_paramedic not in queued(demo, trust, reviewed=True)


def test_a_privacy_officer_cannot_review_another_organisations_access(
        demo: httpx.Client, as_: Any, practice_officer: Persona) -> None:
    someone = patient(demo)
    grant = break_glass(demo, as_(PARAMEDIC), someone, "Breathing difficulty")
    trust = as_(PRIVACY_OFFICER)  # neither the paramedic's organisation nor the patient's practice

    def review(grant_id: str) -> httpx.Response:
        return demo.post("/$review-access", headers=trust, json=params(grant=grant_id, outcome="inappropriate",
                                                                       note="Looks wrong to me"))

    theirs, unknown = review(grant), review("no-such-grant")
    assert theirs.status_code == 404
    same_answer(theirs, unknown, grant, "no-such-grant")
    assert grant in queued(demo, as_(practice_officer))  # still open, for the practice to review
    assert demo.get(f"/Patient/{someone}", headers=as_(PARAMEDIC)).status_code == 200
