"""Medicines showcase records: people whose records exercise each medicines check and workflow
of issue 5 (services/medicines), added to the ordinary record of chosen people.

In each block of 100 people, scenario ``s`` goes to the first adult (18+, living at home) at or
after index ``block + SLOTS[s]`` (within ten places); the first care-home resident of the block
gets a medication administration record (MAR). Whether person N has a scenario therefore
depends only on N, the seed and the profiles of at most ten neighbours in N's own block (each a
function of its own index): never on how many people are generated. Nothing here draws from
the person's random stream, so the rest of their record is unchanged, except that a showcase
order replaces the person's ordinary orders and issues of the same medicine (one statin, one
furosemide), so each scenario holds one order of what it is about.

- ``penicillin``: a confirmed, high-criticality penicillin allergy (anaphylaxis): amoxicillin or
  co-amoxiclav orders are blocked, cephalosporins warn.
- ``warfarin``: on warfarin (repeat): aspirin, NSAIDs, clarithromycin... interact.
- ``simvastatin``: on simvastatin 40 mg at night: clarithromycin is contraindicated.
- ``renal``: eGFR 24 (LOINC 62238-1, CKD-EPI): renal dose limits apply (metformin, gabapentin).
- ``repeats``: two repeat authorisations (UK Core repeat information) with a nominated pharmacy;
  amlodipine's review date passed 20 days ago (a request is flagged), furosemide's is in May.
- ``inpatient``: on the Acute Medical Unit with a hospital number on the wristband, active
  inpatient orders (regular paracetamol and omeprazole, salbutamol as needed) for the ward's chart.
- MAR: a care-home resident with regular medicines at set times, dispensed by their pharmacy.

Medicines not in the demo's dm+d product list are coded at dm+d VTM level (the moiety's
SNOMED CT code) with the product in the text, as hospital prescribing at VTM level is."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from carerecord.demo import codes, organisations
from carerecord.demo.people import Person, profile
from carerecord.demo.record import Record, ref, stamp

SLOTS: dict[str, int] = {"penicillin": 10, "warfarin": 20, "simvastatin": 30, "renal": 40, "repeats": 50,
                         "inpatient": 60}
BLOCK = 100
WINDOW = 10
REPEAT_INFO = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-MedicationRepeatInformation"
NOMINATED = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NominatedPharmacy"
HOSPITAL_NUMBER = "https://fhir.demo-trust.nhs.uk/Id/hospital-number"  # the trust's own MRN (wristband)


def _eligible(p: Person) -> bool:
    return p.age >= 18 and p.care_home is None


def scenarios_of(index: int, seed: int, person: Person) -> list[str]:
    """The showcase scenarios person ``index`` carries (see module docstring)."""
    block, place = divmod(index, BLOCK)
    found = []
    for name, slot in SLOTS.items():
        if slot <= place < slot + WINDOW and _eligible(person) and not any(
                _eligible(profile(block * BLOCK + k, seed, person.today)) for k in range(slot, place)):
            found.append(name)
    if person.care_home is not None and not any(
            profile(block * BLOCK + k, seed, person.today).care_home is not None for k in range(place)):
        found.append("mar")
    return found


def add_scenarios(rec: Record) -> None:
    """Add the person's showcase records (if any) to ``rec``."""
    p = rec.person
    found = scenarios_of(p.index, p.seed, p)
    for name in found:
        _BUILDERS[name](rec)
    if found:
        rec.resources[0].setdefault("extension", []).append(
            {"url": NOMINATED, "valueReference": ref("Organization", p.pharmacy.organization)})


def _vtm(key: str, text: str) -> dict[str, Any]:
    return codes.VTMS[key].concept(text)


def _dosage(text: str, repeat: dict[str, Any], amount: float, unit: str, *, as_needed: bool = False) -> dict[str, Any]:
    times = len(repeat.get("timeOfDay", repeat.get("when", ()))) or 1
    out: dict[str, Any] = {"text": text, "timing": {"repeat": {"frequency": times, "period": 1, "periodUnit": "d",
                                                               **repeat}}}
    if as_needed:
        out["asNeededBoolean"] = True
    out["route"] = codes.ROUTE_ORAL.concept()
    out["doseAndRate"] = [{"doseQuantity": {"value": amount, "unit": unit}}]
    return out


