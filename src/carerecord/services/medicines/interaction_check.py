"""Drug-drug interaction check: the order against each medicine the patient is on (active
prescriptions and medication statements) and each other order being signed with it.

A rule matches when one side names an ingredient or class of the order and the other side
one of the other medicine's. When several rules about the same effect (``group``: bleeding,
QT, serotonin...) match one pair, only the most severe is reported, so a specific rule
(citalopram with another QT drug: contraindicated) is not repeated by a general one (two QT
drugs: severe). Two medicines sharing an ingredient are left to the duplicate check."""

from __future__ import annotations

from collections.abc import Sequence

from carerecord.services.medicines.findings import Evidence, Finding, Severity
from carerecord.services.medicines.knowledge import SEVERITY_OF_RULE, InteractionRule, KnowledgeBase
from carerecord.services.medicines.order import Order
from carerecord.services.medicines.resolve import Resolved

_RANK = {"contraindicated": 4, "severe": 3, "moderate": 2, "mild": 1}


def _matches(rule: InteractionRule, mine: frozenset[str], theirs: frozenset[str]) -> bool:
    return bool((rule.a & mine and rule.b & theirs) or (rule.b & mine and rule.a & theirs))


def check_interactions(order: Order, others: Sequence[tuple[Evidence, Resolved]],
                       kb: KnowledgeBase) -> list[Finding]:
    """Findings for ``order`` against ``others`` (the evidence and resolution of each current
    medicine or other draft order)."""
    mine = order.resolved.keys
    if not mine:
        return []
    rules = kb.interactions(mine)
    findings: list[Finding] = []
    for evidence, other in others:
        if evidence.reference and evidence.reference == order.reference:
            continue
        if not other.checked or order.resolved.ingredients & other.ingredients:
            continue
        theirs = other.keys
        best: dict[str, InteractionRule] = {}
        for rule in rules:
            if _matches(rule, mine, theirs):
                held = best.get(rule.group)
                if held is None or _RANK[rule.severity] > _RANK[held.severity]:
                    best[rule.group] = rule
        for rule in best.values():
            severity = Severity(SEVERITY_OF_RULE[rule.severity])
            findings.append(Finding(
                f"interaction|{order.key}|{evidence.reference or evidence.display}|{rule.id}", "interaction",
                severity, f"{order.resolved.display} with {evidence.display}: {rule.severity} interaction"[:139],
                f"{rule.effect} {rule.mechanism}", order.evidence, (evidence,), rule.source, rule.advice,
                group=rule.group))
    return findings
