"""Community repeats (services/medicines/repeats.py) and dispensing (dispensing.py): the patient
requests, the practice approves (flags shown, critical ones need a reason) or rejects, the issue
goes to the nominated pharmacy, the pharmacy dispenses."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from carerecord.errors import Invalid, Unprocessable
from carerecord.services.medicines import dispensing, repeats
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.prescription import REPEAT_INFO
from carerecord.services.medicines.tasks import TASK_CODES
from carerecord.store.repository import Repository
from tests.services.medicines.world import GP, KB, NOW, PHARMACIST, RESOLVER, coded, read, save, step

AMLODIPINE = coded("Amlodipine 5mg tablets", "319283006", "Amlodipine 5mg tablets")


def authorisation(*, repeats_allowed: int = 5, review: str = "2027-05-01", course: str = "continuous") -> dict[str, Any]:
    """A repeat authorisation as the demo and UK Core represent it."""
    return {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "extension": [{"url": REPEAT_INFO, "extension": [{"url": "numberOfPrescriptionsIssued", "valueUnsignedInt": 0},
                                                             {"url": "authorisationExpiryDate", "valueDateTime": review}]}],
            "medicationCodeableConcept": AMLODIPINE, "subject": {"reference": "Patient/p1"},
            "authoredOn": "2026-05-01T09:00:00Z", "requester": {"reference": GP},
            "courseOfTherapyType": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy", "code": course}]},
            "dosageInstruction": [{"text": "One tablet once daily",
                                   "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
            "dispenseRequest": {"numberOfRepeatsAllowed": repeats_allowed,
                                "quantity": {"value": 28, "unit": "tablet", "system": "http://snomed.info/sct",
                                             "code": "428673006"},
                                "expectedSupplyDuration": {"value": 28, "unit": "day",
                                                           "system": "http://unitsofmeasure.org", "code": "d"}}}


def _request(repo: Repository, auth_id: str, when: Any = NOW) -> repeats.Outcome:
    return step(repo, lambda r: repeats.request_repeat(r, auth_id, "Patient/p1", when, "Running low"))


def _approve(repo: Repository, task_id: str, when: Any = NOW,
             overrides: dict[str, Override] | None = None) -> repeats.Outcome:
    return step(repo, lambda r: repeats.approve(r, task_id, GP, overrides or {}, when, kb=KB, resolver=RESOLVER))


def test_a_repeat_request_is_a_task_for_the_patients_gp_practice(community: Repository) -> None:
    auth = save(community, authorisation())
    out = _request(community, auth["id"])
    [task] = out.resources
    assert task["owner"] == {"reference": "Organization/practice"} and task["requester"] == {"reference": "Patient/p1"}
    assert out.findings == []
    queue = step(community, lambda r: r.search("Task", f"owner=Organization/practice&code={TASK_CODES}|repeat-request"))
    assert [t["id"] for t in queue] == [task["id"]]


def test_approval_issues_a_prescription_to_the_nominated_pharmacy(community: Repository) -> None:
    auth = save(community, authorisation())
    task = _request(community, auth["id"]).resources[0]
    out = _approve(community, task["id"])
    assert out.status == "approved"
    issued = out.of_type("MedicationRequest")[0]
    assert issued["intent"] == "instance-order" and issued["basedOn"] == [{"reference": f"MedicationRequest/{auth['id']}"}]
    assert issued["dispenseRequest"]["performer"]["reference"] == "Organization/community-pharmacy"
    dispense_task = [t for t in out.of_type("Task") if t["id"] != task["id"]][0]
    assert dispense_task["owner"] == {"reference": "Organization/community-pharmacy"}
    assert read(community, "Task", task["id"])["status"] == "completed"
    info = read(community, "MedicationRequest", auth["id"])["extension"][0]["extension"]
    assert {"url": "numberOfPrescriptionsIssued", "valueUnsignedInt": 1} in info


def test_a_repeat_past_its_review_date_is_flagged_and_needs_a_reason_to_approve(community: Repository) -> None:
    """Hazard H029: a repeat issued past its review date (flagged to the approver, not refused)."""
    auth = save(community, authorisation(review="2026-10-01"))
    requested = _request(community, auth["id"])
    assert [f.kind for f in requested.findings] == ["repeat-review"]
    assert requested.resources[0]["input"][0]["type"]["text"] == "repeat-review"
    task_id = requested.resources[0]["id"]
    blocked = _approve(community, task_id)
    assert blocked.status == "blocked" and blocked.resources == []
    out = _approve(community, task_id, overrides={blocked.blocked[0].key: Override(comment="Reviewed by phone today")})
    assert out.status == "approved"
    [issue] = out.of_type("DetectedIssue")
    assert "Reviewed by phone" in issue["mitigation"][0]["action"]["text"]


def test_a_repeat_with_no_issues_left_is_flagged(community: Repository) -> None:
    auth = save(community, authorisation(repeats_allowed=0))
    first = _approve(community, _request(community, auth["id"]).resources[0]["id"])
    assert first.status == "approved"
    later = NOW + timedelta(days=27)
    assert [f.kind for f in _request(community, auth["id"], later).findings] == ["repeat-exhausted"]


def test_a_repeat_requested_too_early_is_flagged_but_not_blocked(community: Repository) -> None:
    auth = save(community, authorisation())
    _approve(community, _request(community, auth["id"]).resources[0]["id"])
    early = _request(community, auth["id"], NOW + timedelta(days=10))
    assert [(f.kind, f.severity.indicator) for f in early.findings] == [("repeat-early", "warning")]
    assert _approve(community, early.resources[0]["id"], NOW + timedelta(days=10)).status == "approved"
    on_time = _request(community, auth["id"], NOW + timedelta(days=10 + 22))
    assert on_time.findings == []


def test_the_practice_rejects_with_a_reason(community: Repository) -> None:
    auth = save(community, authorisation())
    task_id = _request(community, auth["id"]).resources[0]["id"]
    with pytest.raises(Invalid):
        step(community, lambda r: repeats.reject(r, task_id, GP, "", NOW))
    out = step(community, lambda r: repeats.reject(r, task_id, GP, "Please book a blood pressure check", NOW))
    assert out.resources[0]["status"] == "rejected"
    assert out.resources[0]["statusReason"]["text"] == "Please book a blood pressure check"
    with pytest.raises(Unprocessable):
        _approve(community, task_id)


def test_an_acute_is_issued_once(community: Repository) -> None:
    auth = save(community, authorisation(course="acute"))
    assert step(community, lambda r: repeats.issue(r, auth["id"], GP, {}, NOW, kb=KB, resolver=RESOLVER)).status == "issued"
    assert read(community, "MedicationRequest", auth["id"])["status"] == "completed"
    with pytest.raises(Unprocessable):
        step(community, lambda r: repeats.issue(r, auth["id"], GP, {}, NOW, kb=KB, resolver=RESOLVER))


def test_the_pharmacy_dispenses_an_issue_once(community: Repository) -> None:
    auth = save(community, authorisation())
    out = _approve(community, _request(community, auth["id"]).resources[0]["id"])
    issued = out.of_type("MedicationRequest")[0]
    done = step(community, lambda r: dispensing.dispense(r, issued["id"], PHARMACIST, NOW + timedelta(hours=3), kb=KB, resolver=RESOLVER))
    [dispense] = done.of_type("MedicationDispense")
    assert dispense["authorizingPrescription"] == [{"reference": f"MedicationRequest/{issued['id']}"}]
    assert dispense["quantity"]["value"] == 28 and dispense["daysSupply"]["value"] == 28
    assert read(community, "MedicationRequest", issued["id"])["status"] == "completed"
    assert [t["businessStatus"]["text"] for t in done.of_type("Task")] == ["dispensed"]
    with pytest.raises(Unprocessable):
        step(community, lambda r: dispensing.dispense(r, issued["id"], PHARMACIST, NOW, kb=KB, resolver=RESOLVER))
