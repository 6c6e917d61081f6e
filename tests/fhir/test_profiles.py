"""Validation against the UK Core profiles (carerecord.fhir.profiles, generated/ukcore.json)."""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from carerecord.fhir import profiles
from carerecord.fhir.validation import validate

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
EXAMPLES = SHARED / "data" / "uk-core" / "examples"
needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="shared UK Core data absent")
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/"
PATIENT = UKCORE + "UKCore-Patient"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
# Examples whose file name does not start with the id of the profile they illustrate.
EXAMPLE_PROFILES = {"UKCore-VitalSigns-Observation-OxygenSaturation-Example.xml":
                    "UKCore-Observation-VitalSigns-OxygenSaturation",
                    "UKCore-Observation-VitalSigns-RespiratoryRate-Example.xml":
                    "UKCore-Observation-VitalSigns-RespirationRate"}


def messages(resource: dict[str, Any], claimed: list[str] | None = None) -> list[tuple[str, str, str]]:
    return [(i.severity, i.expression[0] if i.expression else "", i.diagnostics)
            for i in profiles.validate(resource, claimed)]


@cache
def example(name: str) -> dict[str, Any]:
    from carerecord.fhir.xml import parse_xml
    return parse_xml((EXAMPLES / name).read_bytes())


def illustrated_profile(file_name: str) -> str | None:
    """The resource profile an example illustrates: the longest held profile id its name starts with."""
    if file_name in EXAMPLE_PROFILES:
        return UKCORE + EXAMPLE_PROFILES[file_name]
    stem = file_name.removesuffix("-Example.xml")
    ids = [url.rsplit("/", 1)[1] for url in profiles.held_profiles()
           if (p := profiles.profile(url)) is not None and p.kind == "resource"]
    matches = [i for i in ids if stem == i or stem.startswith(i + "-")]
    return UKCORE + max(matches, key=len) if matches else None


def ukcore_patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "meta": {"profile": [PATIENT + "|2.6.1"]},
            "identifier": [{"system": NHS, "value": "9912003888"}], **extra}


def blood_pressure(**extra: Any) -> dict[str, Any]:
    loinc = "http://loinc.org"

    def component(code: str, text: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [{"system": loinc, "code": code, "display": text},
                                    {"system": "http://snomed.info/sct", "code": "1"}], "text": text},
                "valueQuantity": {"value": value, "unit": "millimeter of mercury",
                                  "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}

    return {"resourceType": "Observation",
            "meta": {"profile": [UKCORE + "UKCore-Observation-VitalSigns-BloodPressure"]},
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                      "observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": loinc, "code": "85354-9"},
                                {"system": "http://snomed.info/sct", "code": "75367002"}]},
            "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2024-01-01T10:00:00Z",
            "component": [component("8480-6", "Systolic blood pressure", 120),
                          component("8462-4", "Diastolic blood pressure", 80)], **extra}


# --- the generated file ----------------------------------------------------------------------

def test_ukcore_json_records_its_source_commit() -> None:
    data = orjson.loads(resources.files("carerecord.fhir").joinpath(
        "generated/ukcore.json").read_bytes())
    assert "3d2827e3e9918674640d0c14a0f870084397a615" in data["meta"]["source"]
    assert data["meta"]["generator"] == "scripts/generate_ukcore.py"


def test_server_holds_ukcore_resource_profiles_and_extensions() -> None:
    held = profiles.held_profiles()
    assert PATIENT in held and UKCORE + "Extension-UKCore-BirthSex" in held
    patient = profiles.profile(PATIENT + "|2.6.1")
    assert patient is not None and patient.type == "Patient" and patient.kind == "resource"


def test_slices_that_cannot_be_recognised_are_recorded_and_their_rules_skipped() -> None:
    data = orjson.loads(resources.files("carerecord.fhir").joinpath(
        "generated/ukcore.json").read_bytes())
    assert "UKCore-Observation-Lab: Observation.code.coding:valueset-PBCL" in \
        data["meta"]["undecidableSlices"]
    lab = profiles.profile(UKCORE + "UKCore-Observation-Lab")
    assert lab is not None and not any(":valueset-" in rule.id for rule in lab.rules)


