"""The safety checks run again after signing (services/medicines/recheck.py): at pharmacy
verification, at the issue of a repeat and at dispensing, against the record as it is then.
Rule: the brief's "every step checks allergies, drug-drug interactions, duplicate therapy and
dose limits"; hazard H032 (an allergy or interaction recorded after signing reaches the
patient through a later step)."""

from __future__ import annotations

from datetime import timedelta

from carerecord.services.medicines import dispensing, ordering, pharmacy, repeats
from carerecord.services.medicines.detected_issue import Override
from carerecord.store.repository import Repository
from tests.services.medicines.test_repeats_workflow import authorisation
from tests.services.medicines.world import (
    DOCTOR,
    GP,
    KB,
    NOW,
    PHARMACIST,
    RESOLVER,
    allergy,
    inpatient_order,
    read,
    save,
    step,
)


def _signed_amoxicillin(repo: Repository, overrides: dict[str, Override] | None = None) -> tuple[str, str]:
    draft = save(repo, inpatient_order("Amoxicillin 500mg capsules", unit="capsule"))
    out = step(repo, lambda r: ordering.sign(r, draft["id"], overrides or {}, DOCTOR, NOW, KB, RESOLVER))
    assert out.status == "signed", out.blocked
    return draft["id"], out.of_type("Task")[0]["id"]


def _verify(repo: Repository, task_id: str, overrides: dict[str, Override] | None = None) -> pharmacy.Outcome:
    return step(repo, lambda r: pharmacy.verify(r, task_id, PHARMACIST, NOW, kb=KB, resolver=RESOLVER,
                                                overrides=overrides))


def test_verification_is_blocked_by_a_penicillin_allergy_recorded_after_signing(community: Repository) -> None:
    order_id, task_id = _signed_amoxicillin(community)
    save(community, allergy("Penicillin"))
    out = _verify(community, task_id)
    assert out.status == "blocked" and out.resources == []
    assert [f.kind for f in out.blocked] == ["allergy"]
    assert not pharmacy.is_verified(read(community, "MedicationRequest", order_id))
    assert read(community, "Task", task_id)["status"] == "requested"


def test_a_pharmacist_override_with_a_reason_is_recorded_and_verification_goes_ahead(community: Repository) -> None:
    order_id, task_id = _signed_amoxicillin(community)
    save(community, allergy("Penicillin"))
    key = _verify(community, task_id).blocked[0].key
    out = _verify(community, task_id, {key: Override(comment="Rash only, discussed with the prescriber")})
    assert out.status == "verified"
    [issue] = out.of_type("DetectedIssue")
    assert issue["author"] == {"reference": PHARMACIST}
    assert "discussed with the prescriber" in issue["mitigation"][0]["action"]["text"]
    order = read(community, "MedicationRequest", order_id)
    assert {"reference": f"DetectedIssue/{issue['id']}"} in order["detectedIssue"]


def test_an_allergy_overridden_when_prescribed_is_not_asked_about_again_at_verification(
        community: Repository) -> None:
    save(community, allergy("Penicillin"))
    draft = save(community, inpatient_order("Amoxicillin 500mg capsules", unit="capsule"))
    key = step(community, lambda r: ordering.sign(r, draft["id"], {}, DOCTOR, NOW, KB, RESOLVER)).blocked[0].key
    signed = step(community, lambda r: ordering.sign(r, draft["id"], {key: Override(comment="Tolerated in 2024")},
                                                      DOCTOR, NOW, KB, RESOLVER))
    out = _verify(community, signed.of_type("Task")[0]["id"])
    assert out.status == "verified"
    assert [(f.kind, f.severity.indicator) for f in out.findings] == [("allergy", "warning")]
    assert "overridden when prescribed" in out.findings[0].summary


def test_the_order_is_not_taken_for_a_duplicate_of_itself_at_verification(community: Repository) -> None:
    _, task_id = _signed_amoxicillin(community)
    out = _verify(community, task_id)
    assert out.status == "verified" and [f.kind for f in out.findings if f.kind == "duplicate"] == []


def test_issuing_a_repeat_is_blocked_by_an_allergy_recorded_since_the_authorisation(community: Repository) -> None:
    auth = save(community, authorisation())
    save(community, allergy("Amlodipine"))
    out = step(community, lambda r: repeats.issue(r, auth["id"], GP, {}, NOW, kb=KB, resolver=RESOLVER))
    assert out.status == "blocked" and [f.kind for f in out.blocked] == ["allergy"]
    assert out.resources == []


def test_a_repeat_and_its_issues_are_not_duplicates_of_each_other(community: Repository) -> None:
    auth = save(community, authorisation())
    first = step(community, lambda r: repeats.issue(r, auth["id"], GP, {}, NOW, kb=KB, resolver=RESOLVER))
    second = step(community, lambda r: repeats.issue(r, auth["id"], GP, {}, NOW + timedelta(days=27),
                                                     kb=KB, resolver=RESOLVER))
    assert first.status == second.status == "issued"
    assert [f.kind for f in [*first.findings, *second.findings] if f.kind == "duplicate"] == []


def test_dispensing_is_blocked_by_an_allergy_recorded_after_the_issue(community: Repository) -> None:
    auth = save(community, authorisation())
    issued = step(community, lambda r: repeats.issue(r, auth["id"], GP, {}, NOW, kb=KB, resolver=RESOLVER)
                  ).of_type("MedicationRequest")[0]
    save(community, allergy("Amlodipine"))
    later = NOW + timedelta(hours=3)
    out = step(community, lambda r: dispensing.dispense(r, issued["id"], PHARMACIST, later, kb=KB, resolver=RESOLVER))
    assert out.status == "blocked" and [f.kind for f in out.blocked] == ["allergy"]
    assert read(community, "MedicationRequest", issued["id"])["status"] == "active"  # nothing handed over
    key = out.blocked[0].key
    done = step(community, lambda r: dispensing.dispense(
        r, issued["id"], PHARMACIST, later, kb=KB, resolver=RESOLVER,
        overrides={key: Override(comment="Patient says intolerance only; GP contacted")}))
    assert done.status == "dispensed" and len(done.of_type("DetectedIssue")) == 1
