"""Dispensing an issued prescription at a pharmacy, as a MedicationDispense
(http://hl7.org/fhir/R4/medicationdispense.html): the pharmacy's ``dispense`` Task is completed
with it, and the issue becomes ``completed``.

The dispense copies the medicine, the dosage instructions (the label) and, unless the
pharmacist states otherwise, the prescribed quantity and supply duration; the patient's next
repeat can then be judged "early" or not against the supply. A prescription is dispensed once:
a second dispense of the same issue is refused (422), because two supplies of one issue is how
patients end up with double the medicine."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from carerecord.errors import Unprocessable
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.ordering import patient_of
from carerecord.services.medicines.outcome import Outcome, blocked
from carerecord.services.medicines.recheck import link_issues, recheck_gate
from carerecord.services.medicines.records import Records
from carerecord.services.medicines.resolve import Resolver
from carerecord.services.medicines.tasks import DISPENSE, OPEN, finish, instant, task_code


def dispense(records: Records, issue_id: str, pharmacist: str | None, now: datetime,
             quantity: Mapping[str, Any] | None = None, comment: str = "", *, kb: KnowledgeBase,
             resolver: Resolver, overrides: Mapping[str, Override] | None = None) -> Outcome:
    """Dispense issue ``issue_id`` (an active MedicationRequest) by ``pharmacist`` (a
    PractitionerRole or Practitioner reference), after the safety checks run again against the
    record as it is now (``recheck``: a critical finding new since the prescription was signed
    blocks unless overridden here with a reason). ``quantity`` replaces the prescribed quantity
    (e.g. an owing, part supply)."""
    issue = records.get("MedicationRequest", issue_id)
    if issue.get("status") != "active":
        raise Unprocessable(f"MedicationRequest/{issue_id} is {issue.get('status')}, not active: it cannot be "
                            "dispensed", "MedicationRequest.status")
    if issue.get("intent") not in ("instance-order", "order", "original-order", "filler-order"):
        raise Unprocessable(f"MedicationRequest/{issue_id} is a {issue.get('intent')}, not a prescription",
                            "MedicationRequest.intent")
    pid = patient_of(issue)
    records.lock_patient(pid)
    if any(d.get("status") in ("completed", "in-progress", "preparation")
           for d in records.search("MedicationDispense", f"prescription=MedicationRequest/{issue_id}")):
        raise Unprocessable(f"MedicationRequest/{issue_id} has already been dispensed", "MedicationRequest.status")
    findings, result = recheck_gate(records, issue, pid, now, kb, resolver, overrides or {}, pharmacist)
    if not result.can_sign:
        return blocked(findings, result.blocked)
    issue, issues = link_issues(records, issue, result)
    made = records.create(_dispense(issue, pid, pharmacist, now, quantity, comment))
    issue["status"] = "completed"
    written = [made, records.update(issue), *issues]
    for task in records.search("Task", f"focus=MedicationRequest/{issue_id}"):
        if task_code(task) == DISPENSE and task.get("status") in OPEN:
            written.append(records.update(finish(task, "completed", "dispensed", now,
                                                 outputs=(f"MedicationDispense/{made['id']}",))))
    return Outcome("dispensed", written, findings)


def _dispense(issue: Mapping[str, Any], pid: str, pharmacist: str | None, now: datetime,
              quantity: Mapping[str, Any] | None, comment: str) -> dict[str, Any]:
    request = issue.get("dispenseRequest") or {}
    out: dict[str, Any] = {"resourceType": "MedicationDispense", "status": "completed"}
    for key in ("medicationCodeableConcept", "medicationReference"):
        if key in issue:
            out[key] = issue[key]
    out["subject"] = {"reference": f"Patient/{pid}"}
    if pharmacist:
        out["performer"] = [{"actor": {"reference": pharmacist}}]
    out["authorizingPrescription"] = [{"reference": f"MedicationRequest/{issue['id']}"}]
    amount = quantity or request.get("quantity")
    if amount:
        out["quantity"] = dict(amount)
    if request.get("expectedSupplyDuration"):
        out["daysSupply"] = request["expectedSupplyDuration"]
    out["whenPrepared"] = instant(now)
    out["whenHandedOver"] = instant(now)
    if comment:
        out["note"] = [{"text": comment}]
    if issue.get("dosageInstruction"):
        out["dosageInstruction"] = issue["dosageInstruction"]
    return out
