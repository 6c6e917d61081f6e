"""Repeat prescribing over the years: which long-term medicines a person takes, their yearly
authorisations and every issue made from them.

Shaped as services/medicines/repeats.py and prescription.py shape them (so the workflows can
carry on from the demo's records):

- An **authorisation** is a MedicationRequest ``intent=order``, ``courseOfTherapyType``
  continuous, made at the annual review (reviews.py; NICE NG5: a structured medication
  review at least yearly), with ``numberOfRepeatsAllowed`` for a year of supplies and UK Core's
  repeat information (issues so far; ``authorisationExpiryDate``, the review date, a year on).
  Each review reauthorises: the older authorisation is ``completed``, the newest ``active``.
  A missed review leaves the authorisation to run out or pass its review date, as it does.
- An **issue** is a MedicationRequest ``intent=instance-order`` ``basedOn`` its authorisation, one
  per supply (every ``Medicine.days``; medicines taken when needed about every two supplies'
  worth), sent to the person's community pharmacy and signed by one of the practice's GPs.
  Issues are ``completed`` (dispensed) except one made in the last week (``active``, at the pharmacy).

Medicines by condition follow NICE: amlodipine for hypertension (NG136), furosemide for heart
failure (NG106), salbutamol and an inhaled steroid for asthma (NG245), salbutamol for COPD
(NG115), paracetamol and topical NSAID for knee osteoarthritis (NG226), metformin for type 2
diabetes (NG28) and atorvastatin after MI or stroke (80 mg) or with diabetes or CKD from 40
(20 mg; NG238).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from carerecord.demo import codes
from carerecord.demo.clinical import dosage_of, quantity, supply
from carerecord.demo.record import Record, ref, stamp, weekday
from carerecord.demo.reviews import Review

REPEAT_INFO = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-MedicationRepeatInformation"
# long-term condition -> medicines for it, with the chance each is prescribed
LONG_TERM_MEDICINES: dict[str, tuple[tuple[str, float], ...]] = {
    "hypertension": (("amlodipine_tablets", 0.8),),
    "heart_failure": (("furosemide", 0.9),),
    "asthma": (("salbutamol", 0.95), ("budesonide", 0.6)),
    "copd": (("salbutamol", 0.95),),
    "oa_knee": (("paracetamol", 0.6), ("diclofenac_gel", 0.35)),
    "diabetes_t2": (("metformin", 0.85),),
}
STATIN_SECONDARY = ("history_mi", "stroke")  # atorvastatin 80 mg, about 80% take one
STATIN_PRIMARY = ("diabetes_t2", "ckd3")  # atorvastatin 20 mg from 40, about 60%


def choose(rec: Record, problems: dict[str, str]) -> None:
    """Decide the person's long-term medicines (into ``rec.medicines``), before the reviews,
    whose results depend on them (a statin lowers cholesterol)."""
    p = rec.person
    for key in problems:
        for medicine, chance in LONG_TERM_MEDICINES.get(key, ()):
            if medicine == "budesonide" and p.age < 5:
                continue
            if medicine not in (m for m, _ in rec.medicines) and p.rng.random() < chance:
                rec.medicines.append((medicine, key))
    secondary = [k for k in STATIN_SECONDARY if k in problems]
    primary = [k for k in STATIN_PRIMARY if k in problems]
    if secondary and p.rng.random() < 0.8:
        rec.medicines.append(("atorvastatin_80", secondary[0]))
    elif primary and p.age >= 40 and p.rng.random() < 0.6:
        rec.medicines.append(("atorvastatin_20", primary[0]))


def prescribe(rec: Record, problems: dict[str, str], reviews: list[Review]) -> None:
    """The authorisations and issues of each of the person's long-term medicines."""
    for key, condition in rec.medicines:
        at = [r for r in reviews if r.annual and condition in r.conditions]
        for n, review in enumerate(at):
            until = at[n + 1].day if n + 1 < len(at) else None
            _authorisation(rec, key, problems[condition], review, until)


def _interval(rec: Record, key: str) -> int:
    """Days between issues: one supply, or for a medicine taken when needed about two and a
    half supplies (at least four weeks), as people use less than the most the label allows."""
    med = codes.MEDICINES[key]
    return max(28, round(med.days * 2.5)) if med.as_needed else med.days


def _authorisation(rec: Record, key: str, reason: str, review: Review, until: date | None) -> None:
    """One year's authorisation made at ``review`` and its issues up to ``until`` (the next
    authorisation) or today; the first issue is made with it, at the end of the review."""
    p = rec.person
    med = codes.MEDICINES[key]
    interval = _interval(rec, key)
    allowed = max(1, round(365 / interval))
    expiry = review.day + timedelta(days=365)
    auth: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rec.new_id("med"), "extension": [],
                            "status": "completed" if until else "active", "intent": "order",
                            "category": [codes.CATEGORY_COMMUNITY.concept()],
                            "medicationCodeableConcept": med.code.concept(med.text), "subject": rec.subject(),
                            "encounter": ref("Encounter", review.encounter),
                            "authoredOn": review.end,
                            "requester": ref("PractitionerRole", p.usual_gp.role),
                            "reasonReference": [ref("Condition", reason)],
                            "courseOfTherapyType": codes.COURSE_CONTINUOUS.concept(),
                            "dosageInstruction": [dosage_of(med)],
                            "dispenseRequest": {"numberOfRepeatsAllowed": allowed - 1, "quantity": supply(med),
                                                "expectedSupplyDuration": quantity(med.days, "d"),
                                                "performer": ref("Organization", p.pharmacy.organization)}}
    rec.add(auth)
    end = min(until or p.today, p.today)
    day = review.day
    issued = 0
    gps = p.practice.members("gp")
    while issued < allowed:
        if day >= end:
            break
        issued += 1
        recent = (p.today - day).days < 7
        rec.add({"resourceType": "MedicationRequest", "id": rec.new_id("med"),
                 "extension": [_repeat_info(issued, expiry)],
                 "status": "active" if recent else "completed", "intent": "instance-order",
                 "category": [codes.CATEGORY_COMMUNITY.concept()],
                 "medicationCodeableConcept": med.code.concept(med.text), "subject": rec.subject(),
                 "authoredOn": review.end if issued == 1 else stamp(day, 8 * 60 + p.rng.randrange(0, 600)),
                 "requester": ref("PractitionerRole", p.rng.choice(gps).role),
                 "basedOn": [ref("MedicationRequest", auth["id"])],
                 "courseOfTherapyType": codes.COURSE_CONTINUOUS.concept(),
                 "dosageInstruction": [dosage_of(med)],
                 "dispenseRequest": {"validityPeriod": {"start": day.isoformat()}, "quantity": supply(med),
                                     "expectedSupplyDuration": quantity(med.days, "d"),
                                     "performer": ref("Organization", p.pharmacy.organization)}})
        day = weekday(day + timedelta(days=interval + p.rng.randint(-4, 4)), later=True)
    auth["extension"] = [_repeat_info(issued, expiry)]


def _repeat_info(issued: int, expiry: date) -> dict[str, Any]:
    return {"url": REPEAT_INFO, "extension": [{"url": "numberOfPrescriptionsIssued", "valueUnsignedInt": issued},
                                              {"url": "authorisationExpiryDate", "valueDateTime": expiry.isoformat()}]}
