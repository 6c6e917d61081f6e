"""Prescribing workflow (services/medicines/ordering.py): checks on select, signing with the
critical-finding gate and recorded overrides, the pharmacy queue, stopping and changing."""

from __future__ import annotations

import pytest

from carerecord.errors import Invalid, Unprocessable
from carerecord.services.medicines import ordering
from carerecord.services.medicines.detected_issue import OVERRIDE_REASONS, Override
from carerecord.store.repository import Repository
from tests.services.medicines.world import (
    DOCTOR,
    KB,
    NOW,
    RESOLVER,
    allergy,
    inpatient_order,
    read,
    save,
    step,
)

REASON = {"system": OVERRIDE_REASONS, "code": "tolerated-before", "display": "Patient has tolerated this before"}


def _sign(repo: Repository, order_id: str, overrides: dict[str, Override] | None = None) -> ordering.Outcome:
    return step(repo, lambda r: ordering.sign(r, order_id, overrides or {}, DOCTOR, NOW, KB, RESOLVER))


def test_checking_a_draft_writes_nothing_and_returns_findings(community: Repository) -> None:
    """Rule: order-select shows findings without writing (issue 5, checks on select)."""
    save(community, allergy("Penicillin"))
    draft = save(community, inpatient_order("Amoxicillin 500mg capsules", unit="capsule"))
    findings = step(community, lambda r: ordering.check_draft(r, draft["id"], KB, RESOLVER, NOW))
    assert [f.kind for f in findings if f.blocks_signing] == ["allergy"]
    assert read(community, "MedicationRequest", draft["id"])["status"] == "draft"


def test_a_clean_inpatient_order_is_signed_and_queued_for_pharmacy_verification(community: Repository) -> None:
    draft = save(community, inpatient_order("Paracetamol 500mg tablets", dose=2))
    out = _sign(community, draft["id"])
    assert out.status == "signed" and not out.blocked
    assert read(community, "MedicationRequest", draft["id"])["status"] == "active"
    [task] = out.of_type("Task")
    assert task["owner"] == {"reference": "Organization/hospital-pharmacy"}
    assert task["focus"] == {"reference": f"MedicationRequest/{draft['id']}"} and task["status"] == "requested"


def test_amoxicillin_for_a_penicillin_allergic_patient_is_blocked_and_nothing_is_written(community: Repository) -> None:
    """Rule: critical findings block signing unless overridden with a reason."""
    save(community, allergy("Penicillin"))
    draft = save(community, inpatient_order("Amoxicillin 500mg capsules", unit="capsule"))
    out = _sign(community, draft["id"])
    assert out.status == "blocked" and [f.kind for f in out.blocked] == ["allergy"]
    assert out.resources == []
    assert read(community, "MedicationRequest", draft["id"])["status"] == "draft"


def test_an_override_without_a_reason_still_blocks(community: Repository) -> None:
    save(community, allergy("Penicillin"))
    draft = save(community, inpatient_order("Amoxicillin 500mg capsules", unit="capsule"))
    key = _sign(community, draft["id"]).blocked[0].key
    assert _sign(community, draft["id"], {key: Override()}).status == "blocked"


def test_an_override_with_a_reason_signs_and_is_recorded_as_a_countable_detected_issue(community: Repository) -> None:
    """Rule: overrides are written as DetectedIssue with mitigation and are countable."""
    save(community, allergy("Penicillin"))
    draft = save(community, inpatient_order("Amoxicillin 500mg capsules", unit="capsule"))
    key = _sign(community, draft["id"]).blocked[0].key
    out = _sign(community, draft["id"], {key: Override(REASON, "Had amoxicillin in 2024 without reaction")})
    assert out.status == "signed"
    [issue] = out.of_type("DetectedIssue")
    assert issue["mitigation"][0]["action"]["coding"][0]["code"] == "tolerated-before"
    assert issue["author"] == {"reference": DOCTOR}
    signed = read(community, "MedicationRequest", draft["id"])
    assert signed["detectedIssue"] == [{"reference": f"DetectedIssue/{issue['id']}"}]
    counted = step(community, lambda r: r.search("DetectedIssue", f"implicated=MedicationRequest/{draft['id']}"))
    assert [d["id"] for d in counted] == [issue["id"]]


