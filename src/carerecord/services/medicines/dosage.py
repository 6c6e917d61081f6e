"""Doses read from FHIR Dosage (http://hl7.org/fhir/R4/dosage.html), in milligrams of one
ingredient: per administration, per day and per week.

A dose in a mass unit (g, mg, microgram, nanogram; UCUM or SNOMED CT unit codes) converts
directly. A dose in units of the product (tablets, capsules, mL...) needs the product's
strength, from dm+d or from the product name. The daily dose is the dose times the most
frequent administration the timing allows (``frequencyMax``, the shortest period), or the
prescriber's ``maxDosePerPeriod`` when that is higher. Several dosage lines with the same
``sequence`` run at the same time and add up; different sequences follow each other, so the
largest counts. Anything that cannot be worked out returns None, and the dose check says so
instead of guessing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from carerecord.services.medicines.terminology import Strength

_MG = {"mg": 1.0, "milligram": 1.0, "g": 1000.0, "gram": 1000.0, "ug": 0.001, "mcg": 0.001,
       "microgram": 0.001, "ng": 1e-6, "nanogram": 1e-6,
       "258684004": 1.0, "258682000": 1000.0, "258685003": 0.001, "258686002": 1e-6}
_VOLUME = {"ml": "ml", "milliliter": "ml", "millilitre": "ml", "258773002": "ml"}
_DISCRETE = {"tablet": "tablet", "tab": "tablet", "428673006": "tablet", "capsule": "capsule",
             "cap": "capsule", "428641000": "capsule", "sachet": "sachet", "733013000": "sachet",
             "suppository": "suppository", "430293001": "suppository", "pessary": "pessary",
             "lozenge": "lozenge", "dose": "dose", "3317411000001100": "dose"}
_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}
_TIMING_CODES = {"QD": 1.0, "AM": 1.0, "PM": 1.0, "BED": 1.0, "BID": 2.0, "TID": 3.0, "QID": 4.0,
                 "QOD": 0.5, "Q4H": 6.0, "Q6H": 4.0, "Q8H": 3.0, "WK": 1 / 7, "MO": 1 / 30}


@dataclass(frozen=True, slots=True)
class DoseAmounts:
    """mg of one ingredient: the largest single administration, per day, per week (None when
    it cannot be worked out)."""

    single: float | None
    daily: float | None
    weekly: float | None


def listed(value: Any) -> list[Any]:
    """An element that should be an array, as a list of objects, whatever arrived (a single
    object, as some clients send, or nothing): the check must not fail on a malformed order."""
    items = value if isinstance(value, list) else [value] if value else []
    return [i for i in items if isinstance(i, Mapping)]


def _unit(q: Mapping[str, Any]) -> str:
    raw = str(q.get("code") or q.get("unit") or "").strip().lower().rstrip("s")
    return raw.removesuffix("(s)")


def quantity_mg(q: Mapping[str, Any] | None, strength: Strength | None, unit_dose: str | None) -> float | None:
    """mg of the ingredient in quantity ``q``, using ``strength`` for product units."""
    if not q or not isinstance(q.get("value"), int | float):
        return None
    value, unit = float(q["value"]), _unit(q)
    if unit in _MG:
        return value * _MG[unit]
    if strength is None:
        return None
    if unit in _VOLUME and strength.denominator_unit == "ml" and strength.denominator:
        return value * strength.numerator / strength.denominator
    if unit in _DISCRETE and strength.denominator is None:
        return value * strength.numerator
    if unit_dose and unit == unit_dose.lower() and strength.denominator is None:
        return value * strength.numerator
    return None


def per_day(dosage: Mapping[str, Any]) -> float | None:
    """Administrations per day at most; 1 for a dose with no timing (a single dose); None
    for "as needed" with no frequency, which cannot be bounded."""
    timing: Mapping[str, Any] = next(iter(listed(dosage.get("timing"))), {})
    repeat: Mapping[str, Any] = next(iter(listed(timing.get("repeat"))), {})
    code = next((c.get("code") for c in listed((timing.get("code") or {}).get("coding"))), None)
    if "frequency" in repeat or "period" in repeat:
        freq = float(repeat.get("frequencyMax") or repeat.get("frequency") or 1)
        period = float(repeat.get("period") or 1)
        days = _DAYS.get(str(repeat.get("periodUnit", "d")))
        if days is None or period <= 0:
            return None
        return freq / (period * days)
    if code in _TIMING_CODES:
        return _TIMING_CODES[str(code)]
    if dosage.get("asNeededBoolean") or "asNeededCodeableConcept" in dosage:
        return None
    return 1.0


def _max_per_day(dosage: Mapping[str, Any], strength: Strength | None, unit_dose: str | None) -> float | None:
    ratio = dosage.get("maxDosePerPeriod") or {}
    num = quantity_mg(ratio.get("numerator"), strength, unit_dose)
    den = ratio.get("denominator") or {}
    days = _DAYS.get(str(den.get("code") or den.get("unit") or ""))
    if num is None or days is None or not den.get("value"):
        return None
    return num / (float(den["value"]) * days)


def _single(dosage: Mapping[str, Any], strength: Strength | None, unit_dose: str | None) -> float | None:
    best: float | None = None
    for dr in listed(dosage.get("doseAndRate")):
        q = dr.get("doseQuantity") or (dr.get("doseRange") or {}).get("high")
        mg = quantity_mg(q, strength, unit_dose)
        if mg is not None:
            best = mg if best is None else max(best, mg)
    return best


def amounts(dosages: Sequence[Mapping[str, Any]], strength: Strength | None,
            unit_dose: str | None) -> DoseAmounts:
    """The doses in mg of one ingredient across an order's dosageInstruction lines."""
    singles: list[float] = []
    by_sequence: dict[Any, float | None] = {}
    for d in listed(list(dosages)):
        single = _single(d, strength, unit_dose)
        if single is not None:
            singles.append(single)
        times = per_day(d)
        daily = single * times if single is not None and times is not None else None
        stated = _max_per_day(d, strength, unit_dose)
        if stated is not None:
            daily = stated if daily is None else max(daily, stated)
        seq = d.get("sequence")
        if seq in by_sequence:
            prev = by_sequence[seq]
            by_sequence[seq] = None if prev is None or daily is None else prev + daily
        else:
            by_sequence[seq] = daily
    dailies = list(by_sequence.values())
    daily_max = None if not dailies or any(v is None for v in dailies) else max(v for v in dailies if v is not None)
    return DoseAmounts(max(singles) if singles else None, daily_max,
                       daily_max * 7 if daily_max is not None else None)


def route_of(dosages: Sequence[Mapping[str, Any]]) -> str:
    """``oral`` when the dosage's route says so (by text or display), else the text, else ''."""
    for d in listed(list(dosages)):
        route = d.get("route") or {}
        text = " ".join([route.get("text", "")] + [c.get("display", "") for c in route.get("coding", ())]).lower()
        if "oral" in text or "mouth" in text:
            return "oral"
        if text.strip():
            return text.strip()
    return ""
