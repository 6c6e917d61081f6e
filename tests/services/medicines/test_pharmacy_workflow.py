"""Pharmacy verification (services/medicines/pharmacy.py): the queue per organisation, verify,
query back to the prescriber, reject with a reason."""

from __future__ import annotations

import pytest

from carerecord.errors import Invalid, Unprocessable
from carerecord.services.medicines import ordering, pharmacy
from carerecord.services.medicines.tasks import TASK_CODES
from carerecord.store.repository import Repository
from tests.services.medicines.world import (
    DOCTOR,
    KB,
    NOW,
    PHARMACIST,
    RESOLVER,
    inpatient_order,
    read,
    save,
    step,
)


def _signed(repo: Repository) -> tuple[str, str]:
    draft = save(repo, inpatient_order("Paracetamol 500mg tablets", dose=2))
    out = step(repo, lambda r: ordering.sign(r, draft["id"], {}, DOCTOR, NOW, KB, RESOLVER))
    return draft["id"], out.of_type("Task")[0]["id"]


def test_the_pharmacy_queue_is_a_search_of_its_requested_verify_tasks(community: Repository) -> None:
    order_id, task_id = _signed(community)
    queue = step(community, lambda r: r.search(
        "Task", f"owner=Organization/hospital-pharmacy&code={TASK_CODES}|verify&status=requested"))
    assert [t["id"] for t in queue] == [task_id]
    other = step(community, lambda r: r.search("Task", "owner=Organization/community-pharmacy&status=requested"))
    assert other == []


def test_verifying_completes_the_task_and_marks_the_order_verified(community: Repository) -> None:
    order_id, task_id = _signed(community)
    out = step(community, lambda r: pharmacy.verify(r, task_id, PHARMACIST, NOW, kb=KB, resolver=RESOLVER))
    assert out.status == "verified"
    assert pharmacy.is_verified(read(community, "MedicationRequest", order_id))
    task = read(community, "Task", task_id)
    assert task["status"] == "completed" and task["businessStatus"]["text"] == "verified"
    assert task["note"][0]["authorString"] == PHARMACIST


def test_a_query_goes_back_to_the_prescriber_and_the_verification_waits(community: Repository) -> None:
    order_id, task_id = _signed(community)
    out = step(community, lambda r: pharmacy.query(r, task_id, PHARMACIST, "Dose for weight 45 kg?", NOW))
    held, asked = out.resources
    assert held["status"] == "on-hold" and held["statusReason"]["text"] == "Dose for weight 45 kg?"
    assert asked["owner"] == {"reference": DOCTOR} and asked["partOf"] == [{"reference": f"Task/{task_id}"}]
    # the prescriber is satisfied: the pharmacist may still verify the held task
    assert step(community, lambda r: pharmacy.verify(r, task_id, PHARMACIST, NOW, kb=KB, resolver=RESOLVER)).status == "verified"


def test_rejecting_needs_a_reason_and_takes_the_order_off_the_chart(community: Repository) -> None:
    """Rule: a rejected order must not go on being given (it is put on hold with the reason)."""
    order_id, task_id = _signed(community)
    with pytest.raises(Invalid):
        step(community, lambda r: pharmacy.reject(r, task_id, PHARMACIST, "", NOW))
    step(community, lambda r: pharmacy.reject(r, task_id, PHARMACIST, "Duplicate of the PRN order", NOW))
    order = read(community, "MedicationRequest", order_id)
    assert order["status"] == "on-hold" and "Duplicate of the PRN order" in order["statusReason"]["text"]


def test_a_finished_verification_cannot_be_acted_on_again(community: Repository) -> None:
    _, task_id = _signed(community)
    step(community, lambda r: pharmacy.verify(r, task_id, PHARMACIST, NOW, kb=KB, resolver=RESOLVER))
    with pytest.raises(Unprocessable) as caught:
        step(community, lambda r: pharmacy.reject(r, task_id, PHARMACIST, "late thought", NOW))
    assert caught.value.issues[0].expression == ("Task.status",)
