"""Long-term condition reviews over the last :data:`HISTORY_YEARS` years, and health checks.

What is measured and how often follows English primary care (QOF 2024/25 indicators and NICE):

- One combined **annual review** for people on a QOF register (hypertension, diabetes, asthma,
  COPD, AF, heart failure, CKD, stroke, coronary heart disease, dementia), in the person's own
  recall month as practices invite by month. About one in five is missed in a given year (QOF
  achievement runs from about 65% for asthma reviews to 90% for blood pressure). Blood pressure
  and pulse every time (QOF's blood pressure indicators, e.g. HYP008, read the last BP of the
  past 12 months), weight and BMI (NICE NG28; QOF obesity register), smoking status (QOF
  SMOK002: recorded in the last 12 months for people on these registers).
- Bloods at the review (labs.py): HbA1c, renal function, lipids and urine ACR for diabetes
  (NICE NG28 1.6.1 and NG203: ACR at least yearly in diabetes), renal function and
  ACR for CKD (NICE NG203 table 1: eGFR at least yearly for G3a/b A1), renal function for
  hypertension and heart failure (NICE NG136, NG106), lipids for hypertension and
  cardiovascular disease (NICE NG238: QRISK and statin monitoring).
- Diabetes also has a **six-monthly** HbA1c check (NICE NG28 1.6.1: 3-6 monthly until stable,
  then 6-monthly). Asthma: peak flow (QOF AST007: asthma review); COPD: FEV1 (NICE NG115: the
  annual review of people with mild to moderate COPD); dementia: a memory assessment (MMSE) at
  the annual face-to-face review (QOF DEM004).
- People on repeat medicines for other conditions have an annual **medication review** (NICE
  NG5) with the practice pharmacist, where their repeats are reauthorised (repeats.py).
- Without a register condition: an **NHS Health Check** every five years between 40 and 74
  (uptake about 45%), with lipids; otherwise from 40 a blood pressure check (NICE NG136:
  at least every five years; about 90% have one), and under 40 perhaps one check-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from carerecord.demo import clinical, codes, encounters, labs
from carerecord.demo.clinical import observation, quantity
from carerecord.demo.health import Health
from carerecord.demo.organisations import Staff
from carerecord.demo.record import Record, weekday

HISTORY_YEARS = 3  # how far back the detailed record goes
REGISTERS = ("hypertension", "diabetes_t2", "asthma", "copd", "af", "heart_failure", "ckd3", "stroke",
             "history_mi", "dementia", "alzheimers")
ANNUAL_TESTS: dict[str, tuple[str, ...]] = {
    "diabetes_t2": ("hba1c", "renal", "lipids", "acr"), "ckd3": ("renal", "acr"),
    "hypertension": ("renal", "lipids"), "heart_failure": ("renal",), "history_mi": ("lipids",),
    "stroke": ("lipids",)}
MISSED = 0.2  # share of annual reviews not held: QOF achievement runs from about 65% (asthma review) to 90% (BP)
GP_LED = frozenset({"heart_failure", "dementia", "alzheimers"})


@dataclass(frozen=True, slots=True)
class Review:
    """A review that happened: when, its Encounter, who held it, which conditions it covered."""

    day: date
    encounter: str
    end: str  # when the consultation ended (a dateTime): repeats are authorised then
    staff: Staff
    conditions: tuple[str, ...]  # condition keys
    annual: bool


def history(rec: Record, problems: dict[str, str]) -> list[Review]:
    """Every review of the last :data:`HISTORY_YEARS` years, oldest first (health checks for
    people with nothing to review); returns the reviews (repeats.py reauthorises at them)."""
    p = rec.person
    reviewed = [k for k in problems if k in REGISTERS]
    reviewed += [k for _, k in rec.medicines if k not in reviewed]
    if not reviewed:
        _health_check(rec)
        return []
    latest = p.today - timedelta(days=p.rng.randint(14, 365))
    days = [latest] + [latest - timedelta(days=365 * y + p.rng.randint(-21, 21)) for y in range(1, HISTORY_YEARS)]
    visits: list[tuple[date, bool]] = []
    for day in days:
        if p.rng.random() < MISSED:
            continue
        day = weekday(day)
        visits.append((day, True))
        interim = day + timedelta(days=175 + p.rng.randint(0, 21))
        if "diabetes_t2" in reviewed and interim <= p.today - timedelta(days=14):
            visits.append((weekday(interim), False))
    out: list[Review] = []
    first = True
    for day, annual in sorted(visits):
        active = tuple(k for k in reviewed if rec.onsets.get(k, p.birth) <= day and (annual or k == "diabetes_t2"))
        if not active or day < p.birth:
            continue
        out.append(_review(rec, problems, day, active, annual, first))
        first = first and not annual  # height at the first annual review only
    return out


def _reviewer(rec: Record, active: tuple[str, ...]) -> Staff:
    p = rec.person
    if p.care_home is not None or GP_LED & set(active):
        return p.usual_gp
    if not set(active) & set(REGISTERS):
        return p.practice.members("pharmacist")[0]  # a medication review only
    return p.rng.choice(p.practice.members("practice_nurse")) if p.rng.random() < 0.75 else p.usual_gp


def _review(rec: Record, problems: dict[str, str], day: date, active: tuple[str, ...], annual: bool,
            first: bool) -> Review:
    p = rec.person
    staff = _reviewer(rec, active)
    registers = [k for k in active if k in REGISTERS]
    description = ("Long-term condition review" if registers else "Medication review") if annual \
        else "Diabetes review (HbA1c)"
    enc = encounters.gp_consultation(rec, day, staff, codes.ENC_FOLLOW_UP, [problems[k] for k in active],
                                     booked=p.rng.random() < 0.9, description=description)
    when = enc["period"]["start"]
    performer = f"Practitioner/{staff.practitioner}"
    measured = annual and (bool(registers) or p.age < 16)
    clinical.vital_signs(rec, when, enc["id"], performer, measurements=measured, height=first)
    if annual and registers and p.age >= 16:
        _smoking(rec, when, enc["id"], performer)
    if annual and "asthma" in active and p.age >= 5:
        _measure(rec, codes.OBS_PEAK_FLOW, when, enc["id"], performer,
                 quantity(round(rec_health(rec).peak_flow * p.rng.uniform(0.8, 1.0) / 10) * 10, "L/min"))
    if annual and "copd" in active:
        _measure(rec, codes.OBS_FEV1, when, enc["id"], performer,
                 quantity(round(rec_health(rec).fev1 * p.rng.uniform(0.9, 1.05), 2), "L"))
    if annual and set(active) & {"dementia", "alzheimers"} and p.rng.random() < 0.6:
        mmse = rec_health(rec).mmse_at(p.today, day) + p.rng.gauss(0, 1.5)
        _measure(rec, codes.OBS_MMSE, when, enc["id"], performer, quantity(round(min(max(mmse, 0), 30)), "{score}"),
                 codes.OBS_CAT_SURVEY)
    tests = ("hba1c",) if not annual else tuple(t for t in labs.PANELS if any(
        t in ANNUAL_TESTS.get(k, ()) for k in active))
    if tests:
        labs.report(rec, day, when, enc["id"], list(tests))
    return Review(day, enc["id"], enc["period"]["end"], staff, active, annual)


def rec_health(rec: Record) -> Health:
    """The person's baselines (drawn before the reviews)."""
    assert rec.health is not None
    return rec.health


