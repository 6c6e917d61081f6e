"""One person's whole record, in the order things happened to them.

Order of drawing (which fixes the output for a seed, so change it only on purpose): profile,
Patient, long-term conditions, allergies, health baselines, long-term medicines, reviews of the
last years (or a health check), repeat authorisations and issues, immunisations, an acute
illness, an emergency admission, social care (with a resident's monthly weights), DNACPR, a
future appointment.

The record is longitudinal: people with long-term conditions have a review each year (and
diabetes every six months) with measurements and blood results, their repeat medicines are
reauthorised at those reviews and issued every month or two, and the old and those at risk have
their flu and COVID-19 vaccinations each season. So older people and people with more
conditions have much more data, children little (RESOURCES_PER_PERSON says how much in all).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from carerecord.demo import (
    care,
    clinical,
    codes,
    encounters,
    health,
    immunisations,
    medicines,
    organisations,
    repeats,
    reviews,
)
from carerecord.demo.organisations import Staff
from carerecord.demo.people import Person, patient, profile
from carerecord.demo.record import Record

ACUTE_ADULT = (("viral_sinusitis", 35), ("strep_throat", 25), ("acute_bronchitis", 40))
ACUTE_CHILD = (("otitis_media", 45), ("viral_sinusitis", 20), ("strep_throat", 35))


def person_resources(index: int, seed: int, today: date) -> list[dict[str, Any]]:
    """Every resource of person ``index``; a function of (index, seed, today) only."""
    person = profile(index, seed, today)
    rec = Record(person)
    rec.add(patient(person))
    problems = clinical.long_term_conditions(rec)
    allergic = clinical.allergies(rec, person.days_ago(60, 3000))
    rec.health = health.draw(rec)
    repeats.choose(rec, problems)
    done = reviews.history(rec, problems)
    repeats.prescribe(rec, problems, done)
    _eczema(rec, problems, done)
    immunisations.history(rec, problems)
    _acute_illness(rec, allergic)
    _admission(rec, problems, allergic)
    care.residential_care(rec)
    carer = care.home_care(rec)
    if carer is not None and person.home_care is not None:
        encounters.home_care_visit(rec, person.home_care, carer)
    care.dnacpr(rec)
    _next_appointment(rec, problems)
    medicines.add_scenarios(rec)  # issue 5's showcase records; draws nothing from the person's stream
    return rec.resources


def _eczema(rec: Record, problems: dict[str, str], done: list[reviews.Review]) -> None:
    """Perhaps a course of topical steroid for atopic dermatitis, at the last review."""
    p = rec.person
    if "atopic_dermatitis" in problems and done and p.rng.random() < 0.5:
        clinical.medication(rec, "betamethasone", done[-1].day, p.usual_gp, continuous=False,
                            reason=problems["atopic_dermatitis"], encounter=done[-1].encounter,
                            pharmacy=p.pharmacy.organization)


def _clinician(p: Person, nurse_share: float) -> Staff:
    if p.care_home is None and p.rng.random() < nurse_share:
        return p.rng.choice(p.practice.members("practice_nurse"))
    return p.usual_gp


def _pick(p: Person, table: tuple[tuple[str, int], ...]) -> str:
    roll = p.rng.randrange(sum(w for _, w in table))
    for key, weight in table:
        if roll < weight:
            return key
        roll -= weight
    return table[-1][0]


def _acute_medicine(p: Person, illness: str, allergic: set[str]) -> str | None:
    """What a GP would plausibly prescribe; never a penicillin for a penicillin-allergic person."""
    penicillin_ok = not (allergic & codes.PENICILLIN_CLASS)
    if illness == "otitis_media":
        return "amoxicillin_250" if p.age >= 8 and penicillin_ok and p.rng.random() < 0.5 else None
    if illness == "strep_throat":
        if p.age < 5:
            return None
        if not penicillin_ok:
            return "azithromycin"
        return "amoxicillin_500" if p.age >= 12 else "amoxicillin_250"
    if illness == "acute_bronchitis":
        return "doxycycline" if p.age >= 12 and p.rng.random() < 0.5 else None
    return "paracetamol" if p.age >= 12 and p.rng.random() < 0.5 else None


def _acute_illness(rec: Record, allergic: set[str]) -> None:
    p = rec.person
    if p.rng.random() >= (0.45 if p.age < 12 else 0.3) or p.age < 1:
        return
    illness = _pick(p, ACUTE_CHILD if p.age < 12 else ACUTE_ADULT)
    day = p.past_weekday(2, 365)
    enc = encounters.gp_consultation(rec, day, p.usual_gp, codes.ENC_SYMPTOM, [],
                                     booked=p.rng.random() < 0.7, description="Same-day appointment")
    onset = day - timedelta(days=p.rng.randint(1, 5))
    cond = clinical.condition(rec, illness, max(onset, p.birth), p.usual_gp, diagnosis=True,
                              encounter=enc["id"], abated=day + timedelta(days=10), recorded=day)
    enc["reasonReference"] = [{"reference": f"Condition/{cond['id']}"}]
    medicine = _acute_medicine(p, illness, allergic)
    if medicine:
        clinical.medication(rec, medicine, day, p.usual_gp, continuous=False, reason=cond["id"],
                            encounter=enc["id"], pharmacy=p.pharmacy.organization)


def _admission(rec: Record, problems: dict[str, str], allergic: set[str]) -> None:
    """Perhaps one emergency admission in the last 13 months: the older and frailer, the likelier."""
    p = rec.person
    odds = 0.25 if p.care_home else (0.03, 0.04, 0.08, 0.18)[p.band()]
    if p.rng.random() >= odds:
        return
    hospital = organisations.hospital(p.seed)
    stay = p.rng.randint(2, 12)
    day = p.days_ago(stay + 1, 400)  # discharged before today
    reason, ward, new = "pneumonia", "elderly" if p.age >= 80 else "respiratory", True
    if "heart_failure" in problems and p.rng.random() < 0.4:
        reason, ward, new = "heart_failure", "cardiology", False
    elif "copd" in problems and p.rng.random() < 0.4:
        reason, ward, new = "copd", "respiratory", False
    elif p.age >= 70 and p.rng.random() < 0.4:
        reason, ward, new = "hip_fracture", "orthopaedics", True
    consultant = hospital.members(f"{ward}:consultant")[0]
    nurse = p.rng.choice(hospital.members(f"{ward}:staff_nurse"))
    ambulance = organisations.ambulance(p.seed)
    paramedic = p.rng.choice(ambulance.members("paramedic")) if p.rng.random() < 0.8 else None
    condition_id = rec.new_id("cond") if new else problems[reason]
    stay_enc, arrival = encounters.emergency_admission(
        rec, day, ambulance, paramedic, organisations.ward_location(ward),
        organisations.EMERGENCY_DEPARTMENT, consultant, hospital.organization, condition_id, stay)
    if new:
        recovery = stay + (90 if reason == "hip_fracture" else 21)
        clinical.condition(rec, reason, day, consultant, diagnosis=True, encounter=stay_enc["id"],
                           abated=day + timedelta(days=recovery), rid=condition_id)
    clinical.vital_signs(rec, arrival, stay_enc["id"], f"Practitioner/{nurse.practitioner}",
                         measurements=False)
    discharged = day + timedelta(days=stay)
    medicine = None
    if reason == "hip_fracture":
        medicine = "co_codamol"
    elif reason == "pneumonia":
        medicine = "amoxicillin_500" if not allergic & codes.PENICILLIN_CLASS else "doxycycline"
    if medicine:
        clinical.medication(rec, medicine, discharged, consultant, continuous=False, reason=condition_id,
                            encounter=stay_enc["id"], discharge=True,
                            pharmacy=organisations.HOSPITAL_PHARMACY)


def _next_appointment(rec: Record, problems: dict[str, str]) -> None:
    p = rec.person
    if p.care_home is not None:
        return
    if problems and p.rng.random() < 0.5:
        encounters.future_appointment(rec, _clinician(p, 0.6), list(problems.values())[:1],
                                      codes.APPT_FOLLOWUP, "Long-term condition review")
    elif p.rng.random() < 0.15:
        encounters.future_appointment(rec, p.usual_gp, [], codes.APPT_ROUTINE, "GP appointment")
