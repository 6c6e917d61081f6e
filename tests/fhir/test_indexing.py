"""Tests of search index extraction (carerecord.fhir.indexing) and the FHIRPath subset compiler
(carerecord.fhir.paths), including an independent check against fhirpathpy on Synthea data."""

from __future__ import annotations

import gzip
import re
import time
from collections import defaultdict
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from carerecord.errors import Invalid
from carerecord.fhir.dates import date_range
from carerecord.fhir.indexing import (
    DATE_MAX,
    DATE_MIN,
    IndexRows,
    date_bounds,
    extract,
    normalize,
    normalizer,
    number_bounds,
    patient_compartments,
)
from carerecord.fhir.paths import fhirpath_options, select
from carerecord.fhir.search_params import SearchParamRegistry, default_registry

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SYNTHEA = SHARED / "data" / "synthea-r4"
US = 1_000_000
UCUM = "http://unitsofmeasure.org"


def us(text: str) -> int:
    return date_range(text)[0]


def rows(resource: dict[str, Any], code: str, registry: SearchParamRegistry | None = None) -> dict[str, list[Any]]:
    """The rows of one parameter code (and its :modifier rows), per table."""
    out = extract(resource, registry)
    return {table: [r for r in got if r[0] == code or r[0].startswith(code + ":")]
            for table, got in out._asdict().items() if any(r[0] == code or r[0].startswith(code + ":") for r in got)}


@cache
def synthea(bundles: int = 3) -> tuple[dict[str, Any], ...]:
    """Resources of the first Synthea bundles, urn:uuid references rewritten to Type/id as a
    transaction would store them."""
    files = sorted(SYNTHEA.glob("*.json.gz"))[:bundles]
    if not files:
        pytest.skip("Synthea data not present")
    out: list[dict[str, Any]] = []
    for f in files:
        entries = orjson.loads(gzip.open(f).read())["entry"]
        raw = orjson.dumps([e["resource"] for e in entries]).decode()
        for e in entries:
            raw = raw.replace(f'"{e["fullUrl"]}"', f'"{e["resource"]["resourceType"]}/{e["resource"]["id"]}"')
        out += orjson.loads(raw)
    return tuple(out)


def sample(per_type: int) -> list[dict[str, Any]]:
    counts: dict[str, int] = defaultdict(int)
    picked = []
    for r in synthea():
        counts[r["resourceType"]] += 1
        if counts[r["resourceType"]] <= per_type:
            picked.append(r)
    return picked


OBS = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure"}],
             "text": "Blood  Pressure"},
    "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p1"}],
    "effectiveDateTime": "2020-03-04T10:00:00+01:00", "issued": "2020-03-04T09:00:00.250Z",
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 80, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
    ],
}


# ---------------------------------------------------------------- tokens
def test_observation_code_is_indexed_as_token_rows() -> None:
    got = rows(OBS, "code")["token"]
    assert ("code", "http://loinc.org", "85354-9", "blood pressure") in got
    assert ("code", None, None, "blood pressure") in got  # CodeableConcept.text, normalized


def test_identifier_gives_value_rows_and_of_type_rows() -> None:
    patient = {"resourceType": "Patient", "id": "p", "identifier": [
        {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"},
        {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                  "text": "Medical Record"}, "system": "urn:oid:1.2", "value": "A1"}]}
    got = rows(patient, "identifier")["token"]
    assert ("identifier", "https://fhir.nhs.uk/Id/nhs-number", "9000000009", None) in got
    assert ("identifier", "urn:oid:1.2", "A1", "medical record") in got
    assert ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "MR|A1", None) in got
    assert len(got) == 3


def test_contact_point_system_is_the_token_system_and_where_filters_by_it() -> None:
    patient = {"resourceType": "Patient", "telecom": [{"system": "phone", "value": "0113 496 0000"},
                                                      {"system": "email", "value": "a@b.uk"}]}
    assert rows(patient, "telecom")["token"] == [("telecom", "phone", "0113 496 0000", None),
                                                 ("telecom", "email", "a@b.uk", None)]
    assert rows(patient, "email")["token"] == [("email", "email", "a@b.uk", None)]
    assert rows(patient, "phone")["token"] == [("phone", "phone", "0113 496 0000", None)]


