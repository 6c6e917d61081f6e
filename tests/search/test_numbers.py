"""Number and quantity search (http://hl7.org/fhir/R4/search.html#number, #quantity): the
implicit range of the search value's precision (100 is [99.5, 100.5), 100.0 is [99.95, 100.05)),
prefixes, and quantity units, compared with the oracle."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.search import oracle
from tests.search.support import FEW, Fhir, check

UCUM = "http://unitsofmeasure.org"
VALUES = [0, 0.5, 1, 1.5, 5.35, 5.4, 5.44, 5.45, 9.95, 10, 10.05, 99, 99.4, 99.5, 99.9, 99.95, 99.96, 100,
          100.04, 100.05, 100.3, 100.5, 100.6, 101, 110, -5, -0.5, 0.001, 42]
NUMBER_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "ap")  # sa/eb: see the xfail below
# Units where the server's rows and the spec agree for "n||unit" (code equals unit, or unit only).
UNITS: list[dict[str, Any]] = [{"system": UCUM, "code": "mg", "unit": "mg"},
                               {"system": UCUM, "code": "g", "unit": "g"},
                               {"unit": "mg"},
                               {"system": "http://example.org/units", "code": "mg", "unit": "mg"},
                               {}]


def dataset() -> list[dict[str, Any]]:
    rng = random.Random(5150)
    out: list[dict[str, Any]] = [{"resourceType": "Patient", "id": "pat"}]
    for i, v in enumerate(VALUES):  # r<i>: one prediction, VALUES[i]
        out.append({"resourceType": "RiskAssessment", "id": f"r{i}", "status": "final",
                    "subject": {"reference": "Patient/pat"}, "prediction": [{"probabilityDecimal": v}]})
    for i in range(8):  # m<i>: two predictions (a resource matches if any value does)
        out.append({"resourceType": "RiskAssessment", "id": f"m{i}", "status": "final",
                    "subject": {"reference": "Patient/pat"},
                    "prediction": [{"probabilityDecimal": v} for v in rng.sample(VALUES, 2)]})
    out.append({"resourceType": "RiskAssessment", "id": "r-none", "status": "final",
                "subject": {"reference": "Patient/pat"}})
    for i in range(40):
        v = rng.choice(VALUES)
        out.append({"resourceType": "Observation", "id": f"q{i}", "status": "final", "code": {"text": "x"},
                    "valueQuantity": {"value": v, **rng.choice(UNITS)}})
    out.append({"resourceType": "Observation", "id": "q-none", "status": "final", "code": {"text": "x"}})
    return out


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    return oracle.Oracle(db.load(dataset()).values())


def by_value(data: oracle.Oracle, *values: float) -> set[str]:
    """The single-prediction RiskAssessments of ``values``."""
    return {f"r{VALUES.index(v)}" for v in values}


@pytest.mark.parametrize(("search", "expected"), [
    ("100", [99.5, 99.9, 99.95, 99.96, 100, 100.04, 100.05, 100.3]),  # [99.5, 100.5)
    ("100.0", [99.96, 100, 100.04]),  # [99.95, 100.05)
    ("100.00", [100]),  # [99.995, 100.005)
    ("10", [9.95, 10, 10.05]),
    ("5.4", [5.4, 5.44]),  # [5.35, 5.45)
    ("-5", [-5]),
    ("0", [0]),  # [-0.5, 0.5)
])
def test_precision_of_the_search_value_is_its_range(db: Fhir, data: oracle.Oracle, search: str,
                                                   expected: list[float]) -> None:
    got = check(db, data, "RiskAssessment", [("probability", search)])
    assert by_value(data, *expected) <= got


def test_the_low_end_of_the_range_is_inclusive_for_decimal_values(db: Fhir, data: oracle.Oracle) -> None:
    assert by_value(data, 5.35) <= db.ids("RiskAssessment", {"probability": "5.4"})
    assert by_value(data, 99.95) <= db.ids("RiskAssessment", {"probability": "100.0"})


def test_100_and_100_point_0_differ(db: Fhir, data: oracle.Oracle) -> None:
    coarse = check(db, data, "RiskAssessment", [("probability", "100")])
    fine = check(db, data, "RiskAssessment", [("probability", "100.0")])
    assert by_value(data, 100.3) <= coarse and not by_value(data, 100.3) & fine
    assert fine < coarse


def test_exponent_form(db: Fhir, data: oracle.Oracle) -> None:
    got = db.ids("RiskAssessment", {"probability": "1e2"})
    assert by_value(data, 99, 100, 100.3, 101) <= got  # within [95, 105) at least
    assert not by_value(data, 1, 10, 0.5) & got


@pytest.mark.parametrize(("search", "inside", "outside"), [
    ("gt100", [100.04, 100.3, 101], [100, 99.9]),  # gt/lt/ge/le compare with exactly 100
    ("ge100", [100, 100.04], [99.96]),
    ("lt100", [99.96, 99.5], [100, 100.04]),
    ("le100", [100, 99.96], [100.04]),
    ("ne100", [99.4, 101, 110], [99.9, 100.3]),  # outside [99.5, 100.5)
    ("ap100", [99, 101, 110], [42, 1]),  # within 10%
])
def test_prefixes(db: Fhir, data: oracle.Oracle, search: str, inside: list[float], outside: list[float]) -> None:
    got = check(db, data, "RiskAssessment", [("probability", search)])
    assert by_value(data, *inside) <= got
    assert not by_value(data, *outside) & got


def test_sa_and_eb_are_about_the_range_of_the_search_value(db: Fhir, data: oracle.Oracle) -> None:
    # sa100: the target lies above [99.5, 100.5) without overlapping it; 100.3 overlaps.
    check(db, data, "RiskAssessment", [("probability", "sa100")])
    check(db, data, "RiskAssessment", [("probability", "eb100")])


def test_missing(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "RiskAssessment", [("probability:missing", "true")]) == {"r-none"}
    assert check(db, data, "Observation", [("value-quantity:missing", "true")]) == {"q-none"}


def number_texts() -> st.SearchStrategy[str]:
    fixed = st.sampled_from([str(v) for v in VALUES] + ["100.0", "100.00", "10.0", "5.40", "99.50"])
    free = st.builds(lambda d: str(d), st.decimals(min_value=-10, max_value=120, places=2,
                                                   allow_nan=False, allow_infinity=False))
    whole = st.integers(min_value=-10, max_value=120).map(str)
    return st.one_of(fixed, free, whole)


@FEW
@given(st.sampled_from(NUMBER_PREFIXES), number_texts(), number_texts(), st.booleans())
def test_random_numbers_agree_with_the_oracle(db: Fhir, data: oracle.Oracle, prefix: str, a: str, b: str,
                                              two: bool) -> None:
    value = f"{prefix}{a},{b}" if two else f"{prefix}{a}"
    check(db, data, "RiskAssessment", [("probability", value)])


@FEW
@given(st.sampled_from(NUMBER_PREFIXES), number_texts(),
       st.sampled_from(["", "||mg", f"|{UCUM}|mg", f"|{UCUM}|g", "||g", "|http://example.org/units|mg"]))
def test_random_quantities_agree_with_the_oracle(db: Fhir, data: oracle.Oracle, prefix: str, number: str,
                                                 unit: str) -> None:
    check(db, data, "Observation", [("value-quantity", f"{prefix}{number}{unit}")])


def test_quantity_units(db: Fhir, data: oracle.Oracle) -> None:
    any_unit = check(db, data, "Observation", [("value-quantity", "5.4")])
    mg = check(db, data, "Observation", [("value-quantity", "5.4||mg")])
    ucum_mg = check(db, data, "Observation", [("value-quantity", f"5.4|{UCUM}|mg")])
    assert ucum_mg <= mg <= any_unit
    assert check(db, data, "Observation", [("value-quantity", f"gt5.4|{UCUM}|mg"),
                                           ("value-quantity", f"lt100|{UCUM}|mg")])


def test_quantity_without_system_matches_the_code_too(db: Fhir) -> None:
    charge = {"resourceType": "ChargeItem", "status": "billed", "code": {"text": "x"},
              "subject": {"reference": "Patient/pat"}}
    db.load([{**charge, "id": "a", "quantity": {"value": 5.4, "system": UCUM, "code": "mg", "unit": "milligram"}},
             {**charge, "id": "b", "quantity": {"value": 5.4, "system": UCUM, "code": "mg"}},
             {**charge, "id": "c", "quantity": {"value": 5.4, "unit": "mg"}}])
    assert db.ids("ChargeItem", {"quantity": "5.4"}) == {"a", "b", "c"}
    assert db.ids("ChargeItem", {"quantity": "5.4||mg"}) == {"a", "b", "c"}


@pytest.mark.parametrize(("param", "value"), [
    ("probability", "ten"), ("probability", "1.2.3"), ("probability", "gt"), ("probability", "5x"),
    ("probability", "NaN"), ("probability", "Infinity"), ("probability", "0x10"), ("probability", "1e"),
    ("probability", "100,abc"),
])
def test_non_numbers_are_400(db: Fhir, param: str, value: str) -> None:
    assert value.split(",")[-1] in db.error("RiskAssessment", {param: value})


@pytest.mark.parametrize("value", ["5.4|mg", "abc||mg", "5.4|a|b|c", "gt||mg"])
def test_malformed_quantities_are_400(db: Fhir, value: str) -> None:
    db.error("Observation", {"value-quantity": value})


def test_decimal_places_of_stored_values_do_not_matter(db: Fhir, data: oracle.Oracle) -> None:
    assert by_value(data, 100) <= db.ids("RiskAssessment", {"probability": "100.000"})