def _order(rec: Record, medicine: dict[str, Any], dosage: dict[str, Any], *, days_ago: int, quantity: float,
           unit: str, supply: int, inpatient: bool = False, review_in: int | None = None,
           repeats: int = 5) -> dict[str, Any]:
    p = rec.person
    authored = p.today - timedelta(days=days_ago)
    order: dict[str, Any] = {"resourceType": "MedicationRequest", "id": rec.new_id("med")}
    if review_in is not None:
        order["extension"] = [{"url": REPEAT_INFO, "extension": [
            {"url": "numberOfPrescriptionsIssued", "valueUnsignedInt": 0},
            {"url": "authorisationExpiryDate", "valueDateTime": (p.today + timedelta(days=review_in)).isoformat()}]}]
    order.update({"status": "active", "intent": "order",
                  "category": [(codes.CATEGORY_INPATIENT if inpatient else codes.CATEGORY_COMMUNITY).concept()],
                  "medicationCodeableConcept": medicine, "subject": rec.subject(),
                  "authoredOn": stamp(authored, 10 * 60)})
    hospital = organisations.hospital(p.seed)
    prescriber = hospital.members("amu:consultant")[0] if inpatient else p.usual_gp
    order["requester"] = ref("PractitionerRole", prescriber.role)
    order["courseOfTherapyType"] = (codes.COURSE_ACUTE if inpatient else codes.COURSE_CONTINUOUS).concept()
    order["dosageInstruction"] = [dosage]
    dispense: dict[str, Any] = {"quantity": {"value": quantity, "unit": unit},
                                "expectedSupplyDuration": {"value": supply, "unit": codes.UNITS["d"].display,
                                                           "system": codes.UCUM, "code": "d"}}
    if not inpatient:
        dispense["numberOfRepeatsAllowed"] = repeats
    dispense["performer"] = ref("Organization", organisations.HOSPITAL_PHARMACY if inpatient
                                else p.pharmacy.organization)
    order["dispenseRequest"] = dispense
    return rec.add(order)


def _penicillin(rec: Record) -> None:
    rec.resources[:] = [r for r in rec.resources if not (
        r["resourceType"] == "AllergyIntolerance" and r["code"]["coding"][0]["code"] == codes.NO_KNOWN_ALLERGY.code)]
    p = rec.person
    code, category = codes.ALLERGENS["penicillin"]
    rec.add({"resourceType": "AllergyIntolerance", "id": rec.new_id("allergy"),
             "clinicalStatus": codes.ALLERGY_ACTIVE.concept(), "verificationStatus": codes.ALLERGY_CONFIRMED.concept(),
             "type": "allergy", "category": [category], "criticality": "high", "code": code.concept(),
             "patient": rec.subject(), "recordedDate": (p.today - timedelta(days=400)).isoformat(),
             "recorder": ref("Practitioner", p.usual_gp.practitioner),
             "reaction": [{"manifestation": [codes.REACTIONS["anaphylaxis"].concept()], "severity": "severe"}]})


def _drop_ordinary(rec: Record, *codes_: str) -> None:
    """Remove the person's ordinary orders and issues (repeats.py) of medicines coded ``codes_``:
    the showcase's own order of a medicine replaces them, so the scenario holds one order of it.
    Nothing else refers to a MedicationRequest but its own issues, which go with it."""
    wanted = set(codes_)
    rec.resources[:] = [r for r in rec.resources if not (
        r["resourceType"] == "MedicationRequest"
        and r["medicationCodeableConcept"]["coding"][0]["code"] in wanted)]


def _warfarin(rec: Record) -> None:
    _order(rec, _vtm("warfarin", "Warfarin 1mg tablets"),
           _dosage("3mg at 18:00 as directed by the anticoagulant clinic", {"timeOfDay": ["18:00:00"]}, 3, "tablet"),
           days_ago=60, quantity=112, unit="tablet", supply=28, review_in=120)


def _simvastatin(rec: Record) -> None:
    _drop_ordinary(rec, codes.MEDICINES["atorvastatin_20"].code.code)  # one statin at a time
    _order(rec, _vtm("simvastatin", "Simvastatin 40mg tablets"),
           _dosage("One tablet at night", {"when": ["HS"]}, 1, "tablet"),
           days_ago=90, quantity=28, unit="tablet", supply=28, review_in=200)


