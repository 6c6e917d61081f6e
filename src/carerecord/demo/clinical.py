"""Clinical resources: Condition, AllergyIntolerance, MedicationRequest, Observation.

Each builder takes the person's :class:`Record`, adds the resource and returns it, so the caller
can point other resources at it. Values are plausible, not real: blood pressure rises with age
and hypertension, adults keep their height and their weight drifts around their own BMI
(health.py), and penicillin-allergic people are never given a penicillin (nor cefalexin).
Laboratory results are in labs.py, repeat prescribing in repeats.py.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from carerecord.demo import codes
from carerecord.demo.codes import Code, Medicine
from carerecord.demo.organisations import Staff
from carerecord.demo.record import Record, ref, stamp


def condition(rec: Record, key: str, onset: date, recorder: Staff, *, diagnosis: bool = False,
              encounter: str | None = None, abated: date | None = None,
              rid: str | None = None, recorded: date | None = None) -> dict[str, Any]:
    """A confirmed Condition: a problem-list item, or an encounter diagnosis when ``diagnosis``.

    ``rid`` is an id reserved earlier with ``rec.new_id("cond")`` when other resources had to
    point at the Condition before it could be written."""
    resolved = abated is not None and abated <= rec.person.today
    cond: dict[str, Any] = {
        "resourceType": "Condition", "id": rid or rec.new_id("cond"),
        "clinicalStatus": (codes.CLINICAL_RESOLVED if resolved else codes.CLINICAL_ACTIVE).concept(),
        "verificationStatus": codes.VERIFICATION_CONFIRMED.concept(),
        "category": [(codes.CATEGORY_DIAGNOSIS if diagnosis else codes.CATEGORY_PROBLEM).concept()],
        "code": codes.CONDITIONS[key].concept(), "subject": rec.subject()}
    if encounter:
        cond["encounter"] = ref("Encounter", encounter)
    cond["onsetDateTime"] = onset.isoformat()
    if resolved and abated is not None:
        cond["abatementDateTime"] = abated.isoformat()
    cond["recordedDate"] = (recorded or onset).isoformat()
    cond["recorder"] = ref("Practitioner", recorder.practitioner)
    return rec.add(cond)


def long_term_conditions(rec: Record) -> dict[str, str]:
    """Problem-list Conditions for the person's long-term conditions and dementia; key -> id."""
    p = rec.person
    out: dict[str, str] = {}
    keys = list(p.chronic) + ([p.dementia_code] if p.dementia_code else [])
    for key in keys:
        earliest = 3 if key in ("asthma", "atopic_dermatitis") else 16 if key == "depression" else 30
        earliest = min(earliest, p.age)
        years_ago = p.rng.randint(0, max(0, min(p.age - earliest, 6 if key in ("dementia", "alzheimers") else 25)))
        onset = p.today - timedelta(days=years_ago * 365 + p.rng.randint(30, 360))
        rec.onsets[key] = max(onset, p.birth)
        out[key] = condition(rec, key, rec.onsets[key], p.usual_gp)["id"]
    return out