def test_booleans_and_codes_are_tokens_without_system() -> None:
    patient = {"resourceType": "Patient", "active": True, "gender": "female"}
    assert rows(patient, "active")["token"] == [("active", None, "true", None)]
    assert rows(patient, "gender")["token"] == [("gender", None, "female", None)]


@pytest.mark.parametrize(("deceased", "token"), [
    ({}, "false"), ({"deceasedBoolean": False}, "false"), ({"deceasedBoolean": True}, "true"),
    ({"deceasedDateTime": "2020"}, "true")])
def test_patient_deceased_evaluates_the_boolean_expression(deceased: dict[str, Any], token: str) -> None:
    assert rows({"resourceType": "Patient", **deceased}, "deceased")["token"] == [("deceased", None, token, None)]


# ---------------------------------------------------------------- strings
def test_string_normalization_lowercases_strips_accents_and_collapses_whitespace() -> None:
    assert normalize("  José\t ÁLVAREZ-Núñez ") == "jose alvarez-nunez"
    assert normalize("Straße") == "strasse"
    assert normalize("O'Brien") == "o'brien"


def test_human_name_gives_each_part_and_the_full_name() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Núñez", "given": ["Ana", "María"],
                                                    "prefix": ["Dr"], "suffix": ["PhD"], "text": "Dr Ana Núñez"}]}
    got = {(n, e) for _, n, e in rows(patient, "name")["string"]}
    assert got == {("nunez", "Núñez"), ("ana", "Ana"), ("maria", "María"), ("dr", "Dr"), ("phd", "PhD"),
                   ("dr ana nunez", "Dr Ana Núñez"), ("dr ana maria nunez phd", "Dr Ana María Núñez PhD")}
    assert rows(patient, "family")["string"] == [("family", "nunez", "Núñez")]


def test_address_gives_each_line_and_part() -> None:
    patient = {"resourceType": "Patient", "address": [{"line": ["1 High St", "Flat 2"], "city": "Leeds",
                                                       "district": "West Yorks", "state": "England",
                                                       "postalCode": "LS1 1AA", "country": "GB"}]}
    got = {e for _, _, e in rows(patient, "address")["string"]}
    assert got == {"1 High St", "Flat 2", "Leeds", "West Yorks", "England", "LS1 1AA", "GB"}
    assert rows(patient, "address-postalcode")["string"] == [("address-postalcode", "ls1 1aa", "LS1 1AA")]


# ---------------------------------------------------------------- dates
@pytest.mark.parametrize(("text", "low", "high"), [
    ("1990", "1990-01-01T00:00:00Z", "1990-12-31T23:59:59.999999Z"),
    ("2024-02", "2024-02-01T00:00:00Z", "2024-02-29T23:59:59.999999Z"),
    ("2023-12", "2023-12-01T00:00:00Z", "2023-12-31T23:59:59.999999Z"),
    ("2020-03-04", "2020-03-04T00:00:00Z", "2020-03-04T23:59:59.999999Z"),
    ("2020-03-04T10:00", "2020-03-04T10:00:00Z", "2020-03-04T10:00:59.999999Z"),
    ("2020-03-04T10:00:05", "2020-03-04T10:00:05Z", "2020-03-04T10:00:05.999999Z"),
    ("2020-03-04T10:00:05.25Z", "2020-03-04T10:00:05.250000Z", "2020-03-04T10:00:05.259999Z"),
    ("1965-07-01T23:30:00-05:00", "1965-07-02T04:30:00Z", "1965-07-02T04:30:00.999999Z"),
])
def test_dates_become_ranges_by_their_precision(text: str, low: str, high: str) -> None:
    assert date_bounds(text) == (us(low), us(high))


def test_datetime_without_timezone_is_taken_as_utc() -> None:
    assert date_bounds("2020-03-04T10:00:00") == date_bounds("2020-03-04T10:00:00Z")
    assert date_bounds("2020-03-04T10:00:00+01:00") == date_bounds("2020-03-04T09:00:00Z")


@pytest.mark.parametrize("text", ["1990", "2000-02", "2023-02-28", "1969-12-31T23:59:59.9Z",
                                  "2020-03-04T10:00", "2020-03-04T10:00:05.123456789+14:00", "0001-01-01"])
