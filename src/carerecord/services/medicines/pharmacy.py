"""Pharmacy verification of inpatient orders (the "clinical screen" a hospital pharmacist does
before or soon after the first dose): a Task on the pharmacy's queue per organisation, which
the pharmacist completes by verifying, querying back to the prescriber, or rejecting.

- **Queue.** Signing an inpatient order creates a ``verify`` Task owned by the pharmacy
  Organization (``tasks``: the queue is ``Task?owner=Organization/{id}&code=...|verify&status=requested``).
- **Verify.** The Task is completed (``businessStatus`` verified) and the order carries UK Core's
  ``Extension-UKCore-PharmacistVerifiedIndicator`` = true, which the administration chart shows.
- **Query.** The verification waits (``on-hold``, ``queried``) and a ``query`` Task goes to the
  prescriber (``owner`` = the order's requester), with the question; the prescriber answers by
  changing or stopping the order (which cancels both), or the pharmacist verifies after all.
- **Reject.** The Task is completed as ``rejected`` with the reason, and the order is put
  ``on-hold`` with that reason, so it leaves the administration chart until the prescriber stops
  or changes it: a rejected order must not go on being given."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from carerecord.errors import Invalid, Unprocessable
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.outcome import Outcome, blocked
from carerecord.services.medicines.recheck import link_issues, recheck_gate
from carerecord.services.medicines.records import Records, reference_id
from carerecord.services.medicines.resolve import Resolver
from carerecord.services.medicines.tasks import QUERY, VERIFY, finish, new_task, note, require_open

VERIFIED_EXTENSION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-PharmacistVerifiedIndicator"


def is_verified(order: Mapping[str, Any]) -> bool:
    """Whether a pharmacist has verified the order."""
    return any(e.get("url") == VERIFIED_EXTENSION and e.get("valueBoolean") is True
               for e in order.get("extension", ()))


def queue_verification(records: Records, order: Mapping[str, Any], pharmacy: str, requester: str | None,
                       when: datetime) -> dict[str, Any]:
    """Put ``order`` (stored, active) on ``pharmacy``'s verification queue; the Task written."""
    medicine = (order.get("medicationCodeableConcept") or {}).get("text") or next(
        (c.get("display") for c in (order.get("medicationCodeableConcept") or {}).get("coding", ())
         if c.get("display")), "medicine")
    task = new_task(VERIFY, f"MedicationRequest/{order['id']}", str(order["subject"]["reference"]), pharmacy,
                    requester, when, f"Verify: {medicine}")
    return records.create(task)


def _task_and_order(records: Records, task_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    task = records.get("Task", task_id)
    require_open(task, VERIFY)
    order_id = reference_id(task.get("focus"), "MedicationRequest")
    if order_id is None:
        raise Unprocessable(f"Task/{task_id} is not about a MedicationRequest", "Task.focus")
    return task, records.get("MedicationRequest", order_id)


def verify(records: Records, task_id: str, pharmacist: str | None, now: datetime, *, kb: KnowledgeBase,
           resolver: Resolver, overrides: Mapping[str, Override] | None = None, comment: str = "") -> Outcome:
    """Verify the order of verification Task ``task_id``: the safety checks run again against
    the record as it is now (``recheck``: a critical finding new since signing blocks unless
    overridden here with a reason), then the Task is completed and the order marked verified.
    Unprocessable if the order is no longer active (stopped or rejected meanwhile)."""
    task, order = _task_and_order(records, task_id)
    if order.get("status") != "active":
        raise Unprocessable(f"MedicationRequest/{order['id']} is {order.get('status')}, not active",
                            "MedicationRequest.status")
    pid = reference_id(order.get("subject"), "Patient")
    if pid is None:
        raise Unprocessable(f"MedicationRequest/{order['id']} names no Patient", "MedicationRequest.subject")
    records.lock_patient(pid)
    findings, result = recheck_gate(records, order, pid, now, kb, resolver, overrides or {}, pharmacist)
    if not result.can_sign:
        return blocked(findings, result.blocked)
    order, issues = link_issues(records, order, result)
    order["extension"] = [e for e in order.get("extension", []) if e.get("url") != VERIFIED_EXTENSION]
    order["extension"].append({"url": VERIFIED_EXTENSION, "valueBoolean": True})
    note(task, f"Verified{': ' + comment if comment else ''}", pharmacist, now)
    return Outcome("verified", [records.update(order), *issues,
                                records.update(finish(task, "completed", "verified", now))], findings)


def query(records: Records, task_id: str, pharmacist: str | None, question: str, now: datetime) -> Outcome:
    """Query the order back to its prescriber with ``question`` (required)."""
    if not question.strip():
        raise Invalid("A query needs the question for the prescriber", "question")
    task, order = _task_and_order(records, task_id)
    note(task, f"Queried: {question}", pharmacist, now)
    held = records.update(finish(task, "on-hold", "queried", now, reason=question))
    prescriber = (order.get("requester") or {}).get("reference")
    asked = new_task(QUERY, f"MedicationRequest/{order['id']}", str(order["subject"]["reference"]), prescriber,
                     pharmacist, now, question)
    asked["partOf"] = [{"reference": f"Task/{task_id}"}]
    return Outcome("queried", [held, records.create(asked)])


def reject(records: Records, task_id: str, pharmacist: str | None, reason: str, now: datetime) -> Outcome:
    """Reject the order with ``reason`` (required): the order goes on hold with that reason."""
    if not reason.strip():
        raise Invalid("A rejection needs a reason", "reason")
    task, order = _task_and_order(records, task_id)
    note(task, f"Rejected: {reason}", pharmacist, now)
    done = records.update(finish(task, "completed", "rejected", now, reason=reason))
    written = [done]
    if order.get("status") == "active":
        order["status"] = "on-hold"
        order["statusReason"] = {"text": f"Rejected at pharmacy verification: {reason}"}
        written.insert(0, records.update(order))
    return Outcome("rejected", written)