def allergies(rec: Record, recorded: date) -> set[str]:
    """Zero or more AllergyIntolerance records; returns the allergen keys (for safe prescribing).

    About 10% carry a penicillin-class allergy label (near the English figure), 10% another
    allergy, 55% an explicit "No known allergy", and the rest have nothing recorded.
    """
    p = rec.person
    roll = p.rng.random()
    keys: list[str] = []
    if roll < 0.08:
        keys.append("penicillin")
    elif roll < 0.10:
        keys.append("amoxicillin")
    if p.rng.random() < 0.10 and p.age >= 3:
        keys.append(p.rng.choice(("house_dust_mite", "grass_pollen", "latex", "nut", "bee_venom")))
    common = {"patient": rec.subject(), "recordedDate": recorded.isoformat(),
              "recorder": ref("Practitioner", p.usual_gp.practitioner)}
    if not keys:
        if p.rng.random() < 0.6:
            rec.add({"resourceType": "AllergyIntolerance", "id": rec.new_id("allergy"),
                     "clinicalStatus": codes.ALLERGY_ACTIVE.concept(),
                     "verificationStatus": codes.ALLERGY_CONFIRMED.concept(),
                     "code": codes.NO_KNOWN_ALLERGY.concept(), **common})
        return set()
    for key in keys:
        code, category = codes.ALLERGENS[key]
        severe = p.rng.random() < 0.1
        reaction = "anaphylaxis" if severe else p.rng.choice(("urticaria", "skin_eruption"))
        rec.add({"resourceType": "AllergyIntolerance", "id": rec.new_id("allergy"),
                 "clinicalStatus": codes.ALLERGY_ACTIVE.concept(),
                 "verificationStatus": codes.ALLERGY_CONFIRMED.concept(),
                 "type": "allergy", "category": [category], "criticality": "high" if severe else "low",
                 "code": code.concept(), **common,
                 "reaction": [{"manifestation": [codes.REACTIONS[reaction].concept()],
                               "severity": "severe" if severe else "mild"}]})
    return set(keys)


def medication(rec: Record, key: str, authored: date, requester: Staff, *, continuous: bool,
               reason: str | None = None, encounter: str | None = None, discharge: bool = False,
               pharmacy: str | None = None) -> dict[str, Any]:
    """A MedicationRequest (intent order) for dm+d product ``key``.

    Continuous therapy is an active repeat (five repeats); an acute course is active until its
    supply runs out and completed after that."""
    med = codes.MEDICINES[key]
    ended = authored + timedelta(days=med.days) < rec.person.today
    dosage = dosage_of(med)
    dispense: dict[str, Any] = {"quantity": supply(med), "expectedSupplyDuration": quantity(med.days, "d")}
    if continuous:
        dispense["numberOfRepeatsAllowed"] = 5
    if pharmacy:
        dispense["performer"] = ref("Organization", pharmacy)
    req: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": rec.new_id("med"),
        "status": "completed" if ended and not continuous else "active", "intent": "order",
        "category": [(codes.CATEGORY_DISCHARGE if discharge else codes.CATEGORY_COMMUNITY).concept()],
        "medicationCodeableConcept": med.code.concept(med.text), "subject": rec.subject()}
    if encounter:
        req["encounter"] = ref("Encounter", encounter)
    req["authoredOn"] = stamp(authored, 9 * 60 + rec.person.rng.randrange(0, 480))
    req["requester"] = ref("PractitionerRole", requester.role)
    if reason:
        req["reasonReference"] = [ref("Condition", reason)]
    req["courseOfTherapyType"] = (codes.COURSE_CONTINUOUS if continuous else codes.COURSE_ACUTE).concept()
    req["dosageInstruction"] = [dosage]
    req["dispenseRequest"] = dispense
    return rec.add(req)


def dosage_of(med: Medicine) -> dict[str, Any]:
    """The Dosage of a medicine: its label text, daily timing, route and as-needed flag."""
    dosage: dict[str, Any] = {"text": med.dose_text,
                              "timing": {"repeat": {"frequency": med.frequency, "period": 1, "periodUnit": "d"}}}
    if med.as_needed:
        dosage["asNeededBoolean"] = True
    if med.route is not None:
        dosage["route"] = med.route.concept()
    return dosage


def supply(med: Medicine) -> dict[str, Any]:
    """The quantity of one supply (dispenseRequest.quantity), in its SNOMED CT unit when it has one."""
    amount: dict[str, Any] = {"value": med.quantity, "unit": med.unit_text}
    if med.unit is not None:
        amount.update(system=med.unit.system, code=med.unit.code)
    return amount


def concept(codings: tuple[Code, ...]) -> dict[str, Any]:
    """A CodeableConcept with each of ``codings`` (e.g. SNOMED CT and LOINC for one concept)."""
    return {"coding": [c.coding() for c in codings]}


