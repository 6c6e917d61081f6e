"""Write-time validation against base R4 (carerecord.fhir.validation)."""

from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from carerecord.errors import Issue, Unprocessable
from carerecord.fhir.validation import require_valid, validate

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SYNTHEA = SHARED / "data" / "synthea-r4"
needs_synthea = pytest.mark.skipif(not SYNTHEA.is_dir(), reason="shared Synthea data absent")


def obs(**extra: Any) -> dict[str, Any]:
    """A minimal valid Observation, with extra elements."""
    return {"resourceType": "Observation", "status": "final", "code": {"text": "Pulse"}, **extra}


def only(resource: Any) -> Issue:
    issues = validate(resource)
    assert len(issues) == 1, issues
    return issues[0]


def assert_issue(resource: Any, expression: str, message: str, code: str | None = None,
                 severity: str = "error") -> None:
    issue = only(resource)
    assert issue.expression == ((expression,) if expression else ())
    assert issue.diagnostics == message
    assert issue.severity == severity
    if code:
        assert issue.code == code


def synthea_resources(limit: int | None = None) -> list[dict[str, Any]]:
    files = sorted(SYNTHEA.glob("*.json.gz"))[:limit]
    return [e["resource"] for f in files for e in orjson.loads(gzip.open(f).read())["entry"]]


# --- resource type and elements --------------------------------------------------------------

def test_minimal_valid_observation_has_no_issues() -> None:
    assert validate(obs()) == []


def test_patient_with_unknown_element_is_rejected_at_its_path() -> None:
    assert_issue({"resourceType": "Patient", "foo": 1}, "Patient.foo",
                 "Unknown element 'foo' for Patient", "structure")


def test_unknown_element_in_a_backbone_element_names_its_indexed_path() -> None:
    assert_issue({"resourceType": "Patient", "contact": [{"gender": "male"}, {"colour": "red"}]},
                 "Patient.contact[1].colour", "Unknown element 'colour' for Patient.contact")


def test_missing_resource_type_is_rejected() -> None:
    assert_issue({"id": "x"}, "", "Missing resourceType", "required")


def test_unknown_and_abstract_resource_types_are_rejected() -> None:
    for rtype in ("Foo", "DomainResource"):
        assert_issue({"resourceType": rtype}, "",
                     f"Unknown resource type '{rtype}': not a concrete FHIR R4 resource type")


def test_resource_that_is_not_an_object_is_rejected() -> None:
    assert_issue([], "", "A resource must be a JSON object, found an array", "structure")


def test_require_valid_raises_unprocessable_with_every_error() -> None:
    with pytest.raises(Unprocessable) as info:
        require_valid({"resourceType": "Patient", "foo": 1, "bar": 2})
    assert [i.expression for i in info.value.issues] == [("Patient.foo",), ("Patient.bar",)]


# --- cardinality -----------------------------------------------------------------------------

def test_observation_without_status_misses_a_required_element() -> None:
    resource = obs()
    del resource["status"]
    assert_issue(resource, "Observation.status", "Missing required element status of Observation",
                 "required")


def test_required_choice_element_is_named_without_its_type_suffix() -> None:
    request = {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
               "subject": {"reference": "Patient/1"}}
    assert_issue(request, "MedicationRequest.medication",
                 "Missing required element medication of MedicationRequest", "required")
    assert validate({**request, "medicationReference": {"reference": "Medication/m"}}) == []


def test_extension_without_url_misses_a_required_element() -> None:
    assert_issue({"resourceType": "Patient", "extension": [{"valueString": "a"}]},
                 "Patient.extension[0].url", "Missing required element url of Extension")


def test_single_element_given_as_array_is_rejected() -> None:
    assert_issue({"resourceType": "Patient", "gender": ["male"]}, "Patient.gender",
                 "Element gender does not repeat: its value must not be an array", "structure")


