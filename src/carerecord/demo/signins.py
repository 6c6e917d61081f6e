"""Demo sign-ins: one account for each persona of issue 4, linked to the demo community.

Most personas are staff and people the community already has (the first GP practice's GP and
receptionist, a staff nurse on the Acute Medical Unit, the first community pharmacist, a
paramedic, a care worker at the first care home; demo people 0 and 2). The community has no
privacy officer, administrator or proxy, so :func:`extra_resources` adds them: a privacy
officer and an administrator at the hospital trust, a privacy officer at the first GP practice
(each privacy officer's queue holds access by their own organisation's staff and to the patients
it registers, so the practice's is the one who reviews a break-glass into its patients' records),
and a RelatedPerson (person 1's daughter) with delegated access to person 1's record.

Pure data: the CLI creates the accounts (carerecord.access.users) after loading the community.
The password is the same for every persona and printed in the README: these are demo accounts
on synthetic data, never to be created on a server holding real records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carerecord.demo.organisations import HOSPITAL_TRUST

DEMO_PASSWORD = "carerecord-demo"
FIRST_PRACTICE = "demo-org-gp0"  # organisations.practice(0, seed).organization, whatever the seed
LOCAL_ROLES = "https://carerecord.org/fhir/CodeSystem/access-role"  # as carerecord.access.role_table.LOCAL


@dataclass(frozen=True, slots=True)
class Persona:
    username: str
    kind: str  # staff | patient | proxy
    fhir_user: str
    description: str


def _patient(index: int) -> str:
    return f"demo-patient-{index:06d}"


PERSONAS: tuple[Persona, ...] = (
    Persona("gp", "staff", "Practitioner/demo-staff-gp0-0", "GP at the first GP practice"),
    Persona("ward-nurse", "staff", "Practitioner/demo-staff-hospital-2", "Staff nurse, Acute Medical Unit"),
    Persona("pharmacist", "staff", "Practitioner/demo-staff-pharmacy0-0", "Community pharmacist"),
    Persona("paramedic", "staff", "Practitioner/demo-staff-ambulance-0", "Paramedic, ambulance trust"),
    Persona("care-worker", "staff", "Practitioner/demo-staff-carehome0-2", "Care worker at the first care home"),
    Persona("receptionist", "staff", "Practitioner/demo-staff-gp0-8", "Receptionist at the first GP practice"),
    Persona("privacy-officer", "staff", "Practitioner/demo-staff-privacy-officer", "Privacy officer, hospital trust"),
    Persona("practice-privacy-officer", "staff", "Practitioner/demo-staff-gp0-privacy-officer",
            "Privacy officer at the first GP practice"),
    Persona("administrator", "staff", "Practitioner/demo-staff-administrator", "Administrator, hospital trust"),
    Persona("patient", "patient", f"Patient/{_patient(0)}", "Demo person 0, their own record"),
    Persona("proxy", "proxy", "RelatedPerson/demo-proxy-000001", "Person 1's daughter, with delegated access"),
    Persona("other-patient", "patient", f"Patient/{_patient(2)}", "Demo person 2, unrelated to the others"),
)


def _staff(key: str, family: str, given: str, code: str, display: str,
           organization: str = HOSPITAL_TRUST) -> list[dict[str, Any]]:
    practitioner = {"resourceType": "Practitioner", "id": f"demo-staff-{key}", "active": True,
                    "name": [{"use": "official", "family": family, "given": [given]}]}
    role = {"resourceType": "PractitionerRole", "id": f"demo-role-{key}", "active": True,
            "practitioner": {"reference": f"Practitioner/demo-staff-{key}"},
            "organization": {"reference": f"Organization/{organization}"},
            "code": [{"coding": [{"system": LOCAL_ROLES, "code": code, "display": display}]}]}
    return [practitioner, role]


def extra_resources() -> list[dict[str, Any]]:
    """The Practitioners, PractitionerRoles and RelatedPerson the personas need beyond the
    generated community (which must be loaded first: they refer to its trust, its first GP
    practice and person 1)."""
    proxy = {"resourceType": "RelatedPerson", "id": "demo-proxy-000001", "active": True,
             "patient": {"reference": f"Patient/{_patient(1)}"},
             "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                           "code": "DAU", "display": "natural daughter"}]}],
             "name": [{"use": "official", "family": "Proxy", "given": ["Demo"]}]}
    return [*_staff("privacy-officer", "Okafor", "Grace", "privacy-officer", "Privacy officer"),
            *_staff("gp0-privacy-officer", "Adeyemi", "Tola", "privacy-officer", "Privacy officer",
                    FIRST_PRACTICE),
            *_staff("administrator", "Lindqvist", "Sam", "administrator", "Administrator"),
            proxy]
