"""Prescribing: checking a draft order, signing it, stopping it and changing it
(http://hl7.org/fhir/R4/medicationrequest.html; the R4 medications module's "order" step).

- **Check (order-select).** A draft MedicationRequest is checked against the patient's
  allergies, current medicines, the patient's other drafts and its dose. Nothing is written.
- **Sign (order-sign).** The draft becomes ``active``. Checked again, inside the write, after
  the patient's row is locked: so two orders signed at the same moment for one patient are
  checked one after the other, the second against the first (no race). Critical findings block
  signing unless each carries an override with a reason; each override is written as a
  DetectedIssue (reason as mitigation, ``implicated`` the order) and linked from the order's
  ``detectedIssue``, so overrides are countable (``DetectedIssue?implicated=...``). An inpatient
  order is put on its pharmacy's verification queue (``pharmacy.queue_verification``).
- **Stop.** ``stopped`` (a draft: ``cancelled``) with the reason as ``statusReason``; open work
  items about the order (verification, queries, dispensing) are cancelled with it.
- **Change.** A new order replaces the old: it names it as ``priorPrescription``, is checked and
  signed as above (not against the order it replaces), and the old one is stopped, all in one
  unit. A blocked change writes nothing and leaves the old order running.

Clinical problems come back as findings in an ``Outcome``; a request that cannot be carried out
at all (unknown order, wrong status) raises a ``carerecord.errors`` error naming the element."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from carerecord.errors import Invalid, Unprocessable
from carerecord.services.medicines.checker import check_order
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.findings import Finding
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.order import order_from
from carerecord.services.medicines.outcome import Outcome, blocked, gate
from carerecord.services.medicines.pharmacy import queue_verification
from carerecord.services.medicines.records import Records, reference_id
from carerecord.services.medicines.resolve import Resolver
from carerecord.services.medicines.tasks import OPEN, finish, instant

INPATIENT = "inpatient"
_STOPPABLE = frozenset({"active", "on-hold", "draft"})


def patient_of(order: Mapping[str, Any]) -> str:
    """The Patient id an order is for; Invalid when its subject is not a local Patient."""
    pid = reference_id(order.get("subject"), "Patient")
    if pid is None:
        raise Invalid("The order's subject must be a reference to a Patient", "MedicationRequest.subject")
    return pid


def is_inpatient(order: Mapping[str, Any]) -> bool:
    """Whether the order is an inpatient order (category ``inpatient``), which pharmacy verifies."""
    return any(c.get("code") == INPATIENT for cat in order.get("category", ()) for c in cat.get("coding", ()))


def check_draft(records: Records, order_id: str, kb: KnowledgeBase, resolver: Resolver,
                now: datetime) -> list[Finding]:
    """The findings for draft ``order_id`` as at order-select (nothing written): against the
    patient's records and the patient's other draft orders."""
    order = records.get("MedicationRequest", order_id)
    pid = patient_of(order)
    ctx = records.patient_context(pid, resolver, now.date())
    drafts = records.search("MedicationRequest", f"subject={quote('Patient/' + pid, safe='/')}&status=draft")
    mine = order_from(order, resolver)
    others = [order_from(d, resolver) for d in drafts if d.get("id") != order_id]
    return check_order(mine, ctx, kb, resolver, [mine, *others])


def sign(records: Records, order_id: str, overrides: Mapping[str, Override], signer: str | None,
         now: datetime, kb: KnowledgeBase, resolver: Resolver, pharmacy: str | None = None) -> Outcome:
    """Sign draft ``order_id`` (see module docstring). ``signer`` is the prescriber's reference
    (PractitionerRole or Practitioner), used where the order names no requester and as the
    author of overrides; ``pharmacy`` the Organization that verifies an inpatient order whose
    ``dispenseRequest.performer`` names none."""
    order = records.get("MedicationRequest", order_id)
    if order.get("status") != "draft":
        raise Unprocessable(f"MedicationRequest/{order_id} is {order.get('status')}, only a draft can be signed",
                            "MedicationRequest.status")
    return _sign(records, order, overrides, signer, now, kb, resolver, pharmacy, status="signed")


def stop(records: Records, order_id: str, reason: str, who: str | None, now: datetime) -> Outcome:
    """Stop ``order_id`` with ``reason`` (required: why a medicine was stopped matters to
    everyone who later reads the record). Its open work items are cancelled."""
    if not reason.strip():
        raise Invalid("A reason is needed to stop an order", "reason")
    order = records.get("MedicationRequest", order_id)
    if order.get("status") not in _STOPPABLE:
        raise Unprocessable(f"MedicationRequest/{order_id} is already {order.get('status')}",
                            "MedicationRequest.status")
    records.lock_patient(patient_of(order))
    order["status"] = "cancelled" if order["status"] == "draft" else "stopped"
    order["statusReason"] = {"text": reason}
    written = [records.update(order)]
    written += _cancel_tasks(records, order_id, f"Order stopped: {reason}", now)
    return Outcome("stopped", written)


def change(records: Records, order_id: str, replacement: dict[str, Any], overrides: Mapping[str, Override],
           signer: str | None, now: datetime, kb: KnowledgeBase, resolver: Resolver,
           pharmacy: str | None = None, reason: str = "") -> Outcome:
    """Replace active ``order_id`` by ``replacement`` (an unsaved MedicationRequest for the same
    patient): the new order is signed with ``priorPrescription`` set, then the old is stopped."""
    old = records.get("MedicationRequest", order_id)
    if old.get("status") not in ("active", "on-hold"):
        raise Unprocessable(f"MedicationRequest/{order_id} is {old.get('status')}; only a current order can be "
                            "changed", "MedicationRequest.status")
    if replacement.get("resourceType") != "MedicationRequest":
        raise Invalid("The replacement must be a MedicationRequest", "MedicationRequest")
    if patient_of(replacement) != patient_of(old):
        raise Invalid("The replacement must be for the same patient", "MedicationRequest.subject")
    new = {k: v for k, v in replacement.items() if k not in ("id", "meta")}
    new["status"] = "draft"
    new["priorPrescription"] = {"reference": f"MedicationRequest/{order_id}"}
    if "category" not in new and "category" in old:
        new["category"] = old["category"]
    outcome = _sign(records, new, overrides, signer, now, kb, resolver, pharmacy, status="changed",
                    replaces=f"MedicationRequest/{order_id}")
    if outcome.blocked:
        return outcome
    signed = outcome.of_type("MedicationRequest")[0]
    stopped = stop(records, order_id, reason or f"Changed: replaced by MedicationRequest/{signed['id']}", signer, now)
    outcome.resources += stopped.resources
    return outcome


def _sign(records: Records, order: dict[str, Any], overrides: Mapping[str, Override], signer: str | None,
          now: datetime, kb: KnowledgeBase, resolver: Resolver, pharmacy: str | None, *, status: str,
          replaces: str = "") -> Outcome:
    pid = patient_of(order)
    records.lock_patient(pid)  # from here on, no other signing for this patient runs alongside
    ctx = records.patient_context(pid, resolver, now.date(), frozenset({replaces} - {""}))
    mine = order_from(order, resolver)
    findings = check_order(mine, ctx, kb, resolver, [mine])
    authored = {k: Override(v.reason, v.comment, v.author or signer or "") for k, v in overrides.items()}
    result = gate(findings, authored, pid, now)
    if not result.can_sign:
        return blocked(findings, result.blocked)
    verifier = reference_id((order.get("dispenseRequest") or {}).get("performer"), "Organization") or pharmacy
    if is_inpatient(order) and not verifier:
        raise Invalid("An inpatient order needs a pharmacy to verify it: dispenseRequest.performer or the "
                      "'pharmacy' parameter", "MedicationRequest.dispenseRequest.performer")
    order["status"] = "active"
    order.setdefault("authoredOn", instant(now))
    if signer and "requester" not in order:
        order["requester"] = {"reference": signer}
    if "id" not in order:  # a replacement: created first so the DetectedIssues can name it
        order = records.create(order)
    issues = []
    for issue in result.detected_issues:
        me = f"MedicationRequest/{order['id']}"
        refs = [i for i in issue.get("implicated", []) if i.get("reference") not in ("", None, me)]
        issue["implicated"] = [{"reference": me}, *refs]
        issues.append(records.create(issue))
    if issues:
        order["detectedIssue"] = [*order.get("detectedIssue", []),
                                  *({"reference": f"DetectedIssue/{i['id']}"} for i in issues)]
    order = records.update(order)
    written = [order, *issues]
    if is_inpatient(order) and verifier:
        written.append(queue_verification(records, order, f"Organization/{verifier}", signer, now))
    return Outcome(status, written, findings)


def _cancel_tasks(records: Records, order_id: str, reason: str, now: datetime) -> list[dict[str, Any]]:
    """Cancel every open Task whose focus is the order."""
    out = []
    for task in records.search("Task", f"focus=MedicationRequest/{order_id}"):
        if task.get("status") in OPEN:
            out.append(records.update(finish(task, "cancelled", "cancelled", now, reason=reason)))
    return out