def quantity(value: float, code: str) -> dict[str, Any]:
    """A UCUM Quantity; the human unit comes from codes.UNITS."""
    return {"value": value, "unit": codes.UNITS[code].display, "system": codes.UCUM, "code": code}


def observation(rec: Record, code: tuple[Code, ...], when: str, encounter: str | None, performer: str,
                category: Code = codes.OBS_CAT_VITAL) -> dict[str, Any]:
    """A final Observation (not yet added): ``performer`` is a full reference string and
    ``encounter`` an Encounter id (None when it was not taken at one)."""
    obs: dict[str, Any] = {"resourceType": "Observation", "id": rec.new_id("obs"), "status": "final",
                           "category": [category.concept()], "code": concept(code), "subject": rec.subject()}
    if encounter:
        obs["encounter"] = ref("Encounter", encounter)
    obs["effectiveDateTime"] = when
    obs["performer"] = [{"reference": performer}]
    return obs


def vital_signs(rec: Record, when: str, encounter: str, performer: str, *,
                measurements: bool, height: bool = True) -> None:
    """Blood pressure and heart rate for adults; with ``measurements`` also weight and BMI, and
    height unless ``height`` is False (an adult's height is measured once in a while).

    ``performer`` is a full reference string ("Practitioner/..."). Children get only weight and
    height, and only when ``measurements`` is set."""
    p = rec.person
    rng = p.rng
    adult = p.age >= 16
    if adult:
        systolic = 108 + 0.45 * p.age + (14 if "hypertension" in p.chronic else 0) + rng.gauss(0, 11)
        diastolic = 62 + 0.12 * p.age + (6 if "hypertension" in p.chronic else 0) + rng.gauss(0, 7)
        bp = observation(rec, codes.OBS_BP, when, encounter, performer)
        bp["component"] = [
            {"code": concept(codes.OBS_SYSTOLIC),
             "valueQuantity": quantity(round(min(max(systolic, 90), 200)), "mm[Hg]")},
            {"code": concept(codes.OBS_DIASTOLIC),
             "valueQuantity": quantity(round(min(max(diastolic, 50), 120)), "mm[Hg]")}]
        rec.add(bp)
        rate = rng.gauss(88 if "af" in p.chronic else 72, 10)
        hr = observation(rec, codes.OBS_HEART_RATE, when, encounter, performer)
        hr["valueQuantity"] = quantity(round(min(max(rate, 45), 140)), "/min")
        rec.add(hr)
    if not measurements:
        return
    tall, bmi = _size(rec, date.fromisoformat(when[:10]))
    weight = round(bmi * (tall / 100) ** 2, 1)
    measured = [(codes.OBS_WEIGHT, quantity(weight, "kg"))]
    if height or not adult:
        measured.append((codes.OBS_HEIGHT, quantity(tall, "cm")))
    if adult:
        measured.append((codes.OBS_BMI, quantity(round(weight / (tall / 100) ** 2, 1), "kg/m2")))
    for code, value in measured:
        obs = observation(rec, code, when, encounter, performer)
        obs["valueQuantity"] = value
        rec.add(obs)


def _size(rec: Record, day: date) -> tuple[float, float]:
    """(height in cm, BMI) on ``day``: children grow, adults keep their height and their weight
    drifts around their own BMI (health.py)."""
    p = rec.person
    rng = p.rng
    age = p.age - (p.today - day).days // 365
    if age < 16:
        height = 52 + 6.2 * age + rng.gauss(0, 4) if age > 0 else 60 + rng.gauss(0, 3)
        return round(height, 1), round(16 + 0.2 * max(age, 0) + rng.gauss(0, 1.5), 1)
    assert rec.health is not None
    return rec.health.height, min(max(rec.health.bmi + rng.gauss(0, 0.6), 16.5), 48.0)
