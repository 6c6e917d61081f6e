"""Builders of the FHIR resources the medicines tests use, and a one-call checker."""

from __future__ import annotations

from datetime import date
from typing import Any

from carerecord.services.medicines.bundled import bundled
from carerecord.services.medicines.checker import check_order
from carerecord.services.medicines.findings import Finding
from carerecord.services.medicines.order import order_from
from carerecord.services.medicines.patient import build_context
from carerecord.services.medicines.resolve import Resolver

SNOMED = "http://snomed.info/sct"
TODAY = date(2026, 11, 23)
KB = bundled()
RESOLVER = Resolver(KB)


def coded(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": SNOMED, "code": code, "display": display}]}


def dose(value: float, unit: str = "tablet", per_day: float = 1, period_unit: str = "d",
         route: str = "Oral") -> dict[str, Any]:
    return {"timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": period_unit}},
            "route": {"text": route}, "doseAndRate": [{"doseQuantity": {"value": value, "unit": unit}}]}


def order(medicine: str | dict[str, Any], *dosages: dict[str, Any], id: str = "new",
          status: str = "draft") -> dict[str, Any]:
    """A MedicationRequest for ``medicine`` (a name as text, or a CodeableConcept)."""
    concept = {"text": medicine} if isinstance(medicine, str) else medicine
    res: dict[str, Any] = {"resourceType": "MedicationRequest", "id": id, "status": status, "intent": "order",
                           "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": concept}
    if dosages:
        res["dosageInstruction"] = list(dosages)
    return res


def taking(medicine: str | dict[str, Any], id: str = "current", status: str = "active") -> dict[str, Any]:
    return order(medicine, id=id, status=status)


def allergy(substance: str | dict[str, Any], id: str = "a1", criticality: str | None = "high",
            verification: str | None = "confirmed", clinical: str | None = "active",
            type: str = "allergy", category: str | None = "medication") -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "AllergyIntolerance", "id": id, "type": type,
                           "patient": {"reference": "Patient/p1"},
                           "code": {"text": substance} if isinstance(substance, str) else substance}
    if criticality:
        res["criticality"] = criticality
    if verification:
        res["verificationStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": verification}]}
    if clinical:
        res["clinicalStatus"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": clinical}]}
    if category:
        res["category"] = [category]
    return res


NO_KNOWN_DRUG_ALLERGY = allergy(coded("409137002", "No known drug allergy"), id="nkda", criticality=None)


def egfr(value: float, when: str = "2026-11-01", id: str = "egfr1", code: str = "62238-1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "mL/min/{1.73_m2}"}}


def check(new: dict[str, Any], *, allergies: list[dict[str, Any]] | None = None,
          medicines: list[dict[str, Any]] = (), observations: list[dict[str, Any]] = (),  # type: ignore[assignment]
          birth_date: str = "1960-05-01", others: list[dict[str, Any]] = ()) -> list[Finding]:  # type: ignore[assignment]
    """The findings for order ``new`` for a patient with these records (allergies default to
    "no known drug allergy", so tests about other checks see no allergy-status note)."""
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": birth_date}
    ctx = build_context(patient, "p1", [NO_KNOWN_DRUG_ALLERGY] if allergies is None else allergies, medicines,
                        observations, RESOLVER, TODAY)
    mine = order_from(new, RESOLVER)
    return check_order(mine, ctx, KB, RESOLVER, [mine, *(order_from(o, RESOLVER) for o in others)])


def kinds(findings: list[Finding], *only: str) -> list[tuple[str, str]]:
    """(kind, indicator) of each finding, of the kinds ``only`` (default: all but renal)."""
    return [(f.kind, f.severity.indicator) for f in findings if (f.kind in only if only else f.kind != "renal")]