def test_repeating_element_given_as_object_is_rejected() -> None:
    assert_issue({"resourceType": "Patient", "name": {"family": "Smith"}}, "Patient.name",
                 "Element name repeats: its value must be a JSON array", "structure")


# --- JSON rules ------------------------------------------------------------------------------

def test_null_is_rejected() -> None:
    assert_issue({"resourceType": "Patient", "active": None}, "Patient.active",
                 "null is not allowed (omit the element instead)", "structure")


def test_empty_string_object_and_array_are_rejected() -> None:
    assert_issue({"resourceType": "Patient", "name": [{"family": ""}]}, "Patient.name[0].family",
                 "Empty strings are not allowed (use no element instead)")
    assert_issue({"resourceType": "Patient", "maritalStatus": {}}, "Patient.maritalStatus",
                 "Empty objects are not allowed (omit the element instead)")
    assert_issue({"resourceType": "Patient", "name": []}, "Patient.name",
                 "Empty arrays are not allowed (omit the element instead)")


def test_whitespace_only_string_is_rejected() -> None:
    assert_issue(obs(code={"text": "  \n"}), "Observation.code.text",
                 "A string must contain non-whitespace characters", "value")


def test_null_in_primitive_array_is_allowed_only_with_a_companion_entry() -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    good = {"resourceType": "Patient", "name": [{"given": ["Ann", None], "_given": [None, ext]}]}
    assert validate(good) == []
    assert_issue({"resourceType": "Patient", "name": [{"given": ["Ann", None]}]},
                 "Patient.name[0].given[1]",
                 "null is not allowed in an array unless the _given companion has an entry for it")


def test_companion_array_must_be_as_long_as_its_primitive_array() -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    assert_issue({"resourceType": "Patient", "name": [{"given": ["A", "B"], "_given": [ext]}]},
                 "Patient.name[0].given", "_given must have as many items as given (1 != 2)")


def test_primitive_extension_companion_is_validated_at_the_primitive_path() -> None:
    resource = {"resourceType": "Patient", "birthDate": "1970-01-01",
                "_birthDate": {"extension": [{"url": "http://example.org/t", "valueTime": "25:00:00"}]}}
    assert_issue(resource, "Patient.birthDate.extension[0].valueTime",
                 "Invalid time '25:00:00': does not match the FHIR time format")


def test_companion_of_a_complex_element_is_rejected() -> None:
    assert_issue({"resourceType": "Patient", "_name": {"id": "x"}}, "Patient._name",
                 "'_name' is only allowed for primitive elements", "structure")


# --- primitive types and formats -------------------------------------------------------------

@pytest.mark.parametrize(("element", "value", "message"), [
    ("active", "true", "Expected a JSON boolean (true or false) for FHIR type boolean, found a string"),
    ("multipleBirthInteger", "2",
     "Expected a JSON number without a fraction for FHIR type integer, found a string"),
    ("multipleBirthInteger", 2.5,
     "Expected a JSON number without a fraction for FHIR type integer, found a number"),
    ("multipleBirthInteger", 2**31, "Integer 2147483648 is outside the 32-bit range"),
    ("birthDate", 19700101, "Expected a JSON string for FHIR type date, found a number"),
    ("birthDate", "2023-02-30", "Invalid date '2023-02-30': not a real calendar date"),
    ("birthDate", "2023-02-29", "Invalid date '2023-02-29': not a real calendar date"),
    ("birthDate", "1970-1-1", "Invalid date '1970-1-1': does not match the FHIR date format"),
    ("deceasedDateTime", "2020-01-01T10:00:00",
     "Invalid dateTime '2020-01-01T10:00:00': does not match the FHIR dateTime format"),
    ("implicitRules", "http://example.org/a b",
     "Invalid uri 'http://example.org/a b': does not match the FHIR uri format"),
    ("language", " en", "Invalid code ' en': does not match the FHIR code format"),
    ("id", "a" * 65, f"Invalid id '{'a' * 65}': does not match the FHIR id format"),
    ("id", "a_b", "Invalid id 'a_b': does not match the FHIR id format"),
])
def test_bad_primitive_values_are_rejected_with_their_rule(element: str, value: Any,
                                                           message: str) -> None:
    # A value of the wrong JSON type is a structural fault (400); a malformed one is a bad value.
    # (2.5 for an integer is the right JSON type, a number, in the wrong format.)
    wrong_json_type = message.startswith("Expected a JSON") and not (
        "number" in message.split(" for ")[0] and message.endswith("found a number"))
    code = "structure" if wrong_json_type else "value"
    assert_issue({"resourceType": "Patient", element: value}, f"Patient.{element}", message, code)


