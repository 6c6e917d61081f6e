"""DATA: which role activities reach which resource types, and which security labels matter.

A role decides *what* a member of staff may see (issue 4): a receptionist sees demographics and
appointments but no clinical resources; a care worker sees the social care record (care plans,
notes, medicines, allergies, DNACPR and other flags) of the people their provider looks after.
Resource types outside every Patient compartment (Organization, Practitioner, Medication,
terminology...) are reference data: any signed-in caller whose scopes allow them may read them.

Security labels (``meta.security``), http://hl7.org/fhir/R4/security-labels.html:

- **Sensitive** records are labelled with v3 ActCode sensitivity codes (``SEX`` sexuality and
  reproductive health, ``STD``, ``HIV``, ``SDV`` sexual assault, abuse or domestic violence, ``MH``
  mental health, ``PSY``, ``PSYTHPN``, ``BH``, ``ETH``, ``SUD``, ``GDIS``, ``SPI``, ``TBOO``), or with
  v3 Confidentiality ``R`` (restricted) / ``V`` (very restricted), or with this project's local
  ``safeguarding`` code (v3 has no safeguarding sensitivity). They are visible outside the
  authoring organisation (``meta.source`` naming ``Organization/<id>``) only with explicit consent
  or break-glass.
- A **restricted (S-flagged) patient** is a Patient resource labelled v3 Confidentiality ``R`` or
  ``V`` (PDS's "restricted" flag): see :mod:`carerecord.access.redaction`.

Reviewing this module is a clinical-safety task (hazard log H034-H037).
"""

from __future__ import annotations

from carerecord.access.roles import Activity as A
from carerecord.fhir import model

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
LOCAL_SENSITIVITY = "https://carerecord.org/fhir/CodeSystem/sensitivity"
OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"

SENSITIVE: frozenset[tuple[str, str]] = frozenset(
    {(ACT_CODE, c) for c in ("SEX", "STD", "HIV", "SDV", "MH", "PSY", "PSYTHPN", "BH", "ETH", "SUD",
                             "GDIS", "SPI", "TBOO")}
    | {(CONFIDENTIALITY, "R"), (CONFIDENTIALITY, "V"), (LOCAL_SENSITIVITY, "safeguarding")})
RESTRICTED_PATIENT: frozenset[tuple[str, str]] = frozenset({(CONFIDENTIALITY, "R"), (CONFIDENTIALITY, "V")})

DEMOGRAPHICS = frozenset({"Patient", "RelatedPerson", "Person"})
APPOINTMENTS = frozenset({"Appointment", "AppointmentResponse", "Schedule", "Slot"})
SOCIAL_CARE = frozenset({"CarePlan", "CareTeam", "EpisodeOfCare", "Goal", "Communication", "Flag",
                         "AllergyIntolerance", "MedicationRequest", "MedicationStatement",
                         "MedicationAdministration", "MedicationDispense", "Consent", "Task"})

_BY_ACTIVITY: dict[A, frozenset[str]] = {
    A.READ_DEMOGRAPHICS: DEMOGRAPHICS,
    A.MANAGE_APPOINTMENTS: APPOINTMENTS | DEMOGRAPHICS,
    A.REGISTER_PATIENTS: DEMOGRAPHICS,
    A.READ_SOCIAL_CARE_RECORD: SOCIAL_CARE | DEMOGRAPHICS | APPOINTMENTS,
    A.RECORD_SOCIAL_CARE_NOTES: SOCIAL_CARE,
    A.MANAGE_CONSENT: frozenset({"Consent"}) | DEMOGRAPHICS,
}


def patient_data_types() -> frozenset[str]:
    """Resource types that can be in a Patient compartment (plus Patient itself)."""
    return frozenset(model.patient_compartment()) | {"Patient"}


def readable_types(activities: frozenset[A]) -> frozenset[str] | None:
    """The patient-data types a holder of ``activities`` may read; None means every type (the
    clinical record). Reference data (types in no compartment) is not limited here."""
    if A.READ_CLINICAL_RECORD in activities:
        return None
    out: set[str] = set()
    for activity in activities:
        out |= _BY_ACTIVITY.get(activity, frozenset())
    return frozenset(out)


def may_read_type(activities: frozenset[A], res_type: str) -> bool:
    """Whether the activities allow reading ``res_type`` at all (before any relationship)."""
    if res_type not in patient_data_types():
        return True
    allowed = readable_types(activities)
    return allowed is None or res_type in allowed


def labels(resource: dict[str, object]) -> set[tuple[str, str]]:
    """The (system, code) pairs of a resource's ``meta.security``."""
    meta = resource.get("meta")
    out: set[tuple[str, str]] = set()
    if isinstance(meta, dict):
        for c in meta.get("security") or []:
            if isinstance(c, dict):
                out.add((str(c.get("system", "")), str(c.get("code", ""))))
    return out


def authoring_organization(resource: dict[str, object]) -> str | None:
    """The organisation that wrote a resource, from ``meta.source`` ending in
    ``Organization/<id>`` (the guard stamps it on staff writes); None when unknown."""
    meta = resource.get("meta")
    source = meta.get("source") if isinstance(meta, dict) else None
    if isinstance(source, str) and "Organization/" in source:
        return "Organization/" + source.rsplit("Organization/", 1)[1].split("#")[0].split("/")[0]
    return None
