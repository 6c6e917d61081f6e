"""DATA: the role table, modelled on the NHS national RBAC database.

Each row maps job role codes to a role and the role to its activities. Codes:

- SDS job role names (``https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName``, checked in
  ``shared/data/uk-core/codesystems/CodeSystem-UKCore-SDSJobRoleName.xml``); these are what the
  demo community's PractitionerRoles carry.
- SNOMED CT occupations where well known (62247001 General practitioner, 158965000 Medical
  practitioner, 224535009 Registered nurse, 46255001 Pharmacist, 397897005 Paramedic).
- SDS has no job role for a privacy officer (in the NHS a Caldicott/privacy function given by
  an RBAC activity, not a job); the table uses a local code system for it and for the
  platform administrator, :data:`LOCAL`.

Reviewing this table is a clinical-safety task: an activity added here is granted to every
holder of the role on the next request.
"""

from __future__ import annotations

from carerecord.access.roles import Activity as A
from carerecord.access.roles import Role

SDS = "https://fhir.hl7.org.uk/CodeSystem/UKCore-SDSJobRoleName"
SNOMED = "http://snomed.info/sct"
LOCAL = "https://carerecord.org/fhir/CodeSystem/access-role"

_CLINICAL_READ = {A.READ_DEMOGRAPHICS, A.READ_CLINICAL_RECORD, A.READ_SOCIAL_CARE_RECORD}
_CLINICIAN = _CLINICAL_READ | {A.RECORD_CLINICAL_NOTES, A.RECORD_OBSERVATIONS, A.MANAGE_CONSENT,
                               A.EMERGENCY_ACCESS, A.LAUNCH_APPS, A.LABEL_OWN_RECORDS}


def _codes(*pairs: tuple[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(pairs)


ROLES: tuple[Role, ...] = (
    Role("doctor", "Doctor", _codes(
        (SDS, "R0260"),  # General Medical Practitioner
        (SDS, "R0050"),  # Consultant
        (SDS, "R0110"),  # Specialist Registrar
        (SNOMED, "62247001"), (SNOMED, "158965000")),
        frozenset(_CLINICIAN | {A.PRESCRIBE, A.ADMINISTER_MEDICINES, A.MANAGE_APPOINTMENTS})),
    Role("nurse", "Nurse", _codes(
        (SDS, "R0620"),  # Staff Nurse
        (SDS, "R0610"),  # Sister/Charge Nurse
        (SDS, "R0580"),  # Nurse Manager
        (SDS, "R9710"),  # Residential Manager (the demo's care home managers are nurses)
        (SNOMED, "224535009")),
        frozenset(_CLINICIAN | {A.ADMINISTER_MEDICINES, A.MANAGE_APPOINTMENTS, A.RECORD_SOCIAL_CARE_NOTES})),
    Role("pharmacist", "Pharmacist", _codes((SDS, "R1290"), (SNOMED, "46255001")),
         frozenset(_CLINICIAN | {A.VERIFY_AND_DISPENSE, A.PRESCRIBE})),
    Role("paramedic", "Paramedic", _codes((SDS, "R1070"), (SNOMED, "397897005")),
         frozenset(_CLINICIAN | {A.ADMINISTER_MEDICINES})),
    Role("care-worker", "Care worker", _codes(
        (SDS, "R9725"),  # Residential Care Staff
        (SDS, "R9630"),  # Home Help
        (SDS, "R9620"),  # Home Care Organiser
        (SDS, "R1480")),  # Healthcare Assistant
        frozenset({A.READ_DEMOGRAPHICS, A.READ_SOCIAL_CARE_RECORD, A.RECORD_SOCIAL_CARE_NOTES,
                   A.RECORD_OBSERVATIONS, A.ADMINISTER_MEDICINES})),
    Role("receptionist", "Receptionist", _codes(
        (SDS, "R1730"),  # Receptionist
        (SDS, "R1720"),  # Clerical Worker
        (SDS, "R1760")),  # Medical Secretary
        frozenset({A.READ_DEMOGRAPHICS, A.MANAGE_APPOINTMENTS, A.REGISTER_PATIENTS})),
    Role("privacy-officer", "Privacy officer", _codes((LOCAL, "privacy-officer")),
         frozenset({A.READ_DEMOGRAPHICS, A.REVIEW_ACCESS, A.VIEW_AUDIT, A.MANAGE_CONSENT,
                    A.LABEL_OWN_RECORDS, A.LABEL_REGISTERED_RECORDS})),
    Role("administrator", "Administrator", _codes(
        (LOCAL, "administrator"),
        (SDS, "R0003")),  # Clinical Application Administrator
        frozenset({A.MANAGE_USERS, A.MANAGE_CLIENTS, A.MANAGE_DIRECTORY, A.VIEW_AUDIT})),
)