# --- profile selection -----------------------------------------------------------------------

def test_valid_ukcore_patient_passes() -> None:
    assert messages(ukcore_patient()) == []


def test_unknown_profile_gives_information_not_an_error() -> None:
    patient = {"resourceType": "Patient", "meta": {"profile": ["http://example.org/P"]}}
    assert messages(patient) == [
        ("information", "Patient.meta.profile[0]",
         "Profile http://example.org/P is not held by this server: its constraints were not checked")]


def test_profile_of_another_resource_type_is_an_error() -> None:
    patient = {"resourceType": "Patient", "meta": {"profile": [UKCORE + "UKCore-Observation"]}}
    assert messages(patient) == [
        ("error", "Patient.meta.profile[0]", "Profile UKCore-Observation constrains Observation, "
                                             "not Patient")]


# --- constraints -----------------------------------------------------------------------------

def test_ukcore_patient_with_two_nhs_numbers_is_rejected() -> None:
    patient = ukcore_patient()
    patient["identifier"].append({"system": NHS, "value": "9912003888"})
    assert messages(patient) == [
        ("error", "Patient.identifier",
         "Profile UKCore-Patient: Patient.identifier:nhsNumber allows at most 1, found 2")]


def test_ukcore_nhs_number_identifier_without_value_is_rejected() -> None:
    patient = ukcore_patient(identifier=[{"system": "http://example.org/mrn", "value": "1"},
                                         {"system": NHS}])
    assert messages(patient) == [
        ("error", "Patient.identifier[1].value",
         "Profile UKCore-Patient: Patient.identifier:nhsNumber.value requires at least 1, found 0")]


def test_nhs_number_verification_status_outside_its_required_value_set_is_rejected() -> None:
    status = {"url": UKCORE + "Extension-UKCore-NHSNumberVerificationStatus",
              "valueCodeableConcept": {"coding": [{
                  "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                  "code": "99"}]}}
    patient = ukcore_patient(identifier=[{"system": NHS, "value": "9912003888",
                                          "extension": [status]}])
    assert messages(patient) == [
        ("error", "Patient.identifier[0].extension[0].valueCodeableConcept.coding[0].code",
         "Profile Extension-UKCore-NHSNumberVerificationStatus: code '99' from "
         "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland is not in "
         "the required value set https://fhir.hl7.org.uk/ValueSet/UKCore-NHSNumberVerificationStatus")]


def test_ukcore_extension_value_type_is_restricted_wherever_it_is_used() -> None:
    birth_sex = {"url": UKCORE + "Extension-UKCore-BirthSex", "valueString": "male"}
    patient = {"resourceType": "Patient", "extension": [birth_sex]}
    assert messages(patient) == [
        ("error", "Patient.extension[0].valueString",
         "Profile Extension-UKCore-BirthSex: Extension.value[x] must be of type CodeableConcept, "
         "found valueString")]


def test_valid_blood_pressure_observation_passes() -> None:
    resource = blood_pressure()
    assert validate(resource) == []
    assert messages(resource) == []


def test_vital_signs_fixed_status_is_enforced() -> None:
    assert messages(blood_pressure(status="preliminary")) == [
        ("error", "Observation.status", "Profile UKCore-Observation-VitalSigns-BloodPressure: "
                                        "Observation.status must be exactly 'final', found "
                                        "'preliminary'")]


def test_blood_pressure_value_is_not_allowed_and_components_fix_their_units() -> None:
    resource = blood_pressure(valueString="120/80")
    resource["component"][0]["valueQuantity"]["code"] = "mmHg"
    assert messages(resource) == [
        ("error", "Observation.value", "Profile UKCore-Observation-VitalSigns-BloodPressure: "
                                       "Observation.value[x] allows at most 0, found 1"),
        ("error", "Observation.component[0].valueQuantity.code",
         "Profile UKCore-Observation-VitalSigns-BloodPressure: "
         "Observation.component:SystolicBP.value[x].code must be exactly 'mm[Hg]', found 'mmHg'")]


def test_missing_systolic_component_slice_is_rejected() -> None:
    resource = blood_pressure()
    del resource["component"][0]
    assert ("error", "Observation.component",
            "Profile UKCore-Observation-VitalSigns-BloodPressure: Observation.component:SystolicBP "
            "requires at least 1, found 0") in messages(resource)


def test_vital_signs_invariant_requires_a_loinc_code() -> None:
    resource = blood_pressure()
    resource["code"]["coding"] = resource["code"]["coding"][1:]
    found = messages(resource)
    assert ("error", "Observation", "Profile UKCore-Observation-VitalSigns-BloodPressure: constraint "
            "ukcore-obs-vs-001 failed: `code.coding` SHALL include a LOINC \"magic code\"") in found


def test_lab_observation_subject_must_reference_a_patient() -> None:
    resource = {"resourceType": "Observation", "meta": {"profile": [UKCORE + "UKCore-Observation-Lab"]},
                "status": "final", "code": {"text": "Albumin"}, "subject": {"reference": "Group/1"},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                          "observation-category", "code": "laboratory"}]}],
                "valueString": "normal"}
    assert messages(resource) == [
        ("error", "Observation.subject.reference",
         "Profile UKCore-Observation-Lab: reference to Group is not allowed at Observation.subject "
         "(allowed: Patient)")]