def test_date_bounds_agree_with_the_search_side_date_range(text: str) -> None:
    assert date_bounds(text) == date_range(text)


@pytest.mark.parametrize("text", ["2023-02-30", "2023-13", "20230101", "2020-01-01T25:00:00Z", "soon", ""])
def test_invalid_dates_give_no_range(text: str) -> None:
    assert date_bounds(text) is None


def test_observation_dates_index_effective_and_issued() -> None:
    got = extract(OBS).date
    assert ("date", us("2020-03-04T09:00:00Z"), us("2020-03-04T09:00:00Z") + US - 1) in got


def test_period_without_end_or_start_is_open() -> None:
    enc = {"resourceType": "Encounter", "period": {"start": "2021-05-01"}}
    assert rows(enc, "date")["date"] == [("date", us("2021-05-01"), DATE_MAX)]
    enc["period"] = {"end": "2021-05-01"}
    assert rows(enc, "date")["date"] == [("date", DATE_MIN, us("2021-05-02") - 1)]


def test_timing_gives_each_event_and_its_bounds_period() -> None:
    req = {"resourceType": "ServiceRequest", "occurrenceTiming": {
        "event": ["2021-01-01", "2021-01-08"], "repeat": {"boundsPeriod": {"start": "2021-02-01", "end": "2021-02-02"}}}}
    assert sorted(rows(req, "occurrence")["date"]) == sorted([
        ("occurrence", us("2021-01-01"), us("2021-01-02") - 1), ("occurrence", us("2021-01-08"), us("2021-01-09") - 1),
        ("occurrence", us("2021-02-01"), us("2021-02-03") - 1)])


# ---------------------------------------------------------------- numbers and quantities
@pytest.mark.parametrize(("value", "bounds"), [
    (100, (100.0, 99.5, 100.5)), (1.5, (1.5, 1.45, 1.55)), (Decimal("1.50"), (1.5, 1.495, 1.505)),
    (0.001, (0.001, 0.0005, 0.0015)), (100.0, (100.0, 99.95, 100.05)), (1e21, (1e21, 5e20, 1.5e21)),
    (-2, (-2.0, -2.5, -1.5))])
def test_numbers_get_bounds_by_the_precision_of_their_last_digit(value: Any, bounds: tuple[float, ...]) -> None:
    assert number_bounds(value) == pytest.approx(bounds)


@pytest.mark.parametrize("value", [True, None, "1", float("nan"), {}])
def test_non_numbers_have_no_bounds(value: Any) -> None:
    assert number_bounds(value) is None


