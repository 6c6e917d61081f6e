"""A small care community in the store for the workflow tests: a hospital trust with its
pharmacy, a GP practice, a community pharmacy, a doctor (GMC), a nurse (NMC), a pharmacist
(GPhC) and a patient with an NHS number, a wristband number, a GP practice and a nominated
pharmacy. ``step`` runs one workflow step in its own unit, as the API does."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from carerecord.services.medicines.prescription import NOMINATED_PHARMACY, ODS
from carerecord.services.medicines.records import Records
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository
from tests.conftest import BASE
from tests.services.medicines.helpers import KB, RESOLVER  # noqa: F401 - re-exported for the tests

T = TypeVar("T")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 09:00 in London (GMT in November)
NHS_NUMBER = "9990000018"
WRISTBAND = "https://carerecord.org/Id/wristband"
DOCTOR, NURSE, PHARMACIST, GP = ("PractitionerRole/doctor", "PractitionerRole/nurse",
                                 "PractitionerRole/pharmacist", "PractitionerRole/gp")
HOSPITAL_PHARMACY, COMMUNITY_PHARMACY = "hospital-pharmacy", "community-pharmacy"
SNOMED = "http://snomed.info/sct"


def _org(rid: str, name: str, ods: str) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": rid, "name": name, "identifier": [{"system": ODS, "value": ods}]}


def _staff(key: str, system: str, number: str, org: str) -> list[dict[str, Any]]:
    return [{"resourceType": "Practitioner", "id": key, "name": [{"family": key.title()}],
             "identifier": [{"system": system, "value": number}]},
            {"resourceType": "PractitionerRole", "id": key, "practitioner": {"reference": f"Practitioner/{key}"},
             "organization": {"reference": f"Organization/{org}"}}]


def patient(pid: str = "p1", nhs: str = NHS_NUMBER) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1950-03-01",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs},
                           {"system": WRISTBAND, "value": f"RZZ-{pid}"}],
            "generalPractitioner": [{"reference": "Organization/practice"}],
            "extension": [{"url": NOMINATED_PHARMACY, "valueReference": {"reference": f"Organization/{COMMUNITY_PHARMACY}"}}]}


def build(repo: Repository) -> None:
    """Write the community (idempotent PUTs)."""
    resources = [_org("trust", "Demo Trust", "RZZ"), _org(HOSPITAL_PHARMACY, "Trust Pharmacy", "RZZ01"),
                 _org("practice", "Demo Practice", "Y90001"), _org(COMMUNITY_PHARMACY, "High St Pharmacy", "FZ001"),
                 *_staff("doctor", "https://fhir.hl7.org.uk/Id/gmc-number", "7100001", "trust"),
                 *_staff("nurse", "https://fhir.hl7.org.uk/Id/nmc-number", "12A3456B", "trust"),
                 *_staff("pharmacist", "https://fhir.hl7.org.uk/Id/gphc-number", "2200001", COMMUNITY_PHARMACY),
                 *_staff("gp", "https://fhir.hl7.org.uk/Id/gmc-number", "6095103", "practice"),
                 patient("p1"), patient("p2", "9990000026")]
    step(repo, lambda r: [r.update(x) for x in resources])


def step(repo: Repository, fn: Callable[[Records], T]) -> T:
    """Run ``fn`` on Records bound to one new unit (committed when it returns)."""
    with repo.unit() as unit:
        return fn(Records(Interactions(repo, BASE), unit))


def read(repo: Repository, res_type: str, res_id: str) -> dict[str, Any]:
    return step(repo, lambda r: r.get(res_type, res_id))


def save(repo: Repository, resource: dict[str, Any]) -> dict[str, Any]:
    """Create (no id) or write (with id) ``resource``; the stored version."""
    return step(repo, lambda r: r.update(resource) if "id" in resource else r.create(resource))


def coded(text: str, code: str = "", display: str = "") -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if code:
        concept["coding"] = [{"system": SNOMED, "code": code, "display": display or text}]
    return concept


def inpatient_order(medicine: str, *, pid: str = "p1", timing: dict[str, Any] | None = None,
                    dose: float = 1, unit: str = "tablet", as_needed: bool = False,
                    status: str = "draft", text: str = "") -> dict[str, Any]:
    """A draft inpatient MedicationRequest for ``medicine`` (text), once daily by default."""
    dosage: dict[str, Any] = {"text": text or f"{dose:g} {unit}",
                              "timing": {"repeat": timing or {"frequency": 1, "period": 1, "periodUnit": "d"}},
                              "route": {"text": "Oral"},
                              "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit}}]}
    if as_needed:
        dosage["asNeededBoolean"] = True
    return {"resourceType": "MedicationRequest", "status": status, "intent": "order",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                      "code": "inpatient"}]}],
            "medicationCodeableConcept": coded(medicine), "subject": {"reference": f"Patient/{pid}"},
            "authoredOn": "2026-11-22T10:00:00Z", "requester": {"reference": DOCTOR},
            "dosageInstruction": [dosage],
            "dispenseRequest": {"performer": {"reference": f"Organization/{HOSPITAL_PHARMACY}"}}}


def allergy(substance: str, pid: str = "p1", criticality: str = "high") -> dict[str, Any]:
    return {"resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{pid}"},
            "code": {"text": substance}, "criticality": criticality, "type": "allergy", "category": ["medication"],
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                           "code": "active"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]}}
