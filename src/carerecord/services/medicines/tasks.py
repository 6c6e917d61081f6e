"""Medicines work items as FHIR Tasks (http://hl7.org/fhir/R4/task.html): the pharmacy's
verification queue, queries back to a prescriber, patients' repeat requests to their GP
practice, and prescriptions waiting at a pharmacy to be dispensed.

A queue is a search, not a table: ``Task?owner=Organization/{id}&code={system}|verify&status=requested``
is the pharmacy's verification queue, ``...|repeat-request`` a practice's repeat requests,
``...|dispense`` a pharmacy's prescriptions to dispense. ``Task.focus`` is the MedicationRequest
concerned, ``Task.for`` the patient, ``Task.owner`` who must act, ``Task.businessStatus`` the
medicines-specific state (verified, queried, rejected, approved, issued, dispensed)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from carerecord.errors import Unprocessable

TASK_CODES = "https://carerecord.org/fhir/CodeSystem/medicines-task"
BUSINESS_STATUS = "https://carerecord.org/fhir/CodeSystem/medicines-task-status"
VERIFY, QUERY, REPEAT_REQUEST, DISPENSE = "verify", "query", "repeat-request", "dispense"
_DISPLAY = {VERIFY: "Pharmacist verification of a prescription",
            QUERY: "Pharmacist's query to the prescriber",
            REPEAT_REQUEST: "Repeat prescription request",
            DISPENSE: "Dispense a prescription"}
_ANNOTATION_AUTHORS = frozenset({"Practitioner", "Patient", "RelatedPerson", "Organization"})
OPEN = frozenset({"requested", "received", "accepted", "in-progress", "on-hold", "ready"})


def instant(when: datetime) -> str:
    """A FHIR instant in UTC, to the second."""
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def new_task(code: str, focus: str, patient: str, owner: str | None, requester: str | None,
             when: datetime, description: str = "") -> dict[str, Any]:
    """A requested Task of ``code`` about ``focus`` (e.g. ``MedicationRequest/1``) for
    ``patient`` (``Patient/1``), to be done by ``owner`` (a reference, usually an Organization)."""
    task: dict[str, Any] = {
        "resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
        "code": {"coding": [{"system": TASK_CODES, "code": code, "display": _DISPLAY[code]}]},
        "focus": {"reference": focus}, "for": {"reference": patient}, "authoredOn": instant(when),
        "lastModified": instant(when)}
    if description:
        task["description"] = description
    if requester:
        task["requester"] = {"reference": requester}
    if owner:
        task["owner"] = {"reference": owner}
    return task


def task_code(task: Mapping[str, Any]) -> str:
    """The medicines task code of ``task`` ('' if it is not one of ours)."""
    for coding in (task.get("code") or {}).get("coding", ()):
        if coding.get("system") == TASK_CODES:
            return str(coding.get("code", ""))
    return ""


def require_open(task: Mapping[str, Any], code: str) -> None:
    """Unprocessable (422) unless ``task`` is an open Task of ``code``: a finished work item
    must not be acted on twice (e.g. a repeat issued twice from one request)."""
    if task_code(task) != code:
        raise Unprocessable(f"Task/{task.get('id')} is not a {code} task", "Task.code")
    if task.get("status") not in OPEN:
        raise Unprocessable(f"Task/{task.get('id')} is already {task.get('status')}", "Task.status")


def finish(task: dict[str, Any], status: str, business: str, when: datetime, *,
           reason: str = "", outputs: tuple[str, ...] = ()) -> dict[str, Any]:
    """``task`` moved to ``status`` with ``businessStatus`` ``business``, the reason (if any)
    as statusReason and ``outputs`` (references) as Task.output."""
    task["status"] = status
    task["businessStatus"] = {"coding": [{"system": BUSINESS_STATUS, "code": business}], "text": business}
    task["lastModified"] = instant(when)
    if reason:
        task["statusReason"] = {"text": reason}
    if outputs:
        task["output"] = [{"type": {"text": "result"}, "valueReference": {"reference": r}} for r in outputs]
    return task


def note(task: dict[str, Any], text: str, author: str | None, when: datetime) -> None:
    """Append an Annotation to ``task``."""
    entry: dict[str, Any] = {"text": text, "time": instant(when)}
    if author and author.split("/")[0] in _ANNOTATION_AUTHORS:
        entry["authorReference"] = {"reference": author}
    elif author:  # a PractitionerRole cannot author an R4 Annotation: named as text
        entry["authorString"] = author
    task.setdefault("note", []).append(entry)
