"""Allergy and intolerance check: does the order contain, or belong to a class that
cross-reacts with, something the patient is recorded as allergic or intolerant to?

- An allergy recorded against the same ingredient (substance, or any product containing
  it) is critical.
- An allergy to an ingredient or class in a cross-sensitivity group (penicillins,
  cephalosporins, sulfonamides, NSAIDs...) applies to every member of the group's classes at
  the group's severity, and to its cross-reacting classes at theirs (knowledge base).
- Severity is lowered one step when the record is low criticality, or unconfirmed and not
  high criticality: a doubtful record should make the prescriber look, not stop them.
- ``entered-in-error`` and ``refuted`` records, and ``inactive``/``resolved`` ones, are
  ignored; a "no known (drug) allergy" record means the allergy status is known.
- A record about a medicine that cannot be resolved (free text, unknown code) gives a
  "could not be checked" finding; with no allergy record at all the prescriber is told the
  allergy status is unknown (NICE CG183: record allergy status before prescribing)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from carerecord.services.medicines.findings import Evidence, Finding, Severity, Source
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.order import Order
from carerecord.services.medicines.patient import PatientContext, ref
from carerecord.services.medicines.resolve import Resolved, Resolver

NO_KNOWN_ALLERGY = frozenset({"716186003", "409137002"})
"""SNOMED CT: No known allergy (situation), No known drug allergy (situation)."""
CG183 = Source("Drug allergy: diagnosis and management (CG183)", "NICE", "https://www.nice.org.uk/guidance/cg183",
               "2014-09")
_LEVEL = {"critical": Severity.CRITICAL, "warning": Severity.WARNING, "info": Severity.INFO}


def _code(allergy: Mapping[str, Any], element: str) -> str:
    return str(((allergy.get(element) or {}).get("coding") or [{}])[0].get("code", ""))


def is_no_known_allergy(allergy: Mapping[str, Any]) -> bool:
    return any(c.get("code") in NO_KNOWN_ALLERGY for c in (allergy.get("code") or {}).get("coding", ()))


def is_current(allergy: Mapping[str, Any]) -> bool:
    """Not entered in error, not refuted, and not inactive or resolved."""
    return (_code(allergy, "verificationStatus") not in ("entered-in-error", "refuted")
            and _code(allergy, "clinicalStatus") not in ("inactive", "resolved"))


def _doubtful(allergy: Mapping[str, Any]) -> bool:
    criticality = allergy.get("criticality")
    return criticality == "low" or (_code(allergy, "verificationStatus") == "unconfirmed" and criticality != "high")


def _describe(allergy: Mapping[str, Any], allergen: Resolved) -> str:
    facts = [f"criticality {allergy['criticality']}" if allergy.get("criticality") else "criticality not recorded",
             _code(allergy, "verificationStatus") or "verification not recorded"]
    kind = allergy.get("type", "allergy")
    reactions = [m.get("text") or (m.get("coding") or [{}])[0].get("display", "")
                 for r in allergy.get("reaction", ()) for m in r.get("manifestation", ())]
    text = f"{kind.capitalize()} to {allergen.display} ({', '.join(facts)})"
    return text + (f"; reaction: {', '.join(x for x in reactions if x)}" if any(reactions) else "")


def _specific(classes: frozenset[str], kb: KnowledgeBase) -> frozenset[str]:
    """The classes that are not an ancestor of another in the set (penicillins, not
    beta-lactams), so a class-level allergy does not spread to its parent class."""
    ancestors = {a for c in classes for a in kb.class_closure([c]) if a != c}
    return classes - ancestors


def _allergen(allergy: Mapping[str, Any], resolver: Resolver) -> Resolved:
    found = resolver.concept(allergy.get("code"))
    if found.checked:
        return found
    for reaction in allergy.get("reaction", ()):
        substance = resolver.concept(reaction.get("substance")) if reaction.get("substance") else None
        if substance is not None and substance.checked:
            return substance
    return found


def _match(order: Order, allergen: Resolved, kb: KnowledgeBase) -> tuple[Severity, str, str, Source] | None:
    """(severity, why, advice, source) when the allergen and the order collide."""
    same = order.resolved.ingredients & allergen.ingredients
    if same:
        names = ", ".join(sorted((kb.ingredient(i).name if kb.ingredient(i) else i) for i in same))  # type: ignore[union-attr]
        return (Severity.CRITICAL, f"The order contains {names}, the substance this allergy is recorded against.",
                "Do not give. Choose an alternative from a different class, or confirm the allergy is wrong "
                "and correct the record.", CG183)
    allergy_classes = _specific(allergen.classes, kb) if not allergen.ingredients else allergen.classes
    for group in kb.allergy_groups():
        if not allergy_classes & group.classes:
            continue
        if order.resolved.classes & group.classes:
            return (_LEVEL[group.severity], group.why,
                    f"Avoid all {', '.join(sorted(group.classes))}; choose an alternative from another class.",
                    group.source)
        for cross in group.cross:
            if order.resolved.classes & cross.classes:
                return (_LEVEL[cross.severity], cross.why,
                        "Check the nature of the original reaction; avoid after an immediate or severe reaction, "
                        "otherwise give with caution.", group.source)
    if not allergen.ingredients:
        shared = order.resolved.classes & allergy_classes
        if shared:
            return (Severity.CRITICAL, f"The order belongs to {', '.join(sorted(shared))}, the class this allergy is "
                    "recorded against.", "Do not give; choose an alternative from another class.", CG183)
    return None


def check_allergies(order: Order, ctx: PatientContext, kb: KnowledgeBase, resolver: Resolver) -> list[Finding]:
    """Findings for ``order`` against the patient's allergy and intolerance records."""
    findings: list[Finding] = []
    current = [a for a in ctx.allergies if is_current(a)]
    if not current and ctx.allergies_known:
        return [Finding(f"allergy-status|{ctx.patient_id}", "unchecked", Severity.INFO,
                        "No allergy status is recorded for this patient",
                        "There is no allergy record, not even \"no known drug allergy\", so allergies could "
                        "not be checked.", order.evidence, (), CG183,
                        "Ask about and record allergies (or no known drug allergy) before prescribing.")]
    for allergy in current:
        if is_no_known_allergy(allergy):
            continue
        allergen = _allergen(allergy, resolver)
        evidence = Evidence(ref(allergy), _describe(allergy, allergen))
        key = f"allergy|{order.key}|{ref(allergy) or allergen.display}"
        if not allergen.checked:
            categories = set(allergy.get("category") or ("medication",))
            if "medication" in categories:
                findings.append(Finding(key, "unchecked", Severity.WARNING,
                                        f"Allergy \"{allergen.display}\" could not be checked against this order",
                                        "The allergy is not recorded with a substance, product or drug class the "
                                        "knowledge base recognises (free text or an unknown code).",
                                        order.evidence, (evidence,), CG183,
                                        "Check the allergy record by hand, and code it with its substance."))
            continue
        hit = _match(order, allergen, kb)
        if hit is None:
            continue
        severity, why, advice, source = hit
        if _doubtful(allergy):
            severity = severity.lowered()
        basis = f" (order identified by {order.resolved.basis})" if order.resolved.basis.startswith("name") else ""
        findings.append(Finding(key, "allergy", severity,
                                f"{order.resolved.display}: recorded {allergy.get('type', 'allergy')} to "
                                f"{allergen.display}"[:139],
                                why + basis, order.evidence, (evidence,), source, advice, group="allergy"))
    return findings
