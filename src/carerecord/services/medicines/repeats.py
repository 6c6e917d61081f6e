"""Community prescribing: acute and repeat prescriptions, the patient's repeat request, the GP
practice's approval or rejection, and each issue routed to the nominated pharmacy.

Representation (UK-shaped, after UK Core and the EPS examples):

- An **authorisation** is an active MedicationRequest ``intent=order`` (or ``original-order``)
  with ``courseOfTherapyType`` ``acute`` (one issue) or ``continuous`` (a repeat). A repeat
  allows ``dispenseRequest.numberOfRepeatsAllowed + 1`` issues (FHIR counts repeats after the
  first supply) and carries UK Core's ``Extension-UKCore-MedicationRepeatInformation``:
  ``authorisationExpiryDate`` is the **review date** and ``numberOfPrescriptionsIssued`` the
  issues so far.
- Each **issue** is a MedicationRequest ``intent=instance-order`` ``basedOn`` the authorisation
  (``prescription.new_issue``), with a ``dispense`` Task for the pharmacy it is routed to.
- A **repeat request** (from the patient, later the patient app) is a ``repeat-request`` Task
  owned by the patient's GP practice (the Organization in ``Patient.generalPractitioner``),
  focus the authorisation, requester the patient (or their proxy).

Rules, checked when the repeat is requested and again when it is approved, **flagged** as
findings for the approver, never silently refused:

- ``repeat-review`` (critical): the review date has passed. Approving needs a reason
  (override), written as a DetectedIssue.
- ``repeat-exhausted`` (critical): no issues left on the authorisation; likewise.
- ``repeat-early`` (warning): requested before :data:`USED_SHARE` of the last issue's supply
  (``expectedSupplyDuration``) would be used: shown, not blocking (people go on holiday)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from carerecord.errors import Invalid, Unprocessable
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.findings import Evidence, Finding, Severity, Source
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.ordering import patient_of
from carerecord.services.medicines.outcome import Outcome, blocked
from carerecord.services.medicines.prescription import new_issue, repeat_information, with_repeat_information
from carerecord.services.medicines.recheck import recheck_gate
from carerecord.services.medicines.records import Records, reference_id
from carerecord.services.medicines.resolve import Resolver
from carerecord.services.medicines.tasks import DISPENSE, REPEAT_REQUEST, finish, new_task, note, require_open

USED_SHARE = 0.75
_SOURCE = Source("Repeat prescribing", "NHS England", "https://www.england.nhs.uk/medicines-2/", "")
_AUTHORISING = frozenset({"order", "original-order"})


def _course(order: Mapping[str, Any]) -> str:
    return next((str(c.get("code")) for c in (order.get("courseOfTherapyType") or {}).get("coding", ())), "acute")


def issues_allowed(authorisation: Mapping[str, Any]) -> int:
    """How many issues the authorisation allows: 1 for an acute, repeats + 1 for a repeat."""
    if _course(authorisation) not in ("continuous", "seasonal"):
        return 1
    return int((authorisation.get("dispenseRequest") or {}).get("numberOfRepeatsAllowed") or 0) + 1


def review_date(authorisation: Mapping[str, Any]) -> date | None:
    """The authorisation's review date (UK Core ``authorisationExpiryDate``), if it has one."""
    value = repeat_information(authorisation).get("authorisationExpiryDate")
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def issues_of(records: Records, authorisation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issues made from the authorisation, oldest first (R4 has no ``based-on`` search
    parameter on MedicationRequest, so the patient's instance-orders are filtered)."""
    me = f"MedicationRequest/{authorisation['id']}"
    subject = quote(str(authorisation["subject"]["reference"]), safe="/")
    found = [r for r in records.search("MedicationRequest", f"subject={subject}&intent=instance-order")
             if any(b.get("reference") == me for b in r.get("basedOn", ())) and r.get("status") != "entered-in-error"]
    return sorted(found, key=lambda r: str(r.get("authoredOn", "")))


def _authorisation(records: Records, auth_id: str) -> dict[str, Any]:
    auth = records.get("MedicationRequest", auth_id)
    if auth.get("intent") not in _AUTHORISING:
        raise Unprocessable(f"MedicationRequest/{auth_id} is an {auth.get('intent')}, not an authorisation",
                            "MedicationRequest.intent")
    if auth.get("status") != "active":
        raise Unprocessable(f"MedicationRequest/{auth_id} is {auth.get('status')}, not active",
                            "MedicationRequest.status")
    return auth


def _flag(kind: str, severity: Severity, auth: Mapping[str, Any], summary: str, detail: str, advice: str,
          evidence: tuple[Evidence, ...] = ()) -> Finding:
    ref = f"MedicationRequest/{auth['id']}"
    return Finding(f"{kind}|{ref}", kind, severity, summary, detail, Evidence(ref, ref), evidence, _SOURCE, advice)


def flags(records: Records, auth: Mapping[str, Any], now: datetime) -> list[Finding]:
    """The repeat rules (module docstring) for issuing ``auth`` again at ``now``."""
    out: list[Finding] = []
    review = review_date(auth)
    if review is not None and now.date() > review:
        out.append(_flag("repeat-review", Severity.CRITICAL, auth, f"Review overdue since {review.isoformat()}",
                         "The repeat's review date has passed.", "Review the medicine with the patient (or record "
                         "why it can be issued once more) and set a new review date."))
    issued = issues_of(records, auth)
    allowed = issues_allowed(auth)
    if len(issued) >= allowed:
        out.append(_flag("repeat-exhausted", Severity.CRITICAL, auth, f"No issues left ({len(issued)} of {allowed})",
                         "Every issue this authorisation allows has been made.", "Reauthorise after review."))
    if issued:
        last = issued[-1]
        supply = (last.get("dispenseRequest") or {}).get("expectedSupplyDuration") or {}
        when = datetime.fromisoformat(str(last["authoredOn"]).replace("Z", "+00:00"))
        if isinstance(supply.get("value"), int | float):
            used_by = when + timedelta(days=float(supply["value"]) * USED_SHARE)
            if now < used_by:
                out.append(_flag("repeat-early", Severity.WARNING, auth, "Requested early",
                                 f"The last issue ({when.date().isoformat()}, {supply['value']:g} days) is not yet "
                                 f"{USED_SHARE:.0%} used.", "Check the patient is taking it as prescribed.",
                                 (Evidence(f"MedicationRequest/{last['id']}", "last issue"),)))
    return out


def request_repeat(records: Records, auth_id: str, requester: str | None, now: datetime, comment: str = "") -> Outcome:
    """The patient asks for another issue of ``auth_id``: a Task for their GP practice, with the
    flags it raises recorded on it (as ``Task.input``) for the approver."""
    auth = _authorisation(records, auth_id)
    pid = patient_of(auth)
    patient = records.get("Patient", pid)
    practice = next((g["reference"] for g in patient.get("generalPractitioner", ())
                     if str(g.get("reference", "")).startswith("Organization/")), None)
    found = flags(records, auth, now)
    task = new_task(REPEAT_REQUEST, f"MedicationRequest/{auth_id}", f"Patient/{pid}", practice,
                    requester or f"Patient/{pid}", now, "Repeat prescription request")
    if comment:
        note(task, comment, requester, now)
    if found:
        task["input"] = [{"type": {"text": f.kind}, "valueString": f.summary} for f in found]
    return Outcome("requested", [records.create(task)], found)


def approve(records: Records, task_id: str, approver: str | None, overrides: Mapping[str, Override],
            now: datetime, *, kb: KnowledgeBase, resolver: Resolver) -> Outcome:
    """Approve repeat request ``task_id``: the flags are checked again; critical ones need an
    override with a reason. The issue is made and routed; the Task completed with it."""
    task = records.get("Task", task_id)
    require_open(task, REPEAT_REQUEST)
    auth_id = reference_id(task.get("focus"), "MedicationRequest")
    if auth_id is None:
        raise Unprocessable(f"Task/{task_id} is not about a MedicationRequest", "Task.focus")
    outcome = issue(records, auth_id, approver, overrides, now, kb=kb, resolver=resolver)
    if outcome.blocked:
        return outcome
    made = outcome.of_type("MedicationRequest")[0]
    outcome.resources.append(records.update(finish(task, "completed", "approved", now,
                                                   outputs=(f"MedicationRequest/{made['id']}",))))
    outcome.status = "approved"
    return outcome


def reject(records: Records, task_id: str, approver: str | None, reason: str, now: datetime) -> Outcome:
    """Reject repeat request ``task_id`` with ``reason`` (required: the patient is told why)."""
    if not reason.strip():
        raise Invalid("A rejection needs a reason", "reason")
    task = records.get("Task", task_id)
    require_open(task, REPEAT_REQUEST)
    note(task, f"Rejected: {reason}", approver, now)
    return Outcome("rejected", [records.update(finish(task, "rejected", "rejected", now, reason=reason))])


def issue(records: Records, auth_id: str, prescriber: str | None, overrides: Mapping[str, Override],
          now: datetime, *, kb: KnowledgeBase, resolver: Resolver) -> Outcome:
    """Issue ``auth_id`` once (a GP issuing an acute, or a repeat directly): the rules as for a
    request, and the safety checks again against the record as it is now (``recheck``); the
    issue written with a ``dispense`` Task for its pharmacy, the authorisation's issue count
    updated, overrides written as DetectedIssues."""
    auth = _authorisation(records, auth_id)
    pid = patient_of(auth)
    records.lock_patient(pid)  # two approvals at once must not both take the last issue
    found, result = recheck_gate(records, auth, pid, now, kb, resolver, overrides, prescriber,
                                 extra=flags(records, auth, now))
    if not result.can_sign:
        return blocked(found, result.blocked)
    number = len(issues_of(records, auth)) + 1
    made = records.create(new_issue(records, auth, prescriber, number, now))
    issues = [records.create(i) for i in result.detected_issues]
    if issues:
        made["detectedIssue"] = [{"reference": f"DetectedIssue/{i['id']}"} for i in issues]
        made = records.update(made)
    if _course(auth) in ("continuous", "seasonal"):
        with_repeat_information(auth, number, repeat_information(auth).get("authorisationExpiryDate"))
    else:
        auth["status"] = "completed"  # an acute is issued once
    written = [made, records.update(auth), *issues]
    pharmacy = (made.get("dispenseRequest") or {}).get("performer", {}).get("reference")
    written.append(records.create(new_task(DISPENSE, f"MedicationRequest/{made['id']}", f"Patient/{pid}", pharmacy,
                                           prescriber, now, "Dispense")))
    return Outcome("issued", written, found)
