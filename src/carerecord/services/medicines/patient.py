"""What the checks know about the patient: age, allergy records, current medicines and the
latest eGFR, gathered from plain FHIR resources (from a CDS Hooks prefetch, or read from the
local store by ``store_fetch``).

Current medicines are MedicationRequests that are ``active`` or ``on-hold`` (a held medicine
is usually restarted, so its interactions still matter) and MedicationStatements that are
``active`` or ``intended``. The eGFR is the most recent final (or amended/corrected)
Observation with an eGFR code; older results are still used but their date is shown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from carerecord.services.medicines.resolve import Resolved, Resolver

EGFR_CODES = frozenset({
    ("http://loinc.org", "33914-3"),   # eGFR/1.73 sq M, MDRD (creatinine)
    ("http://loinc.org", "62238-1"),   # eGFR/1.73 sq M, CKD-EPI (creatinine)
    ("http://loinc.org", "98979-8"),   # eGFR/1.73 sq M, CKD-EPI 2021 (creatinine)
    ("http://loinc.org", "48642-3"),   # eGFR/1.73 sq M among non-blacks, MDRD
    ("http://loinc.org", "48643-1"),   # eGFR/1.73 sq M among blacks, MDRD
})
"""eGFR Observation codes recognised (LOINC). Sites that record eGFR with SNOMED CT codes
add them here; an unrecognised code means the eGFR is treated as unknown (and said so)."""

_ACTIVE = {"MedicationRequest": {"active", "on-hold"}, "MedicationStatement": {"active", "intended"}}
_FINAL = {"final", "amended", "corrected"}


@dataclass(frozen=True, slots=True)
class CurrentMedicine:
    reference: str
    resource: Mapping[str, Any]
    resolved: Resolved


@dataclass(frozen=True, slots=True)
class Egfr:
    value: float
    when: str
    reference: str


@dataclass(slots=True)
class PatientContext:
    patient_id: str
    age: int | None = None
    allergies: list[Mapping[str, Any]] = field(default_factory=list)
    medicines: list[CurrentMedicine] = field(default_factory=list)
    egfr: Egfr | None = None
    allergies_known: bool = True


def ref(resource: Mapping[str, Any]) -> str:
    """``Type/id`` of a resource, or '' for one without an id (an unsaved draft)."""
    return f"{resource['resourceType']}/{resource['id']}" if resource.get("id") else ""


def age_on(birth_date: str | None, today: date) -> int | None:
    """Whole years from ``birth_date`` (YYYY, YYYY-MM or YYYY-MM-DD) to ``today``; for a
    partial date the youngest possible age, so adult limits are not applied too early."""
    if not birth_date:
        return None
    parts = [int(p) for p in birth_date[:10].split("-")]
    y, m, d = parts[0], parts[1] if len(parts) > 1 else 12, parts[2] if len(parts) > 2 else 28
    return today.year - y - ((today.month, today.day) < (m, d))


def _when(obs: Mapping[str, Any]) -> str:
    return str(obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("end")
               or (obs.get("effectivePeriod") or {}).get("start") or obs.get("issued") or "")


def latest_egfr(observations: Iterable[Mapping[str, Any]]) -> Egfr | None:
    best: Egfr | None = None
    for obs in observations:
        if obs.get("resourceType") != "Observation" or obs.get("status") not in _FINAL:
            continue
        codes = {(c.get("system"), c.get("code")) for c in (obs.get("code") or {}).get("coding", ())}
        value = (obs.get("valueQuantity") or {}).get("value")
        if not codes & EGFR_CODES or not isinstance(value, int | float):
            continue
        found = Egfr(float(value), _when(obs), ref(obs))
        if best is None or found.when > best.when:
            best = found
    return best


def build_context(patient: Mapping[str, Any] | None, patient_id: str,
                  allergies: Iterable[Mapping[str, Any]], medicines: Iterable[Mapping[str, Any]],
                  observations: Iterable[Mapping[str, Any]], resolver: Resolver, today: date,
                  medication_resources: Mapping[str, Mapping[str, Any]] | None = None,
                  allergies_known: bool = True) -> PatientContext:
    """The context for checking orders for one patient. ``medicines`` may hold
    MedicationRequests and MedicationStatements in any status (inactive ones are skipped);
    ``medication_resources`` are Medication resources by ``Medication/id``."""
    current = []
    for res in medicines:
        if res.get("status") in _ACTIVE.get(str(res.get("resourceType")), ()):
            current.append(CurrentMedicine(ref(res), res, resolver.medication(res, medication_resources)))
    return PatientContext(patient_id, age_on((patient or {}).get("birthDate"), today),
                          [a for a in allergies if a.get("resourceType") == "AllergyIntolerance"],
                          current, latest_egfr(observations), allergies_known)
