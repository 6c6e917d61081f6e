"""Dose check: each ingredient's dose (single, daily, weekly; from the order's Dosage) against
the adult maximum for the patient's age, and against renal limits for the latest eGFR.

- Over an adult maximum is critical: a tenfold or daily-instead-of-weekly error (the
  methotrexate never event) must be stopped, and a deliberate high dose can be overridden
  with a reason.
- Adult limits only: for a patient under 18 the check says the dose was not checked.
- Renal limits apply in bands: the band the patient is in is the smallest eGFR threshold
  above their eGFR ("avoid" there, or a lower daily maximum).
- A dose that cannot be worked out (free-text dosage, product units without a known
  strength, "as needed" without a frequency) is reported as not checked, never assumed
  safe. An order with no dosage yet (a medicine just selected) has nothing to check; renal
  "avoid" limits still apply to it."""

from __future__ import annotations

from carerecord.services.medicines.dosage import DoseAmounts, amounts, route_of
from carerecord.services.medicines.findings import Evidence, Finding, Severity, Source
from carerecord.services.medicines.knowledge import DoseLimit, KnowledgeBase, RenalLimit
from carerecord.services.medicines.order import Order
from carerecord.services.medicines.patient import PatientContext

_LEVEL = {"critical": Severity.CRITICAL, "warning": Severity.WARNING, "info": Severity.INFO}
_PER = {"dose": "single dose", "day": "daily dose", "week": "weekly dose"}


def _fmt(mg: float) -> str:
    return f"{mg * 1000:g} micrograms" if mg < 1 else f"{mg:g} mg"


def _limits(kb: KnowledgeBase, ingredient: str, route: str, age: int | None) -> dict[str, DoseLimit]:
    """The applicable limit per period: right route, and the most specific age band."""
    chosen: dict[str, DoseLimit] = {}
    for lim in kb.dose_limits(ingredient):
        if lim.route and route and lim.route != route:
            continue
        if lim.age_from and (age is None or age < lim.age_from):
            continue
        held = chosen.get(lim.per)
        if held is None or lim.age_from > held.age_from:
            chosen[lim.per] = lim
    return chosen


def _amount(doses: DoseAmounts, per: str) -> float | None:
    return {"dose": doses.single, "day": doses.daily, "week": doses.weekly}[per]


def _unchecked(order: Order, key: str, what: str, why: str, advice: str, source: Source | None = None,
               kind: str = "unchecked") -> Finding:
    return Finding(key, kind, Severity.INFO, what[:139], why, order.evidence, (),
                   source or Source("carerecord medicines checks"), advice)


def check_dose(order: Order, ctx: PatientContext, kb: KnowledgeBase) -> list[Finding]:
    """Findings for the order's dose against adult maximums and renal limits."""
    findings: list[Finding] = []
    route = route_of(order.dosages)
    adult = ctx.age is None or ctx.age >= 18
    for ing in sorted(order.resolved.ingredients):
        name = (i.name if (i := kb.ingredient(ing)) else ing)
        doses = amounts(order.dosages, order.resolved.strengths.get(ing), order.resolved.unit_dose)
        limits = _limits(kb, ing, route, ctx.age)
        if limits and not adult:
            findings.append(_unchecked(order, f"dose|{order.key}|{ing}|age", f"{name} dose not checked: patient is under 18",
                                       "Only adult maximum doses are held; children's doses depend on age and weight.",
                                       "Check the dose against the BNF for Children."))
            continue
        unknown = False
        for per, lim in sorted(limits.items()) if order.dosages else ():
            amount = _amount(doses, per)
            if amount is None:
                unknown = True
                continue
            if amount > lim.max_mg * 1.0001:
                findings.append(Finding(
                    f"dose|{order.key}|{ing}|{per}", "dose", Severity.CRITICAL,
                    f"{name} {_PER[per]} {_fmt(amount)} is above the adult maximum of {_fmt(lim.max_mg)}"[:139],
                    f"The {_PER[per]} of {name} in this order is {_fmt(amount)}; the adult maximum"
                    f"{f' from age {lim.age_from}' if lim.age_from else ''} is {_fmt(lim.max_mg)}. {lim.note}".strip(),
                    order.evidence, (), lim.source, "Check the dose, units and frequency; correct the order, or "
                    "record why a higher dose is intended.", group="dose"))
        if unknown:
            findings.append(_unchecked(order, f"dose|{order.key}|{ing}|unknown", f"{name} dose could not be checked",
                                       "The dose or frequency could not be worked out from the structured dosage "
                                       "(free text, a product unit without a known strength, or as-needed without "
                                       "a maximum).", "Check the dose by hand, or enter a structured dose."))
        findings += _renal(order, ctx, kb, ing, name, doses)
    return findings


def _band(limits: list[RenalLimit], egfr: float) -> list[RenalLimit]:
    applicable = [r for r in limits if egfr < r.egfr_below]
    if not applicable:
        return []
    lowest = min(r.egfr_below for r in applicable)
    return [r for r in applicable if r.egfr_below == lowest]


def _renal(order: Order, ctx: PatientContext, kb: KnowledgeBase, ing: str, name: str,
           doses: DoseAmounts) -> list[Finding]:
    keys = [f"i:{ing}"] + [f"c:{c}" for c in sorted(order.resolved.classes)]
    limits = kb.renal_limits(keys)
    if not limits:
        return []
    if ctx.egfr is None:
        return [_unchecked(order, f"renal|{order.key}|{ing}|no-egfr", f"No eGFR on record: {name} renal limits not checked",
                           f"{name} needs dose adjustment or avoidance in renal impairment, and there is no eGFR "
                           "result on record.", "Check renal function before prescribing.", kind="renal")]
    egfr = ctx.egfr
    evidence = (Evidence(egfr.reference, f"eGFR {egfr.value:g} mL/min/1.73m2 on {egfr.when or 'an unknown date'}"),)
    out: list[Finding] = []
    for lim in _band(limits, egfr.value):
        key = f"renal|{order.key}|{ing}|{lim.key}|{lim.egfr_below:g}"
        if lim.max_daily_mg is None:
            out.append(Finding(key, "renal", _LEVEL[lim.severity],
                               f"{name}: avoid or review with eGFR {egfr.value:g} (below {lim.egfr_below:g})"[:139],
                               lim.advice, order.evidence, evidence, lim.source, lim.advice, group="renal"))
        elif doses.daily is None:
            out.append(_unchecked(order, key, f"{name}: check the dose for eGFR {egfr.value:g}",
                                  f"At this eGFR the maximum is {_fmt(lim.max_daily_mg)} daily, and the daily dose "
                                  "could not be worked out.", lim.advice, lim.source, kind="renal"))
        elif doses.daily > lim.max_daily_mg * 1.0001:
            out.append(Finding(key, "renal", _LEVEL[lim.severity],
                               f"{name} {_fmt(doses.daily)} daily is above {_fmt(lim.max_daily_mg)} for eGFR "
                               f"{egfr.value:g}"[:139], lim.advice, order.evidence, evidence, lim.source, lim.advice,
                               group="renal"))
    return out
