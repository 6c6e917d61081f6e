"""Duplicate therapy check: the order repeats an ingredient the patient already takes (two
paracetamol-containing products), or adds a second medicine of a class where two at once is
usually an error (two NSAIDs, two ACE inhibitors, two statins...: classes marked
``duplicate_therapy`` in the knowledge base). Warnings, not blocks: some duplication is
deliberate (e.g. a dose change written as a new order before the old one is stopped)."""

from __future__ import annotations

from collections.abc import Sequence

from carerecord.services.medicines.findings import Evidence, Finding, Severity, Source
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.order import Order
from carerecord.services.medicines.resolve import Resolved

NG5 = Source("Medicines optimisation: the safe and effective use of medicines (NG5)", "NICE",
             "https://www.nice.org.uk/guidance/ng5", "2015-03")


def _names(ids: frozenset[str], kb: KnowledgeBase, classes: bool = False) -> str:
    found = [(kb.drug_class(i) if classes else kb.ingredient(i)) for i in sorted(ids)]
    return ", ".join(f.name if f is not None else i for f, i in zip(found, sorted(ids), strict=True))


def check_duplicates(order: Order, others: Sequence[tuple[Evidence, Resolved]],
                     kb: KnowledgeBase) -> list[Finding]:
    """Findings for ``order`` against ``others`` (current medicines and other draft orders)."""
    findings: list[Finding] = []
    dup_classes = frozenset(c for c in order.resolved.classes
                            if (dc := kb.drug_class(c)) is not None and dc.duplicate_therapy)
    for evidence, other in others:
        if evidence.reference and evidence.reference == order.reference:
            continue
        key = f"duplicate|{order.key}|{evidence.reference or evidence.display}"
        same = order.resolved.ingredients & other.ingredients
        if same:
            findings.append(Finding(key, "duplicate", Severity.WARNING,
                                    f"{order.resolved.display} duplicates {evidence.display}"[:139],
                                    f"Both contain {_names(same, kb)}: together they may exceed the maximum dose.",
                                    order.evidence, (evidence,), NG5,
                                    "Stop one of them, or make sure the combined dose is within limits.",
                                    group="duplicate"))
            continue
        shared = dup_classes & other.classes
        if shared:
            findings.append(Finding(key, "duplicate", Severity.WARNING,
                                    f"{order.resolved.display} and {evidence.display} are both "
                                    f"{_names(shared, kb, classes=True)}"[:139],
                                    "Two medicines of the same class add adverse effects, usually without "
                                    "added benefit.", order.evidence, (evidence,), NG5,
                                    "Check whether one is meant to replace the other.", group="duplicate"))
    return findings
