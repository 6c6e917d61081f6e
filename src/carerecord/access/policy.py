"""DATA: which role activities read and write which resource types, and which security labels matter.

A role decides *what* a member of staff may see (issue 4): a receptionist sees demographics and
appointments but no clinical resources; a care worker sees the social care record (care plans,
notes, medicines, allergies, DNACPR and other flags) of the people their provider looks after.
Resource types outside every Patient compartment (Organization, Practitioner, Medication,
terminology...) are reference data: any signed-in caller whose scopes allow them may read them.

A role decides what a member of staff may *write* too (:data:`WRITES`), separately from what they
may read: a receptionist books appointments and registers patients but writes no Condition or
MedicationRequest; a care worker records Observations, care notes (Communication) and care plans,
and gives medicines, but does not prescribe; only prescribers write MedicationRequests, only
registration staff Patients (and so a Patient's S-flag), only administrators the directory.

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
- **Changing the labels** of a resource that exists (adding or removing any ``meta.security``
  coding) is an activity of its own (:data:`LABELLING`, applied by :mod:`carerecord.access.labels`):
  whoever may write a record may not therefore lift its sensitivity or a Patient's S-flag.

Reviewing this module is a clinical-safety task (hazard log H034-H037, H043, H048).
"""

from __future__ import annotations

from carerecord.access.roles import Activity as A
from carerecord.fhir import model

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
LOCAL_SENSITIVITY = "https://carerecord.org/fhir/CodeSystem/sensitivity"

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


# What each activity lets a role WRITE (create, update, patch, delete; in transactions too).
# Deny by default: a type no activity names is written by trusted systems only (terminology,
# conformance resources, SearchParameter, ...). Reading is decided separately (_BY_ACTIVITY);
# a write of an existing resource also needs it visible, so also readable.
CLINICAL_NOTES = frozenset({
    "AdverseEvent", "AllergyIntolerance", "BodyStructure", "CarePlan", "CareTeam", "ClinicalImpression",
    "Communication", "CommunicationRequest", "Composition", "Condition", "DetectedIssue", "DeviceRequest",
    "DeviceUseStatement", "DiagnosticReport", "DocumentReference", "Encounter", "EpisodeOfCare",
    "FamilyMemberHistory", "Flag", "Goal", "ImagingStudy", "Immunization", "List", "Media",
    "MedicationStatement", "NutritionOrder", "Observation", "Procedure", "Provenance", "QuestionnaireResponse",
    "RiskAssessment", "ServiceRequest", "Specimen", "Task"})
DIRECTORY = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole", "HealthcareService",
                       "Endpoint"})
WRITES: dict[A, frozenset[str]] = {
    A.RECORD_CLINICAL_NOTES: CLINICAL_NOTES,
    A.RECORD_OBSERVATIONS: frozenset({"Observation", "QuestionnaireResponse"}),
    # a prescription, the checks' findings (DetectedIssue) and the pharmacy's work item (Task)
    A.PRESCRIBE: frozenset({"MedicationRequest", "MedicationStatement", "DetectedIssue", "Task", "Medication"}),
    A.VERIFY_AND_DISPENSE: frozenset({"MedicationDispense", "MedicationRequest", "DetectedIssue", "Task",
                                      "Medication"}),
    A.ADMINISTER_MEDICINES: frozenset({"MedicationAdministration", "DetectedIssue"}),
    A.RECORD_SOCIAL_CARE_NOTES: frozenset({"CarePlan", "Goal", "Communication", "Task"}),
    A.MANAGE_APPOINTMENTS: APPOINTMENTS,
    A.REGISTER_PATIENTS: DEMOGRAPHICS,
    A.MANAGE_CONSENT: frozenset({"Consent"}),
    A.MANAGE_DIRECTORY: DIRECTORY,
}


# Who may add or remove security labels (meta.security) on a resource that exists, by activity:
# OWN_RECORDS, on what their organisation wrote (its meta.source, which the guard stamps);
# REGISTERED_PATIENTS, on the records of patients registered with their organisation (the
# privacy function: a Patient's S-flag, which the registering practice asks for). Either way
# only on what they may see. Creating a resource with labels needs only the type's write
# activity: the creator's organisation is stamped as its author, and a new label hides nothing
# that was shown. Trusted systems state labels as they state meta.source; patients and proxies
# change none.
OWN_RECORDS, REGISTERED_PATIENTS = "own-records", "registered-patients"
LABELLING: dict[A, frozenset[str]] = {
    A.LABEL_OWN_RECORDS: frozenset({OWN_RECORDS}),
    A.LABEL_REGISTERED_RECORDS: frozenset({OWN_RECORDS, REGISTERED_PATIENTS}),
}


def labelling_scopes(activities: frozenset[A]) -> frozenset[str]:
    """The scopes (:data:`OWN_RECORDS`, :data:`REGISTERED_PATIENTS`) in which the activities let
    their holder add or remove security labels; empty: none."""
    out: set[str] = set()
    for activity in activities:
        out |= LABELLING.get(activity, frozenset())
    return frozenset(out)


# Patients and proxies write records of their own compartment (the reference checks keep them
# to their own) and Tasks (a repeat request: R4 has no Task in the Patient compartment), never
# reference data.
PATIENT_WRITES_BEYOND_COMPARTMENT = frozenset({"Task"})


def may_write_type(activities: frozenset[A], res_type: str) -> bool:
    """Whether the activities allow writing ``res_type`` at all (before the resource is looked at)."""
    return any(res_type in WRITES.get(activity, frozenset()) for activity in activities)


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