def test_number_parameters_index_decimals_and_integers() -> None:
    got = rows({"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.25}]}, "probability")
    assert got["number"] == [("probability", 0.25, 0.245, 0.255)]
    seq = {"resourceType": "MolecularSequence", "variant": [{"start": 100, "end": 101}]}
    assert rows(seq, "variant-start")["number"] == [("variant-start", 100.0, 99.5, 100.5)]


def test_quantity_with_code_and_unit_gives_a_coded_row_and_a_unit_row() -> None:
    obs = {"resourceType": "Observation", "valueQuantity": {"value": 5.4, "unit": "millimoles per litre",
                                                           "system": UCUM, "code": "mmol/L"}}
    got = rows(obs, "value-quantity")["quantity"]
    assert got == [("value-quantity", UCUM, "mmol/L", 5.4, pytest.approx(5.35), pytest.approx(5.45)),
                   ("value-quantity", None, "millimoles per litre", 5.4, pytest.approx(5.35),
                    pytest.approx(5.45))]


def test_a_unit_equal_to_its_coded_unit_gets_no_row_of_its_own() -> None:
    """'5.4||mmol/L' already matches the coded row (code in any system), so no duplicate."""
    obs = {"resourceType": "Observation", "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": UCUM,
                                                           "code": "mmol/L"}}
    got = rows(obs, "value-quantity")["quantity"]
    assert got == [("value-quantity", UCUM, "mmol/L", 5.4, pytest.approx(5.35), pytest.approx(5.45))]


def test_money_is_a_quantity_in_iso_4217() -> None:
    claim = {"resourceType": "ChargeItem", "priceOverride": {"value": 12, "currency": "GBP"}}
    assert rows(claim, "price-override")["quantity"] == [
        ("price-override", "urn:iso:std:iso:4217", "GBP", 12.0, 11.5, 12.5)]


def test_range_quantity_spans_low_to_high() -> None:
    cond = {"resourceType": "Condition", "onsetRange": {"low": {"value": 10, "unit": "a"}, "high": {"value": 20, "unit": "a"}}}
    assert rows(cond, "onset-age")["quantity"] == [("onset-age", None, "a", 10.0, 10.0, 20.0)]


def test_choice_types_are_filtered_by_as() -> None:
    obs = {"resourceType": "Observation", "valueCodeableConcept": {"coding": [{"system": "s", "code": "c"}]}}
    got = extract(obs)
    assert ("value-concept", "s", "c", None) in got.token
    assert not got.quantity and not got.string


# ---------------------------------------------------------------- references and uris
@pytest.mark.parametrize(("ref", "row"), [
    ("Patient/123", ("Patient", "123", None)),
    ("Patient/123/_history/4", ("Patient", "123", None)),
    # Absolute: the store makes references to itself relative before indexing, so an absolute
    # one names another server's resource and must not look like the local Patient/123.
    ("https://x.nhs.uk/fhir/Patient/123", (None, None, "https://x.nhs.uk/fhir/Patient/123")),
    ("urn:uuid:8c4f3a4e-0000-4000-8000-000000000001", (None, None, "urn:uuid:8c4f3a4e-0000-4000-8000-000000000001")),
])
def test_references_become_type_id_and_url(ref: str, row: tuple[Any, ...]) -> None:
    got = rows({"resourceType": "Observation", "subject": {"reference": ref}}, "subject")["reference"]
    assert got == [("subject", *row)]


def test_contained_references_give_no_row() -> None:
    assert rows({"resourceType": "Observation", "subject": {"reference": "#p1"}}, "subject") == {}


def test_reference_identifier_gives_an_identifier_token_row() -> None:
    obs = {"resourceType": "Observation", "subject": {"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                                     "value": "9000000009"}}}
    assert rows(obs, "subject") == {"token": [("subject:identifier", "https://fhir.nhs.uk/Id/nhs-number",
                                               "9000000009", None)]}


def test_canonical_references_lose_their_version() -> None:
    qr = {"resourceType": "QuestionnaireResponse", "questionnaire": "http://example.org/Questionnaire/phq9|2.0"}
    assert rows(qr, "questionnaire")["reference"] == [("questionnaire", None, None, "http://example.org/Questionnaire/phq9")]


def test_where_resolve_is_patient_keeps_only_patient_references() -> None:
    got = extract(OBS)
    assert ("patient", "Patient", "p1", None) in got.reference
    assert ("performer", "Practitioner", "d1", None) in got.reference
    assert not [r for r in got.reference if r[0] == "patient" and r[1] != "Patient"]
    group = extract({"resourceType": "Observation", "subject": {"reference": "Group/g1"}})
    assert [r for r in group.reference if r[0] == "patient"] == []


def test_uri_parameters_index_profile_and_source() -> None:
    obs = {"resourceType": "Observation", "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"],
                                                   "source": "urn:sys:gp"}}
    assert extract(obs).uri == [("_profile", "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"),
                                ("_source", "urn:sys:gp")]


# ---------------------------------------------------------------- composites, dedup, skipping
def test_composite_code_value_quantity_pairs_each_component_code_with_its_value() -> None:
    got = [c for c in extract(OBS).composite if c[0] == "component-code-value-quantity"]
    systolic = (("http://loinc.org", "8480-6", None), (UCUM, "mm[Hg]", 120.0, 119.5, 120.5))
    assert ("component-code-value-quantity", systolic) in got
    assert len(got) == 4  # two components x (coded + unit quantity row)
    assert not [c for c in got if c[1][0][1] == "8480-6" and c[1][1][2] == 80.0]


def test_rows_are_deduplicated() -> None:
    obs = {"resourceType": "Observation", "category": [{"coding": [{"system": "s", "code": "c"}]}] * 3}
    assert rows(obs, "category")["token"] == [("category", "s", "c", None)]


def test_parameters_the_store_indexes_itself_or_without_expression_give_no_rows() -> None:
    got = extract({"resourceType": "Patient", "id": "p", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"},
                   "text": {"status": "generated", "div": "<div>x</div>"}})
    assert got == IndexRows([], [("deceased", None, "false", None)], [], [], [], [], [], [])


def test_odd_content_is_skipped_not_raised() -> None:
    got = extract({"resourceType": "Observation", "code": "not-a-concept", "subject": ["x"],
                   "effectiveDateTime": "yesterday", "valueQuantity": {"value": "5"}})
    assert got.date == [] and got.quantity == [] and got.reference == []


def test_a_primitive_holding_an_object_is_invalid_not_a_crash() -> None:
    with pytest.raises(Invalid):
        extract({"resourceType": "Observation", "code": {"coding": [{"system": {"x": 1}, "code": "c"}]}})
    with pytest.raises(Invalid):
        extract({"id": "no-type"})


def test_an_unknown_resource_type_gives_no_rows() -> None:
    assert extract({"resourceType": "Nonsense", "id": "x"}) == IndexRows([], [], [], [], [], [], [], [])


# ---------------------------------------------------------------- custom parameters
def test_custom_extension_parameter_is_extracted_natively() -> None:
    reg = SearchParamRegistry()
    reg.add({"resourceType": "SearchParameter", "url": "http://e.org/sp/birthsex", "code": "birthsex",
             "base": ["Patient"], "type": "token",
             "expression": "Patient.extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex').value"})
    reg.add({"resourceType": "SearchParameter", "url": "http://e.org/sp/race", "code": "race", "base": ["Patient"],
             "type": "token", "expression": "Patient.extension.where(url = 'http://e.org/race').extension"
                                            ".where(url = 'ombCategory').value.as(Coding)"})
    patient = {"resourceType": "Patient", "extension": [
        {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"},
        {"url": "http://e.org/race", "extension": [{"url": "ombCategory", "valueCoding": {"system": "r", "code": "2106-3"}},
                                                   {"url": "text", "valueString": "White"}]}]}
    got = extract(patient, reg).token
    assert ("birthsex", None, "F", None) in got and ("race", "r", "2106-3", None) in got
    assert "birthsex" not in {r[0] for r in extract(patient).token}  # the default registry is untouched


def test_custom_parameter_outside_the_subset_falls_back_to_fhirpathpy() -> None:
    reg = SearchParamRegistry()
    reg.add({"resourceType": "SearchParameter", "code": "a-family", "base": ["Patient"], "type": "string",
             "expression": "Patient.name.where(given.startsWith('A')).family | Patient.birthDate"})
    patient = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["Ann"]}, {"family": "Jones", "given": ["Bob"]}]}
    assert [r for r in extract(patient, reg).string if r[0] == "a-family"] == [("a-family", "smith", "Smith")]


