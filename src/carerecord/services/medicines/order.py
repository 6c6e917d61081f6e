"""The order under check: a MedicationRequest (draft or active) resolved to ingredients and
classes, with its dosage lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carerecord.services.medicines.dosage import listed
from carerecord.services.medicines.findings import Evidence
from carerecord.services.medicines.patient import ref
from carerecord.services.medicines.resolve import Resolved, Resolver


@dataclass(frozen=True, slots=True)
class Order:
    reference: str
    resolved: Resolved
    dosages: Sequence[Mapping[str, Any]]
    resource: Mapping[str, Any]

    @property
    def evidence(self) -> Evidence:
        return Evidence(self.reference, self.resolved.display)

    @property
    def key(self) -> str:
        """Stable id for finding keys: the reference, or the medicine named for a draft
        without an id."""
        return self.reference or f"draft:{self.resolved.display}"


def order_from(resource: Mapping[str, Any], resolver: Resolver,
               medications: Mapping[str, Mapping[str, Any]] | None = None) -> Order:
    """An ``Order`` for a MedicationRequest (its medication resolved, its dosage lines)."""
    return Order(ref(resource), resolver.medication(resource, medications),
                 listed(resource.get("dosageInstruction")), resource)