def test_bundle_entries_are_checked_against_their_own_profiles() -> None:
    patient = ukcore_patient(identifier=[{"system": NHS}])
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": {"resourceType": "Patient"}}, {"resource": patient}]}
    assert messages(bundle) == [
        ("error", "Bundle.entry[1].resource.identifier[0].value",
         "Profile UKCore-Patient: Patient.identifier:nhsNumber.value requires at least 1, found 0")]


# --- the official UK Core examples -----------------------------------------------------------

def example_names() -> list[str]:
    return sorted(p.name for p in EXAMPLES.glob("*.xml")) if EXAMPLES.is_dir() else []


@needs_examples
@pytest.mark.parametrize("name", example_names())
def test_uk_core_example_passes_base_and_profile_validation(name: str) -> None:
    resource = example(name)
    claimed = [illustrated_profile(name)] if illustrated_profile(name) else []
    issues = validate(resource) + profiles.validate(resource) + profiles.validate(resource, claimed)
    assert [i for i in issues if i.severity in ("error", "fatal")] == []


@needs_examples
def test_uk_core_example_claiming_a_profile_is_checked_against_it() -> None:
    lab = example("UKCore-Observation-Lab-Albumin-Example.xml")
    assert lab["meta"]["profile"] == [UKCORE + "UKCore-Observation"]
    broken = copy.deepcopy(lab)
    broken["subject"] = {"reference": "Medication/1"}
    assert ("error", "Observation.subject.reference",
            "Reference to Medication is not allowed here (allowed: Device, Group, Location, "
            "Patient)") in [(i.severity, i.expression[0], i.diagnostics) for i in validate(broken)]


@needs_examples
def test_uk_core_patient_example_violating_uk_core_is_rejected() -> None:
    patient = copy.deepcopy(example("UKCore-Patient-RichardSmith-Example.xml"))
    patient["meta"] = {"profile": [PATIENT]}
    assert messages(patient) == []
    patient["identifier"].append(copy.deepcopy(patient["identifier"][0]))
    assert messages(patient) == [
        ("error", "Patient.identifier",
         "Profile UKCore-Patient: Patient.identifier:nhsNumber allows at most 1, found 2")]


@needs_examples
def test_uk_core_extension_examples_have_their_extensions_checked() -> None:
    patient = copy.deepcopy(example("Extension-UKCore-BirthSex-Example.xml"))
    ext = next(e for e in patient["extension"] if e["url"].endswith("Extension-UKCore-BirthSex"))
    ext["valueCodeableConcept"]["coding"][0]["code"] = "X"
    found = messages(patient)
    assert len(found) == 1 and found[0][0] == "error"
    assert "code 'X' from http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender" in found[0][2]
