"""Immunizations: seasonal flu and COVID-19 over the last years, and the adolescent school
vaccinations a record keeps for life.

Who is offered what follows the UKHSA Green Book and the annual flu and COVID-19 letters;
uptake is near the published English figures (UKHSA 2023/24 surveillance):

- **Flu**, every autumn (vaccinations September to early December) over the last
  ``reviews.HISTORY_YEARS`` seasons: everyone 65 or over by the following 31 March (about 78%
  vaccinated, adjuvanted vaccine), care home residents (about 80%), adults in a clinical risk
  group (diabetes, COPD, CKD, heart failure, coronary heart disease, stroke, asthma on an inhaled
  steroid; about 40%, cell-based vaccine), children aged 2 and 3 at their practice (about 43%)
  and school children from Reception to Year 11 by the school service (about 50%), both by nasal
  spray. People who had it last year mostly have it again: each person has a fixed willingness.
- **COVID-19** seasonal boosters from autumn 2023: autumn for 65 and over and risk groups until
  2024, 75 and over from 2025, and care home residents; spring for 75 and over and care home
  residents from 2024 (JCVI advice for each campaign). Uptake about 65% at 75 and over, 50%
  at 65-74, 25% in risk groups.
- **School programme** (given by the school aged immunisation service, so recorded as reported,
  not by the practice): HPV in Year 8 (girls since 2008, boys since 2019; about 70%), and the
  Td/IPV and MenACWY boosters in Year 9 (MenACWY since 2015; about 80%).

Flu and COVID-19 vaccines are given at the practice, at the person's community pharmacy, or at
the care home by the practice nurse. Each Immunization carries the dm+d product and UK Core's
vaccination procedure extension.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from carerecord.demo import codes
from carerecord.demo.people import Person
from carerecord.demo.record import Record, ref, stamp, weekday
from carerecord.demo.reviews import HISTORY_YEARS

AT_RISK = ("diabetes_t2", "copd", "ckd3", "heart_failure", "history_mi", "stroke")
SCHOOL_SERVICE = "School aged immunisation service"


def _age_on(p: Person, day: date) -> int:
    return day.year - p.birth.year - ((day.month, day.day) < (p.birth.month, p.birth.day))


def _school_year_start(p: Person, year_group: int) -> int:
    """The calendar year whose September starts the person's ``year_group`` (Year 8: aged 12 on
    31 August)."""
    return p.birth.year + year_group + 4 + ((p.birth.month, p.birth.day) > (8, 31))


def history(rec: Record, problems: dict[str, str]) -> None:
    """Every immunisation of the person's record (module docstring), oldest programme first."""
    p = rec.person
    flu_keen, covid_keen = p.rng.random(), p.rng.random()
    risk = {k for k in AT_RISK if k in problems}
    if "asthma" in problems and any(m == "budesonide" for m, _ in rec.medicines):
        risk.add("asthma")
    _school(rec)
    for year in range(p.today.year - HISTORY_YEARS, p.today.year + 1):
        _flu(rec, year, flu_keen, risk)
        if year >= 2024:
            _covid(rec, date(year, 4, 15), 60, covid_keen, 0.6 if _age_on(p, date(year, 6, 30)) >= 75 else 0.0)
        if year >= 2023:
            age = _age_on(p, date(year + 1, 3, 31))
            uptake = 0.65 if age >= 75 else 0.5 if age >= 65 and year <= 2024 else \
                0.25 if risk and year <= 2024 and age >= 18 else 0.0
            _covid(rec, date(year, 9, 20), 75, covid_keen, uptake)


def _vaccinated(rec: Record, keen: float, uptake: float) -> bool:
    """Whether a willing-or-not person (``keen``) has this year's dose, for a group ``uptake``."""
    if uptake <= 0:
        return False
    return rec.person.rng.random() < (0.95 if keen < uptake else 0.06)


