"""Roles and the activities they allow, modelled on the NHS national RBAC database.

In the NHS a member of staff holds one or more job roles at organisations (a PractitionerRole
here) and, when they sign in, acts in exactly one. The role decides *what* they can do (the
activities below: a receptionist books appointments but does not read the clinical record; a
pharmacist verifies and dispenses); the organisation decides *whose* records they reach, which
is part 2 of issue 4 (legitimate relationships). The mapping from job role codes to roles is
data, in :mod:`carerecord.access.role_table`, so it can be reviewed without reading code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Activity(StrEnum):
    """Things a person may do with the record, named as the national RBAC activities are (by
    purpose, not by FHIR interaction)."""

    READ_DEMOGRAPHICS = "read-demographics"
    READ_CLINICAL_RECORD = "read-clinical-record"
    RECORD_CLINICAL_NOTES = "record-clinical-notes"
    RECORD_OBSERVATIONS = "record-observations"
    PRESCRIBE = "prescribe"
    VERIFY_AND_DISPENSE = "verify-and-dispense"
    ADMINISTER_MEDICINES = "administer-medicines"
    READ_SOCIAL_CARE_RECORD = "read-social-care-record"
    RECORD_SOCIAL_CARE_NOTES = "record-social-care-notes"
    MANAGE_APPOINTMENTS = "manage-appointments"
    REGISTER_PATIENTS = "register-patients"
    MANAGE_CONSENT = "manage-consent"
    # Security labels (meta.security: sensitivity, confidentiality, a Patient's S-flag) on a
    # record that exists, added or removed (access/labels.py): on what their organisation wrote,
    # or, for the privacy function, on the records of patients registered with it.
    LABEL_OWN_RECORDS = "label-own-records"
    LABEL_REGISTERED_RECORDS = "label-registered-records"
    EMERGENCY_ACCESS = "emergency-access"  # break-glass, with a reason
    REVIEW_ACCESS = "review-access"  # the privacy officer's queue of self-claims and break-glass
    VIEW_AUDIT = "view-audit"
    MANAGE_USERS = "manage-users"
    MANAGE_CLIENTS = "manage-clients"
    MANAGE_DIRECTORY = "manage-directory"  # write organisations, locations, staff and their roles
    LAUNCH_APPS = "launch-apps"  # start a SMART app in a patient's context (EHR launch)


@dataclass(frozen=True, slots=True)
class Role:
    """A role of the table: its key, a human title, the job role codes that map to it (as
    (system, code) pairs: SDS job role names and SNOMED CT occupations) and its activities."""

    key: str
    title: str
    codes: frozenset[tuple[str, str]]
    activities: frozenset[Activity]

    def may(self, activity: Activity) -> bool:
        return activity in self.activities


class RoleTable:
    """The roles, looked up by key or by a PractitionerRole's codes."""

    def __init__(self, roles: Iterable[Role]) -> None:
        self.roles = {r.key: r for r in roles}
        self._by_code: dict[tuple[str, str], Role] = {}
        for role in self.roles.values():
            for code in role.codes:
                if code in self._by_code:
                    raise ValueError(f"job role code {code} maps to both {self._by_code[code].key} and {role.key}")
                self._by_code[code] = role

    def __getitem__(self, key: str) -> Role:
        return self.roles[key]

    def for_codes(self, codings: Iterable[tuple[str, str]]) -> Role | None:
        """The role of the first coding the table knows, or None (no activities at all: an
        unknown job role is denied everything, not given a default)."""
        for coding in codings:
            role = self._by_code.get(coding)
            if role is not None:
                return role
        return None

    def for_practitioner_role(self, resource: Mapping[str, Any]) -> Role | None:
        """The role a PractitionerRole resource's ``code`` codings map to."""
        return self.for_codes((c.get("system", ""), c.get("code", ""))
                              for concept in resource.get("code", []) for c in concept.get("coding", []))


def default_table() -> RoleTable:
    """The built-in table (:mod:`carerecord.access.role_table`)."""
    from carerecord.access.role_table import ROLES

    return RoleTable(ROLES)