def test_two_orders_signed_one_after_the_other_are_checked_against_each_other(community: Repository) -> None:
    """Rule: two orders signed at the same moment for one patient are both checked (no race):
    signing locks the patient, and the second sees the first as a current medicine."""
    warfarin = save(community, inpatient_order("Warfarin 1mg tablets"))
    aspirin = save(community, inpatient_order("Aspirin 75mg dispersible tablets"))
    assert _sign(community, warfarin["id"]).status == "signed"
    second = _sign(community, aspirin["id"])
    assert second.status == "blocked"
    assert [f.kind for f in second.blocked] == ["interaction"]
    assert f"MedicationRequest/{warfarin['id']}" in {e.reference for e in second.blocked[0].evidence}


def test_only_a_draft_can_be_signed(community: Repository) -> None:
    draft = save(community, inpatient_order("Paracetamol 500mg tablets"))
    _sign(community, draft["id"])
    with pytest.raises(Unprocessable) as caught:
        _sign(community, draft["id"])
    assert caught.value.issues[0].expression == ("MedicationRequest.status",)


def test_an_inpatient_order_without_a_pharmacy_cannot_be_signed(community: Repository) -> None:
    order = inpatient_order("Paracetamol 500mg tablets")
    del order["dispenseRequest"]
    draft = save(community, order)
    with pytest.raises(Invalid) as caught:
        _sign(community, draft["id"])
    assert caught.value.issues[0].expression == ("MedicationRequest.dispenseRequest.performer",)


def test_stopping_needs_a_reason_and_cancels_the_pending_verification(community: Repository) -> None:
    draft = save(community, inpatient_order("Paracetamol 500mg tablets"))
    task = _sign(community, draft["id"]).of_type("Task")[0]
    with pytest.raises(Invalid):
        step(community, lambda r: ordering.stop(r, draft["id"], " ", DOCTOR, NOW))
    out = step(community, lambda r: ordering.stop(r, draft["id"], "No longer in pain", DOCTOR, NOW))
    stopped = read(community, "MedicationRequest", draft["id"])
    assert stopped["status"] == "stopped" and stopped["statusReason"]["text"] == "No longer in pain"
    assert read(community, "Task", task["id"])["status"] == "cancelled"
    assert out.status == "stopped"


def test_changing_an_order_signs_the_new_one_with_prior_prescription_and_stops_the_old(community: Repository) -> None:
    old = save(community, inpatient_order("Paracetamol 500mg tablets", dose=2))
    _sign(community, old["id"])
    new = inpatient_order("Paracetamol 500mg tablets", dose=1)
    out = step(community, lambda r: ordering.change(r, old["id"], new, {}, DOCTOR, NOW, KB, RESOLVER))
    assert out.status == "changed"
    made = out.of_type("MedicationRequest")[0]
    assert made["status"] == "active" and made["priorPrescription"] == {"reference": f"MedicationRequest/{old['id']}"}
    assert not [f for f in out.findings if f.kind == "duplicate"]  # not checked against the order it replaces
    assert read(community, "MedicationRequest", old["id"])["status"] == "stopped"


def test_a_blocked_change_leaves_the_old_order_running(community: Repository) -> None:
    save(community, allergy("Penicillin"))
    old = save(community, inpatient_order("Paracetamol 500mg tablets"))
    _sign(community, old["id"])
    out = step(community, lambda r: ordering.change(r, old["id"], inpatient_order("Amoxicillin 500mg capsules"),
                                                    {}, DOCTOR, NOW, KB, RESOLVER))
    assert out.status == "blocked"
    assert read(community, "MedicationRequest", old["id"])["status"] == "active"