def _flu(rec: Record, year: int, keen: float, risk: set[str]) -> None:
    p = rec.person
    day = weekday(date(year, 9, 22) + timedelta(days=p.rng.randint(0, 72)))
    if not p.birth < day < p.today:
        return
    age = _age_on(p, date(year + 1, 3, 31))
    child = _age_on(p, date(year, 8, 31))
    active_risk = [k for k in risk if rec.onsets.get(k, p.today) <= day]
    if age >= 65 or p.care_home is not None:
        vaccine, uptake = "flu_adjuvanted", 0.85 if p.care_home is not None else 0.8
    elif age >= 18 and active_risk:
        vaccine, uptake = "flu_cell", 0.42
    elif 2 <= child <= 3:
        vaccine, uptake = "flu_nasal", 0.45
    elif 4 <= child <= 15:
        if _vaccinated(rec, keen, 0.52):
            _immunization(rec, "flu", "flu_nasal", day, None)
        return
    else:
        return
    if _vaccinated(rec, keen, uptake):
        _immunization(rec, "flu", vaccine, day, _where(rec, pharmacy_share=0.0 if vaccine == "flu_nasal" else 0.3))


def _covid(rec: Record, start: date, days: int, keen: float, uptake: float) -> None:
    p = rec.person
    if p.care_home is not None:
        uptake = 0.7
    day = weekday(start + timedelta(days=p.rng.randint(0, days)))
    if day >= p.today or not _vaccinated(rec, keen, uptake):
        return
    vaccine = "covid_pfizer" if p.rng.random() < 0.8 else "covid_moderna"
    _immunization(rec, "covid", vaccine, day, _where(rec, pharmacy_share=0.5))


def _school(rec: Record) -> None:
    p = rec.person
    hpv_from = 2008 if p.female else 2019
    plan = [("hpv", "hpv", _school_year_start(p, 8), hpv_from, 0.72 if p.female else 0.62),
            ("td_ipv", "td_ipv", _school_year_start(p, 9), 2006, 0.8),
            ("menacwy", "menacwy", _school_year_start(p, 9), 2015, 0.8)]
    keen = p.rng.random()
    for programme, vaccine, year, since, uptake in plan:
        if year < since:
            continue
        day = weekday(date(year, 10, 1) + timedelta(days=p.rng.randint(0, 240)))
        if day < p.today and keen < uptake:
            _immunization(rec, programme, vaccine, day, None)


def _where(rec: Record, pharmacy_share: float) -> tuple[str, str]:
    """(Practitioner, Location) of a practice-given or pharmacy-given vaccination."""
    p = rec.person
    if p.care_home is not None:
        return p.rng.choice(p.practice.members("practice_nurse")).practitioner, p.care_home.location or ""
    if p.rng.random() < pharmacy_share:
        return p.rng.choice(p.pharmacy.members("pharmacist")).practitioner, p.pharmacy.location or ""
    return p.rng.choice(p.practice.members("practice_nurse")).practitioner, p.practice.location or ""


def _immunization(rec: Record, programme: str, vaccine: str, day: date, given: tuple[str, str] | None) -> None:
    """A completed Immunization; ``given`` is (Practitioner, Location) when this practice or a
    pharmacy gave it, None when another service did and reported it (the school service)."""
    p = rec.person
    when = stamp(day, 9 * 60 + 5 * p.rng.randrange(0, 96))
    nasal = vaccine == "flu_nasal"
    imm: dict[str, Any] = {
        "resourceType": "Immunization", "id": rec.new_id("imm"),
        "extension": [{"url": codes.VACCINATION_PROCEDURE,
                       "valueCodeableConcept": codes.VACCINATIONS[programme].concept()}],
        "status": "completed", "vaccineCode": codes.VACCINES[vaccine].concept(), "patient": rec.subject(),
        "occurrenceDateTime": when, "recorded": when, "primarySource": given is not None}
    if given is None:
        imm["reportOrigin"] = {"text": SCHOOL_SERVICE}
    else:
        imm["location"] = ref("Location", given[1])
    imm["lotNumber"] = f"{'ABCDEFGHJKLMNPRSTUVWXYZ'[p.rng.randrange(23)]}{p.rng.randrange(10000, 99999)}"
    if not nasal:
        imm["site"] = codes.SITE_LEFT_UPPER_ARM.concept()
    imm["route"] = (codes.ROUTE_NASAL if nasal else codes.ROUTE_INTRAMUSCULAR).concept()
    imm["doseQuantity"] = {"value": 0.2 if nasal else 0.5 if programme != "covid" else 0.3,
                           "unit": codes.UNITS["mL"].display, "system": codes.UCUM, "code": "mL"}
    if given is not None:
        imm["performer"] = [{"actor": ref("Practitioner", given[0])}]
    rec.add(imm)