def _renal(rec: Record) -> None:
    p = rec.person
    when = stamp(p.today - timedelta(days=14), 9 * 60 + 30)
    rec.add({"resourceType": "Observation", "id": rec.new_id("obs"), "status": "final",
             "category": [codes.OBS_CAT_LAB.concept()], "code": {"coding": [codes.OBS_EGFR[0].coding()], "text": "eGFR"},
             "subject": rec.subject(), "effectiveDateTime": when, "issued": when,
             "performer": [ref("Organization", organisations.HOSPITAL_TRUST)],
             "valueQuantity": {"value": 24, "unit": codes.UNITS["mL/min/{1.73_m2}"].display, "system": codes.UCUM,
                               "code": "mL/min/{1.73_m2}"}})


def _repeats(rec: Record) -> None:
    _drop_ordinary(rec, codes.MEDICINES["amlodipine"].code.code, codes.MEDICINES["furosemide"].code.code)
    for key, amount, review_in in (("amlodipine", 5, -20), ("furosemide", 1, 160)):
        med = codes.MEDICINES[key]
        dosage = _dosage(med.dose_text, {"frequency": med.frequency, "period": 1, "periodUnit": "d"}, amount,
                         med.unit_text)
        _order(rec, med.code.concept(), dosage, days_ago=300, quantity=med.quantity, unit=med.unit_text,
               supply=med.days, review_in=review_in)


def _inpatient(rec: Record) -> None:
    p = rec.person
    rec.resources[0]["identifier"].append({"system": HOSPITAL_NUMBER, "value": f"RZZ{p.index:07d}"})
    # The admission itself: an open inpatient Encounter at the trust is the ward's legitimate
    # relationship with the patient (access/relationships.py), as a real admission would be.
    rec.add({"resourceType": "Encounter", "id": rec.new_id("enc"), "status": "in-progress",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP",
                       "display": "inpatient encounter"},
             "subject": rec.subject(), "serviceProvider": ref("Organization", organisations.HOSPITAL_TRUST),
             "period": {"start": stamp(p.today - timedelta(days=1), 9 * 60)},
             "location": [{"location": ref("Location", "demo-loc-hospital-ed"), "status": "completed"},
                          {"location": ref("Location", organisations.ward_location("amu")), "status": "active"}]})
    soluble = codes.MEDICINES["paracetamol"].code.concept()
    _order(rec, soluble, _dosage("1g four times a day", {"frequency": 4, "period": 1, "periodUnit": "d"}, 2, "tablet"),
           days_ago=1, quantity=32, unit="tablet", supply=4, inpatient=True)
    _order(rec, _vtm("omeprazole", "Omeprazole 20mg gastro-resistant capsules"),
           _dosage("20mg each morning before breakfast", {"when": ["ACM"]}, 20, "mg"),
           days_ago=1, quantity=7, unit="capsule", supply=7, inpatient=True)
    inhaler = codes.MEDICINES["salbutamol"]
    prn = _dosage(inhaler.dose_text, {"frequency": 4, "period": 1, "periodUnit": "d"}, 2, "dose", as_needed=True)
    prn["route"] = codes.ROUTE_INHALATION.concept()
    _order(rec, inhaler.code.concept(), prn, days_ago=1, quantity=200, unit="dose", supply=30, inpatient=True)


def _mar(rec: Record) -> None:
    _drop_ordinary(rec, codes.MEDICINES["furosemide"].code.code, codes.MEDICINES["paracetamol"].code.code)
    _order(rec, codes.MEDICINES["furosemide"].code.concept(),
           _dosage("One tablet each morning", {"timeOfDay": ["08:00:00"]}, 1, "tablet"),
           days_ago=45, quantity=28, unit="tablet", supply=28, review_in=90)
    _order(rec, codes.MEDICINES["paracetamol"].code.concept(),
           _dosage("Two tablets four times a day", {"timeOfDay": ["08:00:00", "12:00:00", "17:00:00", "22:00:00"]},
                   2, "tablet"), days_ago=45, quantity=224, unit="tablet", supply=28, review_in=90)


_BUILDERS = {"penicillin": _penicillin, "warfarin": _warfarin, "simvastatin": _simvastatin, "renal": _renal,
             "repeats": _repeats, "inpatient": _inpatient, "mar": _mar}