def test_primitive_extension_parameter_falls_back_to_fhirpathpy() -> None:
    reg = SearchParamRegistry()
    reg.add({"code": "birth-time", "base": ["Patient"], "type": "date", "expression":
             "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value"})
    patient = {"resourceType": "Patient", "birthDate": "2000-01-01", "_birthDate": {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "2000-01-01T10:30:00Z"}]}}
    got = [r for r in extract(patient, reg).date if r[0] == "birth-time"]
    assert got == [("birth-time", us("2000-01-01T10:30:00Z"), us("2000-01-01T10:30:00Z") + US - 1)]


def test_adding_a_parameter_rebuilds_the_cached_plan() -> None:
    reg = SearchParamRegistry()
    patient = {"resourceType": "Patient", "birthDate": "2000-01-01"}
    assert not [r for r in extract(patient, reg).token if r[0] == "born"]
    reg.add({"code": "born", "base": ["Patient"], "type": "token", "expression": "Patient.birthDate"})
    assert ("born", None, "2000-01-01", None) in extract(patient, reg).token


# ---------------------------------------------------------------- patient compartments
def test_observation_is_in_the_compartment_of_its_subject_and_patient_performers() -> None:
    obs = {**OBS, "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p2"}]}
    assert patient_compartments(obs) == ["p1", "p2"]


def test_encounter_is_in_its_patients_compartment_only() -> None:
    enc = {"resourceType": "Encounter", "subject": {"reference": "Patient/p1"},
           "participant": [{"individual": {"reference": "Practitioner/d1"}}]}
    assert patient_compartments(enc) == ["p1"]
    assert patient_compartments({**enc, "subject": {"reference": "Group/g"}}) == []