@pytest.mark.parametrize(("element", "value"), [
    ("birthDate", "2024-02-29"), ("birthDate", "2000-02-29"), ("birthDate", "1970"),
    ("birthDate", "1970-04"), ("deceasedDateTime", "2020-01-01T10:00:00.123+01:00"),
    ("deceasedDateTime", "2020-12-31"), ("multipleBirthInteger", -3), ("id", "A-1.b"),
])
def test_good_primitive_values_are_accepted(element: str, value: Any) -> None:
    assert validate({"resourceType": "Patient", element: value}) == []


def test_instant_must_have_a_timezone() -> None:
    assert_issue(obs(issued="2020-01-01T10:00:00"), "Observation.issued",
                 "Invalid instant '2020-01-01T10:00:00': does not match the FHIR instant format")
    assert validate(obs(issued="2020-01-01T10:00:00Z")) == []


def test_positive_and_unsigned_integers_have_lower_bounds() -> None:
    sampled = {"origin": {"value": 0}, "period": 1, "dimensions": 0}
    assert_issue(obs(valueSampledData=sampled), "Observation.valueSampledData.dimensions",
                 "positiveInt must be at least 1 and at most 2147483647, found 0")
    timing = {"repeat": {"count": -1}}
    assert_issue({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                  "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"},
                  "dosageInstruction": [{"timing": timing}]},
                 "MedicationRequest.dosageInstruction[0].timing.repeat.count",
                 "positiveInt must be at least 1 and at most 2147483647, found -1")


def test_decimal_must_be_a_json_number() -> None:
    assert_issue(obs(valueQuantity={"value": "1.5"}), "Observation.valueQuantity.value",
                 "Expected a JSON number for FHIR type decimal, found a string")


@pytest.mark.parametrize(("attachment", "path", "message"), [
    ({"data": "abc"}, "data", "Invalid base64Binary: not valid base64 content"),
    ({"url": "urn:uuid:ABC"}, None, None),
])
def test_base64_content_is_checked(attachment: dict[str, Any], path: str | None,
                                   message: str | None) -> None:
    resource = {"resourceType": "Patient", "photo": [attachment]}
    if path is None:
        assert validate(resource) == []
    else:
        assert_issue(resource, f"Patient.photo[0].{path}", message or "")
    assert validate({"resourceType": "Patient", "photo": [{"data": "aGVs\nbG8="}]}) == []


def test_oid_and_uuid_formats_are_checked() -> None:
    assert_issue({"resourceType": "Patient", "extension": [{"url": "http://e.org/a",
                                                           "valueOid": "urn:oid:1.02"}]},
                 "Patient.extension[0].valueOid",
                 "Invalid oid 'urn:oid:1.02': does not match the FHIR oid format")
    assert_issue({"resourceType": "Patient", "extension": [{"url": "http://e.org/a",
                                                           "valueUuid": "urn:uuid:ABC"}]},
                 "Patient.extension[0].valueUuid",
                 "Invalid uuid 'urn:uuid:ABC': does not match the FHIR uuid format")


