"""Codes: only from the documented tables, dm+d codes as found in the shared examples, and used
in clinically sensible ways."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from carerecord.demo import codes
from tests.demo.helpers import SHARED_DATA, TODAY, Resource, codes_of, codings, of_type

# file under shared/data where each dm+d code was found (see the comments in codes.py)
DMD_SOURCES = {
    "amlodipine": "nhs-eps/spec/dispensing/dispense-notification/acute-primary-example-05-req.json",
    "furosemide": "nhs-eps/spec/dispensing/dispense-notification/acute-primary-example-05-req.json",
    "salbutamol": "nhs-eps/primary-care/acute-and-repeat-prescribing/1-Prepare-Request-200_OK.json",
    "budesonide": "nhs-eps/spec/errors/example-b-spine-error-patient-deceased/PrepareRequest-FhirMessageUnsigned.json",
    "paracetamol": "nhs-eps/primary-care/acute-and-repeat-prescribing/1-Prepare-Request-200_OK.json",
    "co_codamol": "nhs-eps/primary-care/acute/nominated-pharmacy/medical-prescriber/1-Prepare-Request-200_OK.json",
    "diclofenac_gel": "dmd-sample/dmd/1/f_vmp2_3010419.xml",
    "betamethasone": "nhs-eps/spec/errors/example-b-spine-error-patient-deceased/PrepareRequest-FhirMessageUnsigned.json",
    "amoxicillin_500": "uk-core/examples/UKCore-MedicationRequest-Amoxicillin-Example.xml",
    "amoxicillin_250": "uk-core/examples/UKCore-MedicationStatement-Amoxicillin-Example.xml",
    "doxycycline": "uk-core/examples/UKCore-MedicationRequest-Doxycycline-Example.xml",
    "azithromycin": "nhs-eps/primary-care/acute/nominated-pharmacy/medical-prescriber/1-Prepare-Request-200_OK.json",
}
PENICILLINS = {codes.MEDICINES[k].code.code for k in ("amoxicillin_500", "amoxicillin_250")}
DMD_CODED = sorted(k for k, m in codes.MEDICINES.items() if m.code.system == codes.DMD)
VTM_CODED = sorted(k for k, m in codes.MEDICINES.items() if m.code.system != codes.DMD)
KNOWLEDGE_BASE = Path(__file__).resolve().parents[2] / "src/carerecord/services/medicines/data/medicines.json"


@pytest.mark.parametrize("key", VTM_CODED)
def test_each_vtm_coded_medicine_is_the_knowledge_base_vtm_with_its_product_in_the_text(key: str) -> None:
    medicine = codes.MEDICINES[key]
    vtms = {m["name"]: m.get("vtm") for m in json.loads(KNOWLEDGE_BASE.read_text())["medicines"]}
    assert medicine.code.system == codes.SNOMED and vtms[medicine.code.display] == medicine.code.code
    assert medicine.text and medicine.text.startswith(medicine.code.display)


def test_every_coding_comes_from_the_documented_tables(resources: list[Resource]) -> None:
    known = codes.known_codings()
    unknown = {(c["system"], c["code"]) for r in resources for c in codings(r)
               if (c["system"], c["code"]) not in known}
    assert unknown == set()


def test_every_coding_display_matches_its_table_entry(resources: list[Resource]) -> None:
    displays = {(c.system, c.code): c.display for c in codes.all_codes()}
    wrong = {(c["code"], c.get("display")) for r in resources for c in codings(r)
             if "display" in c and c["display"] != displays[(c["system"], c["code"])]}
    assert wrong == set()


@pytest.mark.parametrize("key", DMD_CODED)
def test_each_dmd_code_and_display_is_found_in_its_cited_file(key: str) -> None:
    assert key in DMD_SOURCES
    path = SHARED_DATA / DMD_SOURCES[key]
    if not path.exists():
        pytest.skip(f"shared data {path} is not available")
    text = path.read_text(encoding="utf-8")
    medicine = codes.MEDICINES[key].code
    assert medicine.code in text and medicine.display in text


def test_no_penicillin_allergic_person_is_prescribed_a_penicillin(people: list[list[Resource]]) -> None:
    allergy = {c.code for c, _ in (codes.ALLERGENS["penicillin"], codes.ALLERGENS["amoxicillin"])}
    allergic = [p for p in people if codes_of(p, "AllergyIntolerance") & allergy]
    assert allergic
    for person in allergic:
        prescribed = {m["medicationCodeableConcept"]["coding"][0]["code"]
                      for m in of_type(person, "MedicationRequest")}
        assert not prescribed & PENICILLINS


def test_hba1c_is_recorded_only_for_people_with_diabetes_and_for_nearly_all_of_them(
        people: list[list[Resource]]) -> None:
    hba1c = codes.OBS_HBA1C[0].code
    measured = [p for p in people if hba1c in codes_of(p, "Observation")]
    diabetic = [p for p in people if codes.CONDITIONS["diabetes_t2"].code in codes_of(p, "Condition")]
    assert measured and all(p in diabetic for p in measured)
    assert len(measured) >= 0.8 * len(diabetic)


def test_medication_requests_are_orders_or_issues_with_dosage_text_and_timing(resources: list[Resource]) -> None:
    requests = of_type(resources, "MedicationRequest")
    assert {r["intent"] for r in requests} == {"order", "instance-order"}
    for req in requests:
        assert req["status"] in {"active", "completed"}
        dosage = req["dosageInstruction"][0]
        assert dosage["text"] and dosage["timing"]["repeat"]["frequency"] >= 1
        course = req["courseOfTherapyType"]["coding"][0]["code"]
        assert course in {"acute", "continuous"}
        # an issue of a repeat is made from an authorisation; an order is not made from anything
        assert ("basedOn" in req) == (req["intent"] == "instance-order")


def test_blood_pressure_has_systolic_and_diastolic_components_in_mm_hg(resources: list[Resource]) -> None:
    panels = [o for o in of_type(resources, "Observation") if o["code"]["coding"][0]["code"] == "75367002"]
    assert panels
    for panel in panels:
        systolic, diastolic = (c["valueQuantity"] for c in panel["component"])
        assert systolic["code"] == diastolic["code"] == "mm[Hg]"
        assert 90 <= systolic["value"] <= 200 and 50 <= diastolic["value"] <= 120
        assert systolic["value"] > diastolic["value"]


def test_future_appointments_are_booked_and_past_ones_fulfilled(resources: list[Resource]) -> None:
    appointments = of_type(resources, "Appointment")
    now = datetime(TODAY.year, TODAY.month, TODAY.day).astimezone()
    booked = [a for a in appointments if a["status"] == "booked"]
    assert booked and len(booked) < len(appointments)
    for appt in appointments:
        start = datetime.fromisoformat(appt["start"])
        assert (start > now) == (appt["status"] == "booked")
        actors = [p["actor"]["reference"].split("/")[0] for p in appt["participant"]]
        assert actors[:2] == ["Patient", "Practitioner"]