def test_patient_is_in_its_own_compartment_and_that_of_linked_patients() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "link": [{"other": {"reference": "Patient/p0"}, "type": "replaces"},
                                                             {"other": {"reference": "RelatedPerson/r"}, "type": "seealso"}]}
    assert patient_compartments(patient) == ["p1", "p0"]


def test_appointment_is_in_the_compartment_of_every_patient_participant() -> None:
    appt = {"resourceType": "Appointment", "status": "booked", "participant": [
        {"actor": {"reference": "Patient/p1"}, "status": "accepted"},
        {"actor": {"reference": "Practitioner/d1"}, "status": "accepted"},
        {"actor": {"reference": "Patient/p2"}, "status": "tentative"},
        {"actor": {"reference": "Location/l1"}, "status": "accepted"},
        {"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}
    assert patient_compartments(appt) == ["p1", "p2"]


def test_absolute_urn_and_contained_references_put_a_resource_in_no_compartment() -> None:
    obs = {"resourceType": "Observation", "subject": {"reference": "https://other.org/fhir/Patient/p9"},
           "performer": [{"reference": "urn:uuid:1"}, {"reference": "#p"}]}
    assert patient_compartments(obs) == []
    assert patient_compartments({"resourceType": "Organization", "id": "o"}) == []


# ---------------------------------------------------------------- independent check against fhirpathpy
def _canon(v: Any) -> bytes:
    return orjson.dumps(v, default=lambda o: float(o) if isinstance(o, Decimal) else str(o),
                        option=orjson.OPT_SORT_KEYS)


def _fhirpathpy(resource: dict[str, Any], expression: str) -> list[Any]:
    # fhirpathpy does not treat Patient as a Resource in `Resource.id`, and insists on one item
    # left of `as`; rewrite those two spots, keeping the expression's meaning.
    expr = re.sub(r"\b(Resource|DomainResource)\.", resource["resourceType"] + ".", expression)
    try:
        return evaluate(resource, expr, {}, models["r4"], fhirpath_options())  # type: ignore[no-any-return]
    except ValueError:
        per_item = re.sub(r"\(([^()]*?) as (\w+)\)", r"\1.ofType(\2)", expr)
        return evaluate(resource, per_item, {}, models["r4"], fhirpath_options())  # type: ignore[no-any-return]


def test_compiled_selection_equals_fhirpathpy_for_every_parameter_on_synthea_resources() -> None:
    checked, mismatches = 0, []
    for r in sample(per_type=4):
        for code, p in default_registry().for_type(r["resourceType"]).items():
            if p.expression is None:
                continue
            # as sets: `|` removes duplicates in FHIRPath; the index deduplicates rows anyway
            ours = {_canon(v) for _, v in select(p.expression, r)}
            theirs = {_canon(v) for v in _fhirpathpy(r, p.expression)}
            checked += 1
            if ours != theirs:
                mismatches.append((r["resourceType"], code, ours ^ theirs))
    assert checked > 1000 and mismatches == []


def test_extracted_rows_equal_rows_built_from_fhirpathpy_output() -> None:
    skip = {"_id", "_lastUpdated"}
    for r in sample(per_type=3):
        got = extract(r)
        for code, p in default_registry().for_type(r["resourceType"]).items():
            if p.expression is None or code in skip or p.type in ("composite", "special"):
                continue
            acc: tuple[dict[Any, None], ...] = ({}, {}, {}, {}, {}, {}, {}, {})
            normalizer(p.type, "*")(code, _fhirpathpy(r, p.expression), acc, r)  # type: ignore[misc]
            expected = {row for d in acc for row in d}
            actual = {row for table in got for row in table if row[0] in (code, f"{code}:of-type", f"{code}:identifier")}
            assert actual == expected, (r["resourceType"], code)


def test_every_synthea_resource_extracts_quickly() -> None:
    resources = synthea(1)
    for r in resources:
        extract(r)  # build the plans
    start = time.perf_counter()
    for r in resources:
        extract(r)
    per_resource = (time.perf_counter() - start) / len(resources)
    assert per_resource < 300e-6  # typically ~20 us; this only catches a fall back to interpretation