def test_expressions_carry_indexes_through_nested_arrays() -> None:
    component = [{"code": {"text": "a"}},
                 {"code": {"coding": [{"system": "http://loinc .org", "code": "1"}]}}]
    assert_issue(obs(component=component), "Observation.component[1].code.coding[0].system",
                 "Invalid uri 'http://loinc .org': does not match the FHIR uri format")


# --- choice types and bindings ---------------------------------------------------------------

def test_two_values_of_one_choice_element_are_rejected() -> None:
    assert_issue(obs(valueString="a", valueBoolean=True), "Observation.valueBoolean",
                 "Only one of value[x] is allowed, found valueString and valueBoolean", "structure")


def test_code_outside_a_required_binding_is_rejected() -> None:
    assert_issue({"resourceType": "Patient", "gender": "M"}, "Patient.gender",
                 "Code 'M' is not in the required value set "
                 "http://hl7.org/fhir/ValueSet/administrative-gender", "code-invalid")


def test_coding_of_a_bound_system_must_use_a_listed_code() -> None:
    system = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
    resource = {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
                "clinicalStatus": {"coding": [{"system": "http://snomed.info/sct", "code": "1"},
                                              {"system": system, "code": "gone"}]}}
    assert_issue(resource, "AllergyIntolerance.clinicalStatus.coding[1].code",
                 f"Code 'gone' from {system} is not in the required value set "
                 "http://hl7.org/fhir/ValueSet/allergyintolerance-clinical", "code-invalid")
    resource["clinicalStatus"]["coding"][1]["code"] = "active"
    assert validate(resource) == []


# --- references, contained and nested resources ----------------------------------------------

@pytest.mark.parametrize("ref", ["Patient/123", "Patient/123/_history/2", "Group/g",
                                 "urn:uuid:8d3b2c1a-0000-4000-8000-000000000001",
                                 "https://example.org/fhir/Patient/1",
                                 "Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9912003888"])
def test_acceptable_references_pass(ref: str) -> None:
    assert validate(obs(subject={"reference": ref})) == []


def test_reference_to_a_type_that_is_not_a_target_is_rejected() -> None:
    assert_issue(obs(subject={"reference": "Medication/1"}), "Observation.subject.reference",
                 "Reference to Medication is not allowed here (allowed: Device, Group, Location, "
                 "Patient)", "value")


def test_reference_to_an_unknown_type_is_rejected() -> None:
    assert_issue(obs(subject={"reference": "Pateint/1"}), "Observation.subject.reference",
                 "Invalid reference 'Pateint/1': unknown resource type Pateint")


def test_unresolvable_reference_format_is_a_warning() -> None:
    assert_issue(obs(subject={"reference": "abc"}), "Observation.subject.reference",
                 "Reference 'abc' cannot be resolved: expected Type/id, #id, Type?query or an "
                 "absolute URL", "value", severity="warning")


def test_local_reference_must_match_a_contained_resource() -> None:
    assert_issue(obs(subject={"reference": "#p1"}), "Observation.subject.reference",
                 "Reference '#p1' does not match the id of a contained resource")
    good = obs(contained=[{"resourceType": "Patient", "id": "p1"}], subject={"reference": "#p1"})
    assert validate(good) == []


def test_contained_resource_needs_an_id_and_a_reference_to_it() -> None:
    assert_issue(obs(contained=[{"resourceType": "Patient"}]), "Observation.contained[0]",
                 "A contained resource must have an id", "required")
    assert_issue(obs(contained=[{"resourceType": "Patient", "id": "p"}]), "Observation.contained[0]",
                 "Contained resource 'p' is not referenced from the containing resource (dom-3)")


def test_contained_resource_must_not_contain_resources() -> None:
    inner = {"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Group", "id": "g",
                                                                  "type": "person", "actual": True}]}
    issues = validate(obs(contained=[inner], subject={"reference": "#p"}))
    assert [(i.expression, i.diagnostics) for i in issues] == [
        (("Observation.contained[0]",), "A contained resource must not contain resources (dom-2)")]