def _measure(rec: Record, code: tuple[codes.Code, ...], when: str, encounter: str, performer: str,
             value: dict[str, object], category: codes.Code = codes.OBS_CAT_EXAM) -> None:
    obs = observation(rec, code, when, encounter, performer, category)
    obs["valueQuantity"] = value
    rec.add(obs)


def _smoking(rec: Record, when: str, encounter: str, performer: str) -> None:
    obs = observation(rec, codes.OBS_SMOKING, when, encounter, performer, codes.OBS_CAT_SOCIAL)
    obs["valueCodeableConcept"] = codes.SMOKING[rec_health(rec).smoking].concept()
    rec.add(obs)


def _health_check(rec: Record) -> None:
    """For an adult with nothing to review: an NHS Health Check (40-74, five-yearly, uptake about
    45%, with lipids); otherwise from 40 a blood pressure check by the healthcare assistant (NICE
    NG136: adults' BP measured at least every five years; the former QOF BP002, BP in the
    last five years from 45, was achieved for about 90%), and under 40 perhaps a check-up."""
    p = rec.person
    if p.age < 18:
        return
    roll = p.rng.random()
    if 40 <= p.age <= 74 and roll < 0.45:
        kind, staff = "NHS Health Check", p.rng.choice(p.practice.members("practice_nurse"))
    elif p.age >= 40 and roll < 0.9:
        kind, staff = "Blood pressure check", p.practice.members("hca")[0]
    elif p.age < 40 and roll < 0.4:
        kind, staff = "Health check", p.rng.choice(p.practice.members("practice_nurse"))
    else:
        return
    if p.care_home is not None:
        staff = p.usual_gp
    since_40 = (p.age - 40) * 365 if kind == "NHS Health Check" else 5 * 365
    day = p.past_weekday(20, max(20, min(5 * 365, since_40)))
    enc = encounters.gp_consultation(rec, day, staff, codes.ENC_CHECK_UP, [], description=kind)
    when = enc["period"]["start"]
    performer = f"Practitioner/{staff.practitioner}"
    clinical.vital_signs(rec, when, enc["id"], performer, measurements=kind != "Blood pressure check")
    if kind != "Blood pressure check":
        _smoking(rec, when, enc["id"], performer)
    if kind == "NHS Health Check":
        labs.report(rec, day, when, enc["id"], ["lipids"])
