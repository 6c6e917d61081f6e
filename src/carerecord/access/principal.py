"""The Principal: who a request acts as. Every later access decision keys on it.

Four kinds, as in the NHS model (issue 4):

- ``staff``: a Practitioner acting in one selected PractitionerRole at one organisation. The
  role's activities say what they may do; the organisation says whose records they reach.
- ``patient``: a person reaching their own record (their Patient).
- ``proxy``: a RelatedPerson with delegated access (a parent, a carer), reaching the patients
  they have been granted.
- ``system``: a registered client acting for itself (SMART Backend Services), with no user.

A Principal is built only from a verified token (ours or a trusted provider's), never from
request parameters, and is immutable. Its scopes narrow it further; part 2's guarded repository
combines both with relationships and consent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from carerecord.access.roles import Activity
from carerecord.access.scopes import ScopeSet


class Kind(StrEnum):
    STAFF = "staff"
    PATIENT = "patient"
    PROXY = "proxy"
    SYSTEM = "system"


class Purpose(StrEnum):
    """Why a system client reaches the record, as registered with the client
    (``carerecord clients add --purpose``). Direct care is the default. Secondary use
    (analytics, research, planning) is held to the national data opt-out: the guard leaves
    every patient who registered one out of everything such a client reaches."""

    DIRECT_CARE = "direct-care"
    SECONDARY_USE = "secondary-use"


@dataclass(frozen=True, slots=True)
class SelectedRole:
    """The PractitionerRole a member of staff chose at sign-in ("PractitionerRole/x"), the role
    key of the role table, the organisation ("Organization/x") it is held at, and the
    activities the table gives that role now."""

    practitioner_role: str
    role: str
    organization: str | None
    activities: frozenset[Activity]


@dataclass(frozen=True, slots=True)
class LaunchContext:
    """SMART launch context carried by the token: the patient and encounter in context and
    whether the app must show a patient banner."""

    patient: str | None = None
    encounter: str | None = None
    need_patient_banner: bool = False

    def to_claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.patient:
            out["patient"] = self.patient
        if self.encounter:
            out["encounter"] = self.encounter
        return out


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request. ``subject`` is the fhirUser ("Practitioner/x", "Patient/x",
    "RelatedPerson/x") for people and the client id for systems; ``patients`` are the Patient
    ids (plain ids, as SMART's ``patient`` claim) a patient or proxy may reach (empty for staff
    and systems, whose reach part 2 decides);
    ``token_id`` is the jti of the token it came from (for revocation and audit); ``purpose``
    is the registered purpose of a system client (people act for direct care)."""

    kind: Kind
    subject: str
    client_id: str
    scopes: ScopeSet
    issuer: str
    token_id: str
    expires_at: int
    role: SelectedRole | None = None
    patients: tuple[str, ...] = ()
    launch: LaunchContext = field(default_factory=LaunchContext)
    display: str | None = None
    purpose: Purpose = Purpose.DIRECT_CARE

    @property
    def fhir_user(self) -> str | None:
        """The FHIR resource of the person (None for a system client)."""
        return None if self.kind is Kind.SYSTEM else self.subject

    @property
    def scope_contexts(self) -> tuple[str, ...]:
        """Which SMART scope contexts apply: ``system/`` for systems, otherwise ``user/`` and
        ``patient/`` (the latter is narrowed to the launch patient by part 2)."""
        return ("system",) if self.kind is Kind.SYSTEM else ("user", "patient")

    def may(self, activity: Activity) -> bool:
        """Whether the selected role grants ``activity`` (only staff have roles)."""
        return self.role is not None and activity in self.role.activities

    def describe(self) -> str:
        """A short description for logs and audit, with no token material in it."""
        role = f" as {self.role.role} ({self.role.practitioner_role})" if self.role else ""
        return f"{self.kind.value} {self.subject}{role} via {self.client_id}"
