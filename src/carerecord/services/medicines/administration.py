"""The administration record (the ward's drug chart or a care home's MAR): the chart of a day
built from the active orders' dosage timing, and each dose recorded as given, not given (with a
reason) or delayed, as a MedicationAdministration (http://hl7.org/fhir/R4/medicationadministration.html).

Bedside checks before anything is written (findings, not exceptions):

- **Right patient** (``wrong-patient``, critical, cannot be overridden): the identifier scanned
  from the wristband or given as the NHS number must be one of the order's Patient's
  identifiers. Recording a dose on the wrong person's chart is never right.
- **Order current** (``order-not-active``, cannot be overridden): stopped, rejected or held
  orders are not given.
- **Already given** (``double-dose``, cannot be overridden): a dose recorded as given for the
  same order and due time. If that record is wrong it is corrected (entered-in-error) first.
  For "as needed" doses, reaching the line's daily maximum in the last 24 hours is critical
  (overridable with a reason).
- **Due window** (``timing``): a dose given more than :data:`DUE_WINDOW` before its due time is
  critical (overridable with a reason, e.g. given early before theatre); more than
  :data:`DUE_WINDOW` late is a warning, recorded with the dose.
- **Allergy re-checked** (``allergy``): the allergy check runs again against today's allergy
  records, so an allergy recorded after prescribing is caught at the bedside. A critical one
  blocks unless overridden with a reason; an allergy already overridden when the order was
  signed (the order's DetectedIssues) is shown as a warning, not blocked again.

The due time a record belongs to is kept in the extension :data:`SCHEDULED` (R4 has no element
for it), so the chart can match records to due times and "already given" is exact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import quote

from carerecord.errors import Invalid
from carerecord.services.medicines.allergy_check import check_allergies
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.dosage import listed, per_day
from carerecord.services.medicines.findings import Evidence, Finding, Severity, Source
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.order import order_from
from carerecord.services.medicines.ordering import patient_of
from carerecord.services.medicines.outcome import Outcome, blocked, gate
from carerecord.services.medicines.pharmacy import is_verified
from carerecord.services.medicines.records import Records
from carerecord.services.medicines.resolve import Resolver
from carerecord.services.medicines.tasks import instant
from carerecord.services.medicines.timing import WARD_TIME, schedule, start_of

SCHEDULED = "https://carerecord.org/fhir/StructureDefinition/medication-administration-scheduled-time"
DUE_WINDOW = timedelta(minutes=60)
NEVER_OVERRIDDEN = frozenset({"wrong-patient", "order-not-active", "double-dose"})
STATUS = {"given": "completed", "not-given": "not-done", "delayed": "on-hold"}
_BEDSIDE = Source("carerecord bedside checks", "NHS Improvement",
                  "https://www.england.nhs.uk/patient-safety/", "")
_NHS = "https://fhir.nhs.uk/Id/nhs-number"


@dataclass(frozen=True, slots=True)
class Dose:
    """What the nurse records: ``status`` (given, not-given, delayed), the identifier scanned
    (``system`` may be empty: then any of the patient's identifiers counts), the due time the
    dose belongs to (None: the nearest due time today, or none for an as-needed dose), and for
    not-given and delayed a ``reason`` (a Coding) or ``comment``."""

    status: str
    scanned_value: str
    scanned_system: str = ""
    scheduled: datetime | None = None
    reason: Mapping[str, Any] | None = None
    comment: str = ""


@dataclass(slots=True)
class ChartSlot:
    due: datetime
    state: str  # given, not-given, delayed, due, overdue, scheduled
    record: str = ""  # MedicationAdministration/id


@dataclass(slots=True)
class ChartLine:
    order: dict[str, Any]
    as_needed: bool
    verified: bool
    slots: list[ChartSlot] = field(default_factory=list)
    as_needed_given: list[str] = field(default_factory=list)


def _same_id(scanned: str, ident: Mapping[str, Any], system: str) -> bool:
    if system and ident.get("system") != system:
        return False
    value = str(ident.get("value", ""))
    if ident.get("system") == _NHS:
        return value.replace(" ", "") == scanned.replace(" ", "")
    return value == scanned


def _finding(kind: str, severity: Severity, order: Mapping[str, Any], summary: str, detail: str,
             advice: str, evidence: tuple[Evidence, ...] = ()) -> Finding:
    ref = f"MedicationRequest/{order['id']}"
    return Finding(f"{kind}|{ref}", kind, severity, summary, detail, Evidence(ref, ref), evidence, _BEDSIDE, advice)


def _day_range(day: date, zone: tzinfo) -> tuple[str, str]:
    start = datetime.combine(day, time(0), zone)
    return instant(start), instant(start + timedelta(days=1))


def _records_of(records: Records, patient_id: str, since: str, until: str) -> list[dict[str, Any]]:
    subject = quote(f"Patient/{patient_id}", safe="/")
    return [a for a in records.search("MedicationAdministration",
                                      f"subject={subject}&effective-time=ge{quote(since)}&effective-time=lt{quote(until)}")
            if a.get("status") != "entered-in-error"]


def _scheduled(admin: Mapping[str, Any]) -> str:
    return next((str(e.get("valueDateTime")) for e in admin.get("extension", ()) if e.get("url") == SCHEDULED), "")


def _due_times(order: Mapping[str, Any], day: date, zone: tzinfo) -> tuple[bool, list[datetime]]:
    start = start_of(order, zone)
    times: list[datetime] = []
    prn = False
    for dosage in listed(order.get("dosageInstruction")):
        sched = schedule(dosage, day, start, zone)
        prn = prn or sched.as_needed
        times += sched.times
    return prn, sorted(set(times))


def chart(records: Records, patient_id: str, day: date, now: datetime, zone: tzinfo = WARD_TIME) -> list[ChartLine]:
    """The administration chart of ``day`` (ward time): one line per active order due that day,
    or started that day (an order written after the evening round is on the chart, its first
    dose tomorrow), with its due times and what was recorded for each, and the as-needed doses
    given that day."""
    subject = quote(f"Patient/{patient_id}", safe="/")
    since, until = _day_range(day, zone)
    given = _records_of(records, patient_id, since, until)
    lines = []
    for order in records.search("MedicationRequest", f"subject={subject}&status=active"):
        prn, times = _due_times(order, day, zone)
        line = ChartLine(order, prn, is_verified(order))
        mine = [a for a in given if (a.get("request") or {}).get("reference") == f"MedicationRequest/{order['id']}"]
        for due in times:
            recorded = [a for a in mine if _scheduled(a) == instant(due)]
            final = next((a for a in recorded if a["status"] == "completed"), recorded[-1] if recorded else None)
            if final is not None:
                state = {"completed": "given", "not-done": "not-given", "on-hold": "delayed"}.get(final["status"], "")
                line.slots.append(ChartSlot(due, state or final["status"], f"MedicationAdministration/{final['id']}"))
            else:
                state = "scheduled" if now < due - DUE_WINDOW else "due" if now <= due + DUE_WINDOW else "overdue"
                line.slots.append(ChartSlot(due, state))
        line.as_needed_given = [f"MedicationAdministration/{a['id']}" for a in mine
                                if not _scheduled(a) and a.get("status") == "completed"]
        start = start_of(order, zone)
        started_that_day = start is not None and start.astimezone(zone).date() == day
        if line.slots or prn or started_that_day:  # one written after the last round has no dose left
            lines.append(line)
    return lines


def administer(records: Records, order_id: str, dose: Dose, nurse: str | None, now: datetime,
               kb: KnowledgeBase, resolver: Resolver, overrides: Mapping[str, Override] | None = None,
               zone: tzinfo = WARD_TIME) -> Outcome:
    """Record ``dose`` of order ``order_id`` after the bedside checks (module docstring).
    Invalid for a request that cannot be recorded at all (unknown status, no reason for a dose
    not given, a due time the order does not have)."""
    if dose.status not in STATUS:
        raise Invalid(f"status must be one of {', '.join(STATUS)}, not {dose.status!r}", "status")
    if dose.status != "given" and not (dose.reason or dose.comment.strip()):
        raise Invalid(f"A dose recorded as {dose.status} needs a reason", "reason")
    if not dose.scanned_value.strip():
        raise Invalid("Scan the patient's wristband or enter their NHS number", "patientIdentifier")
    order = records.get("MedicationRequest", order_id)
    pid = patient_of(order)
    records.lock_patient(pid)  # two nurses recording the same dose: the second sees the first
    patient = records.get("Patient", pid)
    findings: list[Finding] = []
    if not any(_same_id(dose.scanned_value.strip(), i, dose.scanned_system) for i in patient.get("identifier", ())):
        findings.append(_finding("wrong-patient", Severity.CRITICAL, order, "WRONG PATIENT: the identifier scanned "
                                 "is not this order's patient", f"The identifier {dose.scanned_value!r} is not one "
                                 f"of Patient/{pid}'s identifiers.", "Stop. Check the wristband against the chart; "
                                 "do not give or record the dose.", (Evidence(f"Patient/{pid}", "order's patient"),)))
    if order.get("status") != "active":
        findings.append(_finding("order-not-active", Severity.CRITICAL, order, f"The order is {order.get('status')}",
                                 "Only active orders are given.", "Check the current chart with the prescriber."))
    prn, times = _due_times(order, now.astimezone(zone).date(), zone)
    due = _slot(dose, prn, times, now)
    if dose.status == "given" and not findings:
        findings += _timing_checks(records, order, pid, prn, due, now)
        findings += _allergy_recheck(records, order, pid, now, kb, resolver)
    result = gate(findings, overrides or {}, pid, now, NEVER_OVERRIDDEN)
    if not result.can_sign:
        return blocked(findings, result.blocked)
    issues = [records.create(i) for i in result.detected_issues]
    admin = _administration(order, pid, dose, due, nurse, now, issues)
    return Outcome(dose.status, [records.create(admin), *issues], findings)


def _slot(dose: Dose, prn: bool, times: list[datetime], now: datetime) -> datetime | None:
    if dose.scheduled is not None:
        if dose.scheduled not in times:
            raise Invalid(f"The order has no dose due at {instant(dose.scheduled)} today", "scheduled")
        return dose.scheduled
    if prn or not times:
        return None
    return min(times, key=lambda t: abs(t - now))


def _timing_checks(records: Records, order: Mapping[str, Any], pid: str, prn: bool, due: datetime | None,
                   now: datetime) -> list[Finding]:
    ref = f"MedicationRequest/{order['id']}"
    recent = [a for a in _records_of(records, pid, instant(now - timedelta(days=1)), instant(now + timedelta(minutes=1)))
              if (a.get("request") or {}).get("reference") == ref and a.get("status") == "completed"]
    out = []
    if due is None and not prn:
        out.append(_finding("timing", Severity.CRITICAL, order, "No dose of this order is due today",
                            "The order's timing has no due time today.", "Check the chart with the prescriber."))
    elif due is not None:
        done = [a for a in recent if _scheduled(a) == instant(due)]
        if done:
            out.append(_finding("double-dose", Severity.CRITICAL, order, "ALREADY GIVEN: this dose is recorded as given",
                                f"The dose due at {instant(due)} was recorded as given.", "Do not give it again.",
                                tuple(Evidence(f"MedicationAdministration/{a['id']}", "earlier record") for a in done)))
        elif now < due - DUE_WINDOW:
            out.append(_finding("timing", Severity.CRITICAL, order, "Too early: the dose is not yet due",
                                f"Due at {instant(due)}; doses are given within {DUE_WINDOW} of their time.",
                                "Wait until it is due, or give a reason for giving it early."))
        elif now > due + DUE_WINDOW:
            out.append(_finding("timing", Severity.WARNING, order, "Late: given after the due window",
                                f"Due at {instant(due)}.", "Record why the dose is late."))
    else:
        limit = min((v for v in (per_day(d) for d in listed(order.get("dosageInstruction"))) if v), default=None)
        if limit is not None and len(recent) >= limit:
            out.append(_finding("double-dose-prn", Severity.CRITICAL, order,
                                f"Maximum reached: {len(recent)} as-needed doses in 24 hours",
                                f"The order allows at most {limit:g} a day.", "Do not give another dose; ask the prescriber.",
                                tuple(Evidence(f"MedicationAdministration/{a['id']}", "dose given") for a in recent)))
    return out


def _allergy_recheck(records: Records, order: Mapping[str, Any], pid: str, now: datetime, kb: KnowledgeBase,
                     resolver: Resolver) -> list[Finding]:
    ctx = records.patient_context(pid, resolver, now.date())
    found = check_allergies(order_from(order, resolver), ctx, kb, resolver)
    overridden = {i["reference"] for i in order.get("detectedIssue", ()) if i.get("reference")}
    accepted = {e["reference"] for ref in overridden if (d := records.read(*ref.split("/", 1))) is not None
                for e in d.get("implicated", ()) if e.get("reference", "").startswith("AllergyIntolerance/")}
    out = []
    for f in found:
        if f.severity is Severity.CRITICAL and {e.reference for e in f.evidence} <= accepted:
            f = Finding(f.key, f.kind, Severity.WARNING, f"{f.summary} (overridden when prescribed)", f.detail,
                        f.order, f.evidence, f.source, f.advice)
        out.append(f)
    return out


def _administration(order: Mapping[str, Any], pid: str, dose: Dose, due: datetime | None, nurse: str | None,
                    now: datetime, issues: list[dict[str, Any]]) -> dict[str, Any]:
    admin: dict[str, Any] = {"resourceType": "MedicationAdministration", "status": STATUS[dose.status]}
    if due is not None:
        admin["extension"] = [{"url": SCHEDULED, "valueDateTime": instant(due)}]
    if dose.status != "given":
        reason: dict[str, Any] = {"coding": [dict(dose.reason)]} if dose.reason else {}
        if dose.comment:
            reason["text"] = dose.comment
        admin["statusReason"] = [reason]
    if "medicationReference" in order:
        admin["medicationReference"] = order["medicationReference"]
    else:
        admin["medicationCodeableConcept"] = order.get("medicationCodeableConcept", {"text": "unknown"})
    admin["subject"] = {"reference": f"Patient/{pid}"}
    if "encounter" in order:
        admin["context"] = order["encounter"]
    admin["effectiveDateTime"] = instant(now)
    if nurse:
        admin["performer"] = [{"actor": {"reference": nurse}}]
    admin["request"] = {"reference": f"MedicationRequest/{order['id']}"}
    if dose.status == "given" and dose.comment:
        admin["note"] = [{"text": dose.comment}]
    admin["dosage"] = _dosage(order)
    if issues:
        admin["note"] = [*admin.get("note", []), *({"text": f"Overridden: DetectedIssue/{i['id']}"} for i in issues)]
    return admin


def _dosage(order: Mapping[str, Any]) -> dict[str, Any]:
    first: Mapping[str, Any] = next(iter(listed(order.get("dosageInstruction"))), {})
    out: dict[str, Any] = {}
    if first.get("text"):
        out["text"] = first["text"]
    if first.get("route"):
        out["route"] = first["route"]
    amount = next((dr.get("doseQuantity") for dr in listed(first.get("doseAndRate")) if dr.get("doseQuantity")), None)
    if amount:
        out["dose"] = amount
    return out or {"text": "as prescribed"}
