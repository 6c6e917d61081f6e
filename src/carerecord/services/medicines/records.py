"""The medicines workflows' view of the store: reads, searches and writes inside ONE unit of
work (one database transaction), so everything a workflow step writes commits together or not
at all, and what it reads is what it writes against.

Writes go through ``store.interactions`` (validation, reference integrity), exactly like a
write through the FHIR API, so a workflow cannot store what a client could not. The one
extra is :meth:`Records.lock_patient`: signing, administering and approving lock the Patient's
row first, so two steps for one patient at the same moment run one after the other and the
second sees the first's orders (on SQLite every writer already holds the database write lock;
on PostgreSQL this is ``SELECT ... FOR UPDATE``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import quote

import orjson

from carerecord.errors import Gone, Invalid, NotFound
from carerecord.services.medicines.patient import EGFR_CODES, PatientContext, build_context
from carerecord.services.medicines.resolve import Resolver
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Unit

MAX_RESULTS = 1000
Resource = dict[str, Any]


def reference_id(reference: Mapping[str, Any] | None, res_type: str) -> str | None:
    """The id of a relative reference ``{"reference": "Type/id"}`` of ``res_type``, else None."""
    value = str((reference or {}).get("reference") or "")
    kind, _, rid = value.partition("/")
    return rid if kind == res_type and rid and "/" not in rid else None


class Records:
    """Store access for one workflow step, bound to one unit (see module docstring)."""

    def __init__(self, interactions: Interactions, unit: Unit) -> None:
        self.interactions = interactions
        self.unit = unit

    def read(self, res_type: str, res_id: str) -> Resource | None:
        """The current version of ``res_type/res_id`` as this unit sees it, or None."""
        try:
            stored = self.unit.read(res_type, res_id)
        except (NotFound, Gone):
            return None
        return orjson.loads(stored.content) if stored.content is not None else None  # type: ignore[no-any-return]

    def get(self, res_type: str, res_id: str) -> Resource:
        """Like :meth:`read`, but NotFound (404) when there is no such resource."""
        found = self.read(res_type, res_id)
        if found is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        return found

    def search(self, res_type: str, query: str, limit: int = MAX_RESULTS) -> list[Resource]:
        """Current resources of ``res_type`` matching a FHIR search query (as in a URL)."""
        hits = self.interactions.find(self.unit.conn, res_type, query, limit)
        return [orjson.loads(h.content) for h in hits]

    def create(self, resource: Resource) -> Resource:
        """Validate, check references and create; the stored resource (with id and meta)."""
        result = self.interactions.create(self.unit, resource, str(resource.get("resourceType")))
        assert result.stored is not None and result.stored.content is not None
        return orjson.loads(result.stored.content)  # type: ignore[no-any-return]

    def update(self, resource: Resource) -> Resource:
        """Validate, check references and write a new version of ``resource`` (by its id)."""
        res_type, res_id = str(resource.get("resourceType")), str(resource.get("id"))
        result = self.interactions.update(self.unit, res_type, res_id, resource)
        assert result.stored is not None and result.stored.content is not None
        return orjson.loads(result.stored.content)  # type: ignore[no-any-return]

    def lock_patient(self, patient_id: str) -> None:
        """Serialise workflow steps for one patient (see module docstring); Invalid if there is
        no such patient."""
        current = self.unit.current("Patient", patient_id, lock=True)
        if current is None or current.deleted:
            raise Invalid(f"Patient/{patient_id} does not exist", "subject")

    def patient_context(self, patient_id: str, resolver: Resolver, today: date,
                        exclude: frozenset[str] = frozenset()) -> PatientContext:
        """What the safety checks need about the patient, read inside this unit: the Patient,
        allergies, current medicines (less ``exclude``, references such as the order being
        checked or replaced) and eGFR results."""
        subject = quote(f"Patient/{patient_id}", safe="/")
        orders = [m for m in self.search("MedicationRequest", f"subject={subject}&status=active,on-hold")
                  if f"MedicationRequest/{m['id']}" not in exclude]
        # an issue of a repeat is the same medicine as its authorisation: count it once
        held = {f"MedicationRequest/{m['id']}" for m in orders}
        meds = [m for m in orders if not (m.get("intent") == "instance-order"
                                          and any(b.get("reference") in held for b in m.get("basedOn", ())))]
        meds += self.search("MedicationStatement", f"subject={subject}&status=active,intended")
        egfr_codes = ",".join(f"{system}|{code}" for system, code in sorted(EGFR_CODES))
        observations = self.search("Observation", f"subject={subject}&code={quote(egfr_codes, safe=',|')}")
        allergies = self.search("AllergyIntolerance", f"patient={subject}")
        return build_context(self.read("Patient", patient_id), patient_id, allergies, meds, observations,
                             resolver, today)
