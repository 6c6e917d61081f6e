"""The table of care dates (fhir/care_dates.py) names, for each type, search parameters of the
official R4 definitions of the right kinds, for types of the Patient compartment only: a name
that matched nothing would silently include every resource of the type in any date range."""

from __future__ import annotations

from carerecord.fhir import model
from carerecord.fhir.care_dates import CARE_DATES
from carerecord.fhir.search_params import default_registry


def test_every_care_date_is_a_date_parameter_of_its_type_and_every_status_a_token() -> None:
    registry = default_registry()
    wrong = []
    for res_type, spec in CARE_DATES.items():
        for code in (spec.start, spec.end):
            param = registry.get(res_type, code) if code else None
            if code and (param is None or param.type != "date"):
                wrong.append(f"{res_type}.{code}")
        if spec.ongoing is not None:
            param = registry.get(res_type, spec.ongoing[0])
            if param is None or param.type != "token":
                wrong.append(f"{res_type}.{spec.ongoing[0]}")
    assert wrong == []


def test_care_dates_are_given_for_compartment_types_and_not_for_standing_facts() -> None:
    compartment = set(model.patient_compartment())
    assert set(CARE_DATES) <= compartment
    assert {"AllergyIntolerance", "FamilyMemberHistory", "Patient", "RelatedPerson"}.isdisjoint(CARE_DATES)
    assert {"Observation", "Encounter", "Condition", "MedicationRequest", "Procedure", "Immunization"} <= set(CARE_DATES)