def test_contained_resources_are_validated_at_their_path() -> None:
    contained = [{"resourceType": "Patient", "id": "p", "gender": "unknown-ish"}]
    assert_issue(obs(contained=contained, subject={"reference": "#p"}),
                 "Observation.contained[0].gender",
                 "Code 'unknown-ish' is not in the required value set "
                 "http://hl7.org/fhir/ValueSet/administrative-gender")


def test_bundle_entries_are_validated_with_their_entry_path() -> None:
    entries = [{"resource": {"resourceType": "Patient"}}, {"resource": obs()},
               {"resource": obs(subject={"reference": "Medication/1"})}]
    assert_issue({"resourceType": "Bundle", "type": "collection", "entry": entries},
                 "Bundle.entry[2].resource.subject.reference",
                 "Reference to Medication is not allowed here (allowed: Device, Group, Location, "
                 "Patient)")


def test_parameters_resources_are_validated_recursively() -> None:
    params = {"resourceType": "Parameters",
              "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "active": 1}}]}
    assert_issue(params, "Parameters.parameter[0].resource.active",
                 "Expected a JSON boolean (true or false) for FHIR type boolean, found a number")


# --- narrative, extensions, NHS numbers ------------------------------------------------------

def test_narrative_div_must_be_an_xhtml_div_without_script() -> None:
    text = {"status": "generated", "div": "<p>hi</p>"}
    assert_issue(obs(text=text), "Observation.text.div",
                 "Narrative div must be an XHTML fragment starting with <div")
    text["div"] = '<div xmlns="http://www.w3.org/1999/xhtml"><SCRIPT>x()</SCRIPT></div>'
    assert_issue(obs(text=text), "Observation.text.div",
                 "Narrative div must not contain script elements")


def test_extension_with_both_value_and_extensions_breaks_ext_1() -> None:
    ext = {"url": "http://example.org/e", "valueString": "a",
           "extension": [{"url": "b", "valueString": "c"}]}
    assert_issue({"resourceType": "Patient", "extension": [ext]}, "Patient.extension[0]",
                 "An extension must have either extensions or a value, not both (ext-1)",
                 "invariant")


@pytest.mark.parametrize("value", ["9912003889", "991200388", "991 200 3888", "99120038880"])
def test_invalid_nhs_number_is_rejected_at_the_identifier_value(value: str) -> None:
    patient = {"resourceType": "Patient",
               "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": value}]}
    assert_issue(patient, "Patient.identifier[0].value",
                 f"Invalid NHS number '{value}': must be 10 digits passing the Modulus 11 check")


def test_valid_nhs_number_is_accepted() -> None:
    patient = {"resourceType": "Patient",
               "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9912003888"}]}
    assert validate(patient) == []


# --- real data -------------------------------------------------------------------------------

@needs_synthea
def test_synthea_resources_of_a_few_bundles_validate_without_issues() -> None:
    resources = synthea_resources(limit=3)
    assert {"Patient", "Observation", "Encounter"} <= {r["resourceType"] for r in resources}
    assert [(r["resourceType"], r["id"], validate(r)) for r in resources if validate(r)] == []


@needs_synthea
def test_synthea_patient_with_a_broken_element_is_rejected() -> None:
    patient = copy.deepcopy(next(r for r in synthea_resources(limit=1)
                                 if r["resourceType"] == "Patient"))
    patient["address"][0]["extension"][0]["extension"][1]["valueDecimal"] = "-70.9"
    assert_issue(patient, "Patient.address[0].extension[0].extension[1].valueDecimal",
                 "Expected a JSON number for FHIR type decimal, found a string")


@pytest.mark.slow
@needs_synthea
def test_all_synthea_resources_validate_without_errors() -> None:
    bad = [(r["resourceType"], r["id"], issues) for r in synthea_resources()
           if (issues := validate(r))]
    assert bad == []
