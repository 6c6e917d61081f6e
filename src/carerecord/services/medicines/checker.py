"""Running every check on an order, and the signing gate.

``check_orders`` checks each order against the patient's allergies, current medicines and the
other orders being signed with it (so two orders signed together for one patient are checked
against each other), and its dose. ``sign_gate`` decides whether orders may be signed: every
critical finding must carry an override with a reason; each override becomes a DetectedIssue
with the reason as its mitigation (``detected_issue.from_override``), for the workflow to
write with the signed order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carerecord.services.medicines.allergy_check import check_allergies
from carerecord.services.medicines.detected_issue import Override, from_override
from carerecord.services.medicines.dose_check import check_dose
from carerecord.services.medicines.duplicate_check import check_duplicates
from carerecord.services.medicines.findings import Evidence, Finding, Severity, Source, most_severe_first
from carerecord.services.medicines.interaction_check import check_interactions
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.order import Order
from carerecord.services.medicines.patient import PatientContext
from carerecord.services.medicines.resolve import Resolved, Resolver

UNCHECKED_SOURCE = Source("carerecord medicines checks: unrecognised medicine")


def unresolved(order: Order) -> Finding:
    """The finding for an order whose medicine could not be identified: nothing was checked."""
    return Finding(f"unchecked|{order.key}", "unchecked", Severity.WARNING,
                   f"\"{order.resolved.display}\" could not be checked"[:139],
                   "The medicine is not coded with a dm+d code the system recognises and its name matched no "
                   "known medicine, so allergies, interactions, duplicates and dose were NOT checked.",
                   order.evidence, (), UNCHECKED_SOURCE,
                   "Choose the medicine from the dm+d picklist, or check it by hand against the patient's "
                   "allergies and medicines.")


def check_order(order: Order, ctx: PatientContext, kb: KnowledgeBase, resolver: Resolver,
                others: Sequence[Order] = ()) -> list[Finding]:
    """Every finding for one order, most severe first. ``others`` are the other orders being
    placed or signed with it."""
    if not order.resolved.checked:
        return [unresolved(order)]
    against: list[tuple[Evidence, Resolved]] = [(Evidence(m.reference, m.resolved.display), m.resolved)
                                                for m in ctx.medicines]
    against += [(o.evidence, o.resolved) for o in others if o is not order]
    findings = check_allergies(order, ctx, kb, resolver)
    findings += check_interactions(order, against, kb)
    findings += check_duplicates(order, against, kb)
    findings += check_dose(order, ctx, kb)
    return most_severe_first(findings)


def check_orders(orders: Sequence[Order], ctx: PatientContext, kb: KnowledgeBase,
                 resolver: Resolver) -> dict[int, list[Finding]]:
    """Findings per order (by position in ``orders``), each checked against the others."""
    return {n: check_order(o, ctx, kb, resolver, orders) for n, o in enumerate(orders)}


@dataclass(slots=True)
class Gate:
    """The outcome of trying to sign: ``blocked`` lists critical findings without an
    override (signing must not go ahead while it is non-empty); ``detected_issues`` are the
    DetectedIssue resources recording each override, to be written with the order."""

    blocked: list[Finding] = field(default_factory=list)
    detected_issues: list[dict[str, Any]] = field(default_factory=list)

    @property
    def can_sign(self) -> bool:
        return not self.blocked


def sign_gate(findings: Sequence[Finding], overrides: Mapping[str, Override], patient_id: str,
              when: datetime) -> Gate:
    """Whether orders with ``findings`` may be signed given ``overrides`` (by finding key).
    An override without a reason (no coded reason and no comment) does not count."""
    gate = Gate()
    for f in findings:
        ov = overrides.get(f.key)
        if ov is not None and ov.has_reason:
            gate.detected_issues.append(from_override(f, ov, patient_id, when))
        elif f.blocks_signing:
            gate.blocked.append(f)
    return gate
