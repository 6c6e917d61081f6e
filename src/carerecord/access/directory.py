"""The FHIR resources that say who someone is here: a Practitioner's PractitionerRoles, a
proxy's RelatedPersons and the patients they name, a Patient found by NHS number.

Sign-in reads them straight from the store (there is no principal yet to guard the read with),
and only to decide what a new grant contains; nothing here is returned to a client except the
role choices offered to the person signing in, who holds those roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from carerecord.access.roles import Role, RoleTable, default_table
from carerecord.errors import FhirError
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"


@dataclass(frozen=True, slots=True)
class RoleChoice:
    """A PractitionerRole a person may act in: its id, the table role it maps to (None: no
    activities), its organisation reference and a label for the choice page."""

    practitioner_role: str
    role: Role | None
    organization: str | None
    label: str


class Directory:
    """Identity lookups over one repository."""

    def __init__(self, repo: Repository, roles: RoleTable | None = None) -> None:
        self.repo = repo
        self.interactions = Interactions(repo)
        self.roles = roles or default_table()

    def resource(self, reference: str) -> dict[str, Any] | None:
        """The current resource "Type/id", or None if it does not exist or was deleted."""
        res_type, _, res_id = reference.partition("/")
        try:
            stored = self.repo.read(res_type, res_id)
        except FhirError:
            return None
        return orjson.loads(stored.content) if stored.content else None

    def _find(self, res_type: str, query: str, limit: int = 100) -> list[dict[str, Any]]:
        with self.repo.reading() as conn:
            hits = self.interactions.find(conn, res_type, query, limit)
        found = []
        for hit in hits:
            resource = self.resource(f"{res_type}/{hit.res_id}")
            if resource is not None:
                found.append(resource)
        return found

    def role_choices(self, practitioner: str) -> list[RoleChoice]:
        """The active PractitionerRoles of ``practitioner`` ("Practitioner/x"), in id order."""
        out = []
        for pr in self._find("PractitionerRole", f"practitioner={quote(practitioner, safe='/')}"):
            if pr.get("active") is False:
                continue
            out.append(self.choice(pr))
        return sorted(out, key=lambda c: c.practitioner_role)

    def choice(self, pr: dict[str, Any]) -> RoleChoice:
        role = self.roles.for_practitioner_role(pr)
        org = pr.get("organization", {}).get("reference")
        org_name = pr.get("organization", {}).get("display") or org or "no organisation"
        job = next((c.get("display") for concept in pr.get("code", []) for c in concept.get("coding", [])
                    if c.get("display")), role.title if role else "Unknown role")
        return RoleChoice(f"PractitionerRole/{pr['id']}", role, org, f"{job} at {org_name}")

    def role_by_identifier(self, practitioner: str, value: str) -> RoleChoice | None:
        """The practitioner's PractitionerRole whose id or identifier value is ``value`` (how a
        provider such as NHS CIS2 names the role the person selected)."""
        for choice in self.role_choices(practitioner):
            pr = self.resource(choice.practitioner_role)
            if pr is None:
                continue
            if pr["id"] == value or any(i.get("value") == value for i in pr.get("identifier", [])):
                return choice
        return None

    def granted_patients(self, related_persons: tuple[str, ...]) -> tuple[str, ...]:
        """The Patients ("Patient/x") named by the active RelatedPersons of a proxy."""
        out: list[str] = []
        for ref in related_persons:
            rp = self.resource(ref)
            if rp is None or rp.get("active") is False:
                continue
            patient = rp.get("patient", {}).get("reference")
            if patient and patient not in out:
                out.append(patient)
        return tuple(out)

    def patient_by_nhs_number(self, nhs_number: str) -> str | None:
        """The one Patient with this NHS number ("Patient/x"); None if none or several."""
        digits = "".join(c for c in nhs_number if c.isdigit())
        if len(digits) != 10:
            return None
        found = self._find("Patient", f"identifier={quote(NHS_NUMBER, safe='')}|{digits}", 2)
        return f"Patient/{found[0]['id']}" if len(found) == 1 else None

    def display(self, reference: str) -> str | None:
        """A person's name for the sign-in pages (the first HumanName's text or parts)."""
        resource = self.resource(reference)
        if not resource:
            return None
        for name in resource.get("name", []):
            if name.get("text"):
                return str(name["text"])
            parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
            return " ".join(p for p in parts if p) or None
        return None
